"""The web page (Gradio): upload, settings, progress, before/after, side-by-side, downloads.

:func:`build_page` returns the ``gr.Blocks``; :mod:`gfpgan.app.server` serves it. Every job goes
through :class:`gfpgan.app.jobs.JobRunner`, which runs the project's own commands; this module only
turns the page's controls into :class:`~gfpgan.app.inputs.JobSettings` and the runner's state into
what the page shows.
"""

from __future__ import annotations

import html
from typing import Optional, Sequence, Tuple

import gradio as gr

from gfpgan.app.inputs import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    JobSettings,
    PageConfig,
    check_file_setting,
    check_uploads,
)
from gfpgan.app.jobs import JobRunner
from gfpgan.errors import UserError
from gfpgan.inference.settings import FACE_OPTIONS

__all__ = ["build_page"]

_DEFAULTS = {o.field: o.default for o in FACE_OPTIONS}
NO_UPSAMPLER = "none (resize)"
POLL_S = 0.25


def _status(text: str, kind: str = "info", progress: Optional[Tuple[int, int]] = None) -> str:
    bar = ""
    if progress is not None:
        bar = f'<progress value="{progress[0]}" max="{max(progress[1], 1)}"></progress> '
    return (f'<div class="gfpgan-status" data-kind="{kind}">{bar}'
            f'<span class="gfpgan-message">{html.escape(text)}</span></div>')


CSS = """
.gfpgan-status { font-size: 1.05em; padding: 6px 2px; }
.gfpgan-status[data-kind="error"] { color: #b42318; font-weight: 600; }
.gfpgan-status progress { width: 40%; vertical-align: middle; }
"""


def _pair(before: str, after: str):
    """The before/after images as arrays for the slider (Gradio serves arrays from its own cache;
    a path would point into the job's folder, which the page does not serve). The before image
    is resized to the after one's size when upscaled, for display only; None when the job's
    results were already removed."""
    import cv2

    from gfpgan.images import read_image

    try:
        a, b = read_image(before), read_image(after)
    except UserError:
        return None
    if a.shape != b.shape:
        a = cv2.resize(a, (b.shape[1], b.shape[0]), interpolation=cv2.INTER_CUBIC)
    return a, b


