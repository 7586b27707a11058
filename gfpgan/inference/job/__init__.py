"""The video job: segments, the processor contract, resume, rank sharding and the threaded stages.

:func:`~.video_job.run_videos` cuts each video into segments, runs decode -> process -> encode in
overlapped threads, keeps a resume manifest and joins the result. What restores the frames is a
:class:`~.segments.SegmentProcessor` it is given, so this layer knows no faces: it imports the
container layer (:mod:`gfpgan.inference.video`), :mod:`gfpgan.inference.timing`, and the bottom
of the package (errors, files, images), never the face or track layers.
"""
