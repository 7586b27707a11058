"""The reference's API (TencentARC/GFPGAN 1.3.8), as thin adapters over this project's parts.

Programs written for the reference (Real-ESRGAN's face enhancer, roop, facefusion, webui,
ComfyUI nodes) keep working through:

* :mod:`~.gfpganer` ``GFPGANer``, driving the project's own face stages
  (:class:`gfpgan.inference.faces.pipeline.FaceStages`: detection, alignment, masks, paste);
* :mod:`~.archs` the reference's network classes, defined once (its constructor keywords and
  forward signatures over this project's networks), and ``ReferenceFaceModel``, which hands such a
  network to the face stages;
* :mod:`~.weights` weights by URL, file or version name, and ``load_file_from_url``;
* :mod:`~.cli` the reference's ``inference_gfpgan.py`` option spelling.

The facades at the reference's own paths (``gfpgan``, ``gfpgan.utils``, ``gfpgan.archs.*_arch``)
re-export from here and define nothing. Core modules never import this package; this ``__init__``
imports nothing.
"""