def build_page(runner: JobRunner, cfg: PageConfig) -> gr.Blocks:
    """The page, wired to ``runner``."""
    accepted = list(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)
    with gr.Blocks(title="GFPGAN: restore faces in photos and videos", analytics_enabled=False,
                   delete_cache=(min(600, cfg.keep_s), cfg.keep_s)) as page:
        gr.Markdown("# Restore faces in photos and videos\nUpload one or more photos, or one "
                    "video. Everything runs on this computer; nothing is sent elsewhere.")
        job_id = gr.State(None)
        shown = gr.State([])  # (name, before, after) of the last finished photo job
        with gr.Row():
            with gr.Column(scale=1):
                uploads = gr.File(label="Photos or a video", file_count="multiple",
                                  file_types=accepted, type="filepath", elem_id="uploads")
                model = gr.Dropdown(label="Model", choices=cfg.models, value=cfg.default_model,
                                    elem_id="model")
                model_path = gr.Textbox(label="...or a model file on this computer",
                                        placeholder="/path/to/model.safetensors",
                                        elem_id="model-path")
                strength = gr.Slider(0.0, 1.0, value=_DEFAULTS["strength"], step=0.05,
                                     label="Strength (0: the input face, 1: fully restored)",
                                     elem_id="strength")
                upscale = gr.Slider(1.0, 4.0, value=_DEFAULTS["upscale"], step=0.5,
                                    label="Upscale the whole picture", elem_id="upscale")
                bg = gr.Dropdown(label="Background upsampler (photos)",
                                 choices=[(NO_UPSAMPLER, "")] + cfg.upsamplers, value="",
                                 elem_id="bg-upsampler")
                temporal = gr.Textbox(label="Temporal file (videos; optional)",
                                      value=cfg.temporal or "",
                                      placeholder="/path/to/temporal.safetensors",
                                      elem_id="temporal")
                personal = gr.Textbox(label="Personal file (optional; python -m gfpgan.personalize)",
                                      value="", placeholder="/path/to/person.safetensors",
                                      elem_id="personal")
                with gr.Row():
                    run = gr.Button("Restore", variant="primary", elem_id="restore")
                    cancel = gr.Button("Cancel", variant="stop", elem_id="cancel")
            with gr.Column(scale=2):
                status = gr.HTML(_status("Upload photos or a video to begin."), elem_id="status")
                compare = gr.ImageSlider(label="Before / after", type="numpy", format="png",
                                         interactive=False, elem_id="compare")
                pick = gr.Dropdown(label="Compare", choices=[], visible=False, elem_id="pick")
                preview = gr.Video(label="Side by side (input | restored)", interactive=False,
                                   elem_id="preview")
                downloads = gr.File(label="Downloads", file_count="multiple", interactive=False,
                                    elem_id="downloads")
                command = gr.Textbox(label="The same job on the command line", interactive=False,
                                     elem_id="command")

        def on_upload(files):
            if not files:
                return _status("Upload photos or a video to begin.")
            try:
                checked = check_uploads(files, cfg.max_upload_bytes)
            except UserError as exc:
                return _status(str(exc), "error")
            what = (f"{len(checked.paths)} photo(s)" if checked.kind == "images"
                    else checked.names[0])
            return _status(f"Ready: {what}. Choose the settings and press Restore.")

        def submit(files, model_value, model_file, strength_value, upscale_value, bg_value,
                   temporal_file, personal_file):
            try:
                checked = check_uploads(files, cfg.max_upload_bytes)
                chosen = check_file_setting(model_file, "model file", runner.root) or model_value
                if not chosen:
                    raise UserError("No model is chosen; pick one or give the path of a model "
                                    "file (for example GFPGANv1.4.pth).")
                settings = JobSettings(
                    model=chosen, strength=float(strength_value), upscale=float(upscale_value),
                    device=cfg.device, bg_upsampler=bg_value or None,
                    temporal=check_file_setting(temporal_file, "temporal file", runner.root)
                    if checked.kind == "video" else None,
                    personalization=check_file_setting(personal_file, "personal file", runner.root))
                job = runner.submit(checked, settings)
            except UserError as exc:
                return None, _status(str(exc), "error"), gr.skip()
            return job.id, _status(job.status(ahead=runner.ahead_of(job))), job.command_line()

        def follow(current):
            """Poll the job; the last yield carries the results (or nothing)."""
            job = runner.get(current)
            if job is None:  # refused in submit(): its sentence stays
                yield tuple(gr.skip() for _ in range(6))
                return
            photos = job.kind == "images"
            nothing = (gr.update(value=None, visible=photos),
                       gr.update(choices=[], value=None, visible=False),
                       gr.update(value=None, visible=not photos), None, [])
            yield (_status(job.status(ahead=runner.ahead_of(job))), *nothing)
            last = None
            try:
                while not job.finished.wait(POLL_S):
                    text = job.status(ahead=runner.ahead_of(job))
                    if text != last and not job.finished.is_set():
                        last = text
                        yield (_status(text, progress=job.progress), *[gr.skip()] * 5)
            finally:
                if not job.finished.is_set():  # the page went away: the job goes too
                    runner.cancel(job)
            if job.state != "done":
                yield (_status(job.status(), "error" if job.state == "failed" else "info"),
                       *nothing)
                return
            pairs = [(n, str(b), str(a)) for n, b, a in job.comparisons]
            names = [n for n, _, _ in pairs]
            yield (_status(job.status(), "done"),
                   gr.update(value=_pair(*pairs[0][1:]) if pairs else None, visible=photos),
                   gr.update(choices=names, value=names[0] if names else None,
                             visible=len(names) > 1),
                   gr.update(value=str(job.preview) if job.preview else None, visible=not photos),
                   [str(p) for p in job.results], pairs)

        def stop(current):
            """Cancel the page's job; follow() shows it (the one writer of the status meanwhile)."""
            job = runner.get(current)
            if job is not None and not job.finished.is_set():
                runner.cancel(job)

        def choose(name, pairs: Sequence):
            for n, before, after in pairs or []:
                if n == name:
                    return _pair(before, after) or gr.skip()
            return gr.skip()

        uploads.upload(on_upload, [uploads], [status], queue=False)
        uploads.clear(lambda: _status("Upload photos or a video to begin."), None, [status],
                      queue=False)
        run.click(submit, [uploads, model, model_path, strength, upscale, bg, temporal, personal],
                  [job_id, status, command], queue=False, show_progress="hidden").then(
            follow, [job_id], [status, compare, pick, preview, downloads, shown],
            concurrency_limit=None, show_progress="hidden")
        cancel.click(stop, [job_id], None, queue=False)
        pick.change(choose, [pick, shown], [compare], queue=False)
    return page
