"""A local web page for restoring faces in photos and videos without a terminal.

``python -m gfpgan.app`` (or ``gfpgan-app``) serves it on http://127.0.0.1:7860/; it needs the
``app`` extra (``pip install 'gfpgan[app]'``: Gradio). The page runs the project's own commands
(``gfpgan.infer_image``, ``gfpgan.infer_video``) one job at a time, so its results are theirs:

* :mod:`gfpgan.app.jobs` uploads checked, settings turned into the command's argv, the job queue
  (child processes, progress read from their progress bars, cancellation, atomic results);
* :mod:`gfpgan.app.page` the Gradio page;
* :mod:`gfpgan.app.server` the command line and the server's safety settings.
"""
