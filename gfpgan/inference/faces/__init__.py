"""Faces in one image: detect, align, restore many per forward pass, paste back.

* :mod:`~.detection` MTCNN (offline) or RetinaFace, five landmarks per face;
* :mod:`~.alignment` the FFHQ 5-point similarity and its inverse;
* :mod:`~.model` the network as the pipeline sees it (PyTorch, or ONNX Runtime in :mod:`~.onnx_model`);
* :mod:`~.batch` batched restoration with a strength knob;
* :mod:`~.paste` masks and paste-back; :mod:`~.background` the Real-ESRGAN background;
* :mod:`~.pipeline` the stages together, and :class:`~.pipeline.FaceRestorer` for images.

This layer may import the networks and weights stack (networks, model_cards, checkpoint, archs),
:mod:`gfpgan.inference.settings` and :mod:`gfpgan.inference.timing`; never the video container
layer, the job or the track layer.
"""
