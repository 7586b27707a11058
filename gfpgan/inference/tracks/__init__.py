"""Faces through time: tracks, key frames, the video face restorer, the temporal step, face records.

* :mod:`~.tracking` IoU tracks and per-track landmark smoothing;
* :mod:`~.keyframes` the detector every K frames, tracking in between;
* :mod:`~.video_restorer` :class:`~.video_restorer.VideoFaceRestorer`, the job's processor;
* :mod:`~.temporal_step` the learned temporal module stepped once per track and frame;
* :mod:`~.sinks` what the restorer emits about each face, and :mod:`~.face_database` the
  sink that keeps each track's best faces for training.

The top of the inference layers: it may import :mod:`gfpgan.inference.faces`, the job's
contract and threads (:mod:`gfpgan.inference.job`), settings and timing.
"""
