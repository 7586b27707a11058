"""Inference: restoring faces in images and videos, in four layers (each may import those above it
in this list, never those below):

* :mod:`gfpgan.inference.video` container I/O (probe, decode, encode, join, timestamps, streams);
* :mod:`gfpgan.inference.job` the video job (segments, the processor contract, threads, resume);
* :mod:`gfpgan.inference.faces` faces in one image (detect, align, restore, paste);
* :mod:`gfpgan.inference.tracks` faces through time (tracking, the video face restorer, the
  temporal step, face records and the face database).

Beside them, shared by all: :mod:`~.settings` (every restorer setting and its command-line
option, one default each) and :mod:`~.timing` (the stage-timer protocol). The video and faces
layers do not import each other. This ``__init__`` imports nothing.
"""
