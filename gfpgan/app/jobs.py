"""The page's jobs: uploads checked, the command's argv built, one job at a time, cancellable.

Nothing here restores a face. A job is the project's own command, ``python -m gfpgan.infer_image``
or ``python -m gfpgan.infer_video``, run as a child process with a list argv (never a shell) in a
folder of its own, so the page's result for an input is the command's result, byte for byte. The
child's progress bar (tqdm, on stderr) gives the page its per-frame progress and time left; its
one-line ``error: ...`` gives the page its sentence.

Layout of the private folder (``tempfile.mkdtemp``, mode 0700), one sub-folder per job::

    jobs/<id>/in/        the job's copy of the uploads (removed when the job ends)
    jobs/<id>/out/       what the command writes (removed when the job ends)
    jobs/<id>/results/   the files the page offers, moved there only after the command succeeded

A cancelled or failed job removes its whole folder: nothing half-written is ever offered. This
module needs no web library (the page is :mod:`gfpgan.app.page`).
"""

from __future__ import annotations

import dataclasses
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Deque, Dict, List, Optional, Sequence, Tuple

from gfpgan.errors import UserError

__all__ = ["IMAGE_EXTENSIONS", "VIDEO_EXTENSIONS", "MODEL_EXTENSIONS", "JobSettings", "Uploads",
           "check_uploads", "image_command", "video_command", "Job", "JobRunner", "parse_progress",
           "describe_progress", "local_models", "local_upsamplers", "personalization_argv",
           "PageConfig"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")  # gfpgan.images'
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".ts",
                    ".wmv", ".flv", ".3gp")
MODEL_EXTENSIONS = (".safetensors", ".pth", ".pt")
MAX_IMAGES = 100
SUFFIX = "restored"  # infer_image --suffix: restored_imgs/<name>_restored.<ext>

_PROGRESS = re.compile(r"(\d+)/(\d+) \[[^\]]*\]?")  # tqdm: " 12/48 [00:03<00:09, 3.85frame/s]"
_PKG_PARENT = str(Path(__file__).resolve().parents[2])  # the folder holding this gfpgan package


def _mb(n: int) -> str:
    return f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n / 2**10:.0f} kB"


# ------------------------------------------------------------------ uploads
@dataclasses.dataclass(frozen=True)
class Uploads:
    """Checked uploads: ``kind`` "images" or "video", the files and the names the user gave."""

    kind: str
    paths: Tuple[Path, ...]
    names: Tuple[str, ...]


def _display_name(path: Path) -> str:
    return path.name


def check_uploads(paths: Sequence[os.PathLike], max_bytes: int) -> Uploads:
    """Check what was uploaded: one or more images, or one video, each readable and small enough.

    Raises:
        UserError: one sentence naming the file and what to do.
    """
    files = [Path(p) for p in paths or [] if p]
    if not files:
        raise UserError("Nothing was uploaded; add one or more photos or one video.")
    kinds = []
    for p in files:
        ext = p.suffix.lower()
        if ext in IMAGE_EXTENSIONS:
            kinds.append("images")
        elif ext in VIDEO_EXTENSIONS:
            kinds.append("video")
        else:
            raise UserError(f"{_display_name(p)} is neither a photo nor a video this page takes; "
                            f"upload {', '.join(e[1:].upper() for e in IMAGE_EXTENSIONS[:5])} "
                            f"photos or an MP4, MOV, MKV, AVI or WebM video.")
        try:
            size = p.stat().st_size
        except OSError:
            raise UserError(f"{_display_name(p)} is no longer on the server; upload it again.") from None
        if size > max_bytes:
            raise UserError(f"{_display_name(p)} is {_mb(size)}, more than the {_mb(max_bytes)} this "
                            f"page accepts; upload a smaller file or restart the page with a larger "
                            f"--max-upload-mb.")
    if "video" in kinds and len(files) > 1:
        raise UserError("Upload either photos or one video at a time, not both or several videos.")
    if len(files) > MAX_IMAGES:
        raise UserError(f"{len(files)} photos were uploaded; restore at most {MAX_IMAGES} at a time.")
    for p in files:
        _check_readable(p, kinds[0])
    return Uploads(kinds[0], tuple(files), tuple(_display_name(p) for p in files))


def _check_readable(path: Path, kind: str) -> None:
    """The command's own readers, so that what passes here is what the command can read."""
    name = _display_name(path)
    if kind == "images":
        from gfpgan.images import read_image

        try:
            read_image(path)
        except UserError:
            raise UserError(f"{name} is not a readable photo (damaged, truncated or not really an "
                            f"image); upload another file.") from None
        return
    from gfpgan.inference.video import probe_video

    try:
        info = probe_video(path)
    except Exception:  # noqa: BLE001 - PyAV raises many kinds; any of them means unreadable
        info = None
    if info is None or info.num_frames < 1:
        raise UserError(f"{name} is not a readable video (damaged, truncated or without a video "
                        f"stream); upload another file.")


# ------------------------------------------------------------------ settings -> the command
@dataclasses.dataclass(frozen=True)
class JobSettings:
    """What the page lets one choose; every field maps to one option of the commands.

    ``None`` leaves the command's own default (see :mod:`gfpgan.inference.settings`).
    """

    model: str
    strength: Optional[float] = None
    upscale: Optional[float] = None
    device: Optional[str] = None
    bg_upsampler: Optional[str] = None  # photos only (infer_image --bg-upsampler)
    temporal: Optional[str] = None  # videos only (infer_video --temporal)
    personalization: Optional[str] = None  # no file format yet: see personalization_argv

    def face_argv(self) -> List[str]:
        argv = ["--model", self.model]
        for flag, value in (("--strength", self.strength), ("--upscale", self.upscale)):
            if value is not None:
                argv += [flag, repr(float(value))]
        if self.device:
            argv += ["--device", self.device]
        return argv + personalization_argv(self.personalization)


def personalization_argv(path: Optional[str]) -> List[str]:
    """Hook for personalization (issue 28): the options that apply a personalization file.

    The project has no personalization file format yet, so the page offers no such control and
    this returns ``[]`` for ``None``; once a format and a command option exist, this is the one
    place that turns the file into that option (and the page shows its control where
    :func:`local_models`' model has such a file).
    """
    if path is None:
        return []
    raise UserError("Personalization files are not supported yet; leave that setting empty.")


def _safe_name(name: str, taken: set) -> str:
    stem, ext = os.path.splitext(Path(name).name)
    stem = re.sub(r"[\x00-\x1f/\\]", "_", stem).strip(". ") or "upload"
    candidate, k = stem + ext.lower(), 2
    while candidate.lower() in taken:
        candidate, k = f"{stem}_{k}{ext.lower()}", k + 1
    taken.add(candidate.lower())
    return candidate


def image_command(inputs: Path, out: Path, s: JobSettings) -> List[str]:
    """``python -m gfpgan.infer_image`` argv (without the interpreter) for a folder of photos."""
    argv = ["-m", "gfpgan.infer_image", "-i", str(inputs), "-o", str(out), *s.face_argv(),
            "--suffix", SUFFIX]
    if s.bg_upsampler:
        argv += ["--bg-upsampler", s.bg_upsampler]
    return argv


def video_outputs(out: Path, name: str) -> Tuple[Path, Path]:
    """The restored video (the input's container when the command writes it, else mp4) and the
    side-by-side preview."""
    stem, ext = os.path.splitext(name)
    ext = ext.lower() if ext.lower() in (".mp4", ".mov", ".mkv") else ".mp4"
    return out / f"{stem}_{SUFFIX}{ext}", out / f"{stem}_side_by_side.mp4"


# x264's MB-tree rate control gives different bits run to run on noisy content; without it the
# same settings give the same file, so the page's video is the command's, byte for byte
REPRODUCIBLE_X264 = ["--codec-option", "x264-params=mbtree=0"]


def video_command(video: Path, out: Path, s: JobSettings) -> List[str]:
    """``python -m gfpgan.infer_video`` argv (without the interpreter) for one video."""
    restored, side = video_outputs(out, video.name)
    argv = ["-m", "gfpgan.infer_video", "-i", str(video), "-o", str(restored), *s.face_argv(),
            "--side-by-side", str(side), *REPRODUCIBLE_X264]
    if s.temporal:
        argv += ["--temporal", s.temporal]
    return argv


# ------------------------------------------------------------------ progress
def parse_progress(line: str) -> Optional[Tuple[int, int]]:
    """``(done, total)`` from one tqdm update (``restore:  25%|##  | 12/48 [00:03<00:09, ...]``)."""
    found = _PROGRESS.findall(line)
    return (int(found[-1][0]), int(found[-1][1])) if found else None


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def describe_progress(unit: str, done: int, total: int, first: Tuple[float, int],
                      now: float) -> str:
    """"Frame 12 of 48 (25%), about 30 s left." from the first progress seen and the latest."""
    t0, n0 = first
    text = f"{unit.capitalize()} {done} of {total} ({100 * done // max(total, 1)}%)"
    if done > n0 and now > t0:
        left = (total - done) * (now - t0) / (done - n0)
        return f"{text}, about {_duration(left)} left."
    return f"{text}, estimating the time left."


# ------------------------------------------------------------------ models found locally
def _local_cards(kind: str) -> List[Tuple[object, Path]]:
    """``(card, weights file)`` for each model card of ``kind`` whose weights are on this machine."""
    from gfpgan import model_cards

    try:
        cards = model_cards.list_cards()
    except UserError:
        return []
    found = []
    for card in cards:
        if card.kind != kind or (kind == "restorer" and card.arch is None):
            continue
        try:
            found.append((card, model_cards.resolve_weights(card)))
        except UserError:
            continue
    return found


def local_models() -> List[Tuple[str, str]]:
    """``(label, --model value)`` for each restorer model card whose weights are on this machine."""
    return [(f"{card.name} ({path.name})", card.name) for card, path in _local_cards("restorer")]


def local_upsamplers() -> List[Tuple[str, str]]:
    """``(label, --bg-upsampler file)`` for each background upsampler whose weights are here."""
    return [(card.name, str(path)) for card, path in _local_cards("upsampler")]


def check_file_setting(text: Optional[str], what: str,
                       private: Optional[Path] = None) -> Optional[str]:
    """A path typed into the page (model, temporal file): None when empty, else an existing
    weights file; never one inside ``private`` (the page's uploads are not models)."""
    text = (text or "").strip()
    if not text:
        return None
    path = Path(text).expanduser().resolve()
    if not path.is_file():
        raise UserError(f"The {what} {text} is not a file on this computer; check the path.")
    if path.suffix.lower() not in MODEL_EXTENSIONS:
        raise UserError(f"The {what} {path.name} is not a .safetensors, .pth or .pt file; give one "
                        f"of those.")
    if private is not None and Path(private).resolve() in path.parents:
        raise UserError(f"The {what} {path.name} is one of this page's uploads; give a weights "
                        f"file that was on this computer before.")
    return str(path)


# ------------------------------------------------------------------ what the page offers
@dataclasses.dataclass(frozen=True)
class PageConfig:
    """What the server was started with: the choices the page offers and its limits."""

    models: List[Tuple[str, str]]  # (label, --model value)
    default_model: Optional[str]
    upsamplers: List[Tuple[str, str]]  # (label, file)
    device: Optional[str] = None
    temporal: Optional[str] = None
    max_upload_bytes: int = 1024 * 2**20
    keep_s: int = 3600  # how long uploads and results stay (the server's exit removes them)


# ------------------------------------------------------------------ one job
@dataclasses.dataclass
class Job:
    """One restoration: its folder, its command and what is known of its progress."""

    id: str
    kind: str  # "images" or "video"
    folder: Path
    argv: List[str]  # after ``python``
    names: Tuple[str, ...]  # the uploads' names, in input order
    inputs: Tuple[Path, ...]  # the job's copies of the uploads
    state: str = "queued"  # queued, running, done, failed, cancelled
    message: str = ""  # the failure's one sentence, or notes of a finished job
    progress: Optional[Tuple[int, int]] = None
    first_progress: Optional[Tuple[float, int]] = None
    started: Optional[float] = None
    ended: Optional[float] = None
    results: List[Path] = dataclasses.field(default_factory=list)
    comparisons: List[Tuple[str, Path, Path]] = dataclasses.field(default_factory=list)
    preview: Optional[Path] = None
    proc: Optional[subprocess.Popen] = None
    cancel_requested: bool = False
    finished: threading.Event = dataclasses.field(default_factory=threading.Event)
    log: Deque[str] = dataclasses.field(default_factory=lambda: deque(maxlen=40))

    @property
    def unit(self) -> str:
        return "frame" if self.kind == "video" else "photo"

    def command_line(self) -> str:
        """The same job on the command line, with the uploads' own names."""
        shown = []
        for arg in self.argv:
            for name, copy in zip(self.names, self.inputs):
                arg = arg.replace(str(copy), name)
            arg = arg.replace(str(self.folder / "in"), "photos").replace(
                str(self.folder / "out"), "results")
            shown.append(arg)
        return shlex.join(["python", *shown])

    def status(self, now: Optional[float] = None, ahead: int = 0) -> str:
        """One or two sentences for the page."""
        now = time.time() if now is None else now
        if self.state == "queued":
            return ("Waiting: another job is running; this one starts when it ends."
                    if ahead else "Starting...")
        if self.state == "running":
            if self.cancel_requested:
                return "Cancelling..."
            if self.progress is None or self.first_progress is None:
                what = "the video" if self.kind == "video" else "the photos"
                return f"Loading the model and reading {what}..."
            return describe_progress(self.unit, *self.progress, self.first_progress, now)
        if self.state == "done":
            took = _duration((self.ended or now) - (self.started or now))
            count = (f"{len(self.names)} photo(s)" if self.kind == "images" else self.names[0])
            return f"Done: {count} restored in {took}." + (f" {self.message}" if self.message else "")
        if self.state == "cancelled":
            return "Cancelled; nothing of this job was kept."
        return self.message


class JobRunner:
    """Runs jobs one at a time, in the order they came, each as a child process.

    Args:
        root: the private folder (jobs go to ``root/jobs``).
        python: the interpreter of the children (this one by default).
        keep_s: how long a finished job's results stay (seconds); the server's exit removes
            them all.
    """

    def __init__(self, root: Path, python: str = sys.executable, keep_s: float = 3600):
        self.root = Path(root)
        self.python = python
        self.keep_s = keep_s
        self.jobs: Dict[str, Job] = {}
        self._queue: "queue.Queue[Optional[Job]]" = queue.Queue()
        self._order: List[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="gfpgan-app-jobs", daemon=True)
        self._thread.start()

    # -- submitting
    def submit(self, uploads: Uploads, settings: JobSettings) -> Job:
        """Copy the uploads into a new job's folder and queue the job."""
        job_id = uuid.uuid4().hex[:12]
        folder = self.root / "jobs" / job_id
        (folder / "in").mkdir(parents=True)
        (folder / "out").mkdir()
        taken: set = set()
        copies = []
        for path, name in zip(uploads.paths, uploads.names):
            copy = folder / "in" / _safe_name(name, taken)
            shutil.copyfile(path, copy)
            copies.append(copy)
        if uploads.kind == "images":
            argv = image_command(folder / "in", folder / "out", settings)
        else:
            argv = video_command(copies[0], folder / "out", settings)
        job = Job(job_id, uploads.kind, folder, argv, uploads.names, tuple(copies))
        with self._lock:
            self.jobs[job_id] = job
            self._order.append(job_id)
        self._queue.put(job)
        return job

    def ahead_of(self, job: Job) -> int:
        """How many unfinished jobs came before ``job``."""
        with self._lock:
            before = self._order[:self._order.index(job.id)] if job.id in self._order else []
            return sum(1 for j in before if not self.jobs[j].finished.is_set())

    def get(self, job_id: Optional[str]) -> Optional[Job]:
        return self.jobs.get(job_id) if job_id else None

    # -- cancelling
    def cancel(self, job: Job) -> None:
        """Stop ``job``: a queued one ends at once and never starts, a running one's process
        group is ended (the worker then removes its folder)."""
        with self._lock:
            job.cancel_requested = True
            proc = job.proc
            if proc is None and not job.finished.is_set():  # still waiting for its turn
                job.state, job.ended = "cancelled", time.time()
                job.finished.set()
        if proc is None:
            shutil.rmtree(job.folder, ignore_errors=True)
        elif proc.poll() is None:
            _stop(proc)

    def sweep(self, max_age_s: float, now: Optional[float] = None) -> None:
        """Remove the folders of jobs that ended more than ``max_age_s`` seconds ago."""
        now = time.time() if now is None else now
        with self._lock:
            old = [j for j in self.jobs.values()
                   if j.finished.is_set() and j.ended is not None and now - j.ended > max_age_s]
            for job in old:
                self.jobs.pop(job.id, None)
                self._order.remove(job.id)
        for job in old:
            shutil.rmtree(job.folder, ignore_errors=True)

    def close(self) -> None:
        """Cancel everything and stop the worker."""
        for job in list(self.jobs.values()):
            self.cancel(job)
        self._queue.put(None)
        self._thread.join(timeout=15)

    # -- running
    def _work(self) -> None:
        while True:
            try:
                job = self._queue.get(timeout=60)
            except queue.Empty:
                self.sweep(self.keep_s)
                continue
            if job is None:
                return
            self.sweep(self.keep_s)
            if job.finished.is_set():  # cancelled while it waited
                continue
            try:
                state, message = self._run(job)
            except Exception as exc:  # noqa: BLE001 - the worker must survive any one job
                shutil.rmtree(job.folder, ignore_errors=True)
                state, message = "failed", (f"The job could not run ({type(exc).__name__}: "
                                            f"{exc}); see the terminal that started the page.")
            with self._lock:  # the final state, its message and the end arrive together
                if not job.finished.is_set():
                    job.state, job.message, job.ended = state, message, time.time()
                    job.finished.set()

    def _env(self) -> Dict[str, str]:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        # the children import this very package, whatever an installed copy elsewhere says
        env["PYTHONPATH"] = os.pathsep.join([_PKG_PARENT] + [
            p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
        return env

    def _run(self, job: Job) -> Tuple[str, str]:
        """Run one job; its final state and message."""
        with self._lock:
            if job.cancel_requested:
                shutil.rmtree(job.folder, ignore_errors=True)
                return "cancelled", ""
            job.state, job.started = "running", time.time()
            job.proc = subprocess.Popen([self.python, *job.argv], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        env=self._env(), cwd=job.folder, start_new_session=True)
        self._read(job)
        code = job.proc.wait()
        if job.cancel_requested:
            state, message = "cancelled", ""
        elif code in (0, 1) and self._publish(job):  # 1: some photos skipped (see the notes)
            notes = [ln.split(": ", 1)[1].rstrip(".") + "." for ln in job.log
                     if ln.startswith(("note: ", "skipped: "))]
            state, message = "done", " ".join(notes[:3])
        else:
            state, message = "failed", self._failure(job, code)
        if state != "done":
            shutil.rmtree(job.folder, ignore_errors=True)
        else:  # the uploads' copies and the command's other files go now
            shutil.rmtree(job.folder / "in", ignore_errors=True)
            shutil.rmtree(job.folder / "out", ignore_errors=True)
        return state, message

    def _read(self, job: Job) -> None:
        """Follow the child's output: tqdm updates end in \\r, other lines in \\n."""
        buf = b""
        stream = job.proc.stdout
        while True:
            chunk = stream.read1(4096) if hasattr(stream, "read1") else stream.read(4096)
            if not chunk:
                break
            buf += chunk
            parts = re.split(rb"[\r\n]", buf)
            buf = parts.pop()
            for raw in parts:
                self._line(job, raw.decode("utf-8", "replace").strip())
        self._line(job, buf.decode("utf-8", "replace").strip())

    @staticmethod
    def _line(job: Job, line: str) -> None:
        if not line:
            return
        p = parse_progress(line)
        # a line printed right after a bar without a \r of its own follows the bar's "]"
        rest = line[list(_PROGRESS.finditer(line))[-1].end():].strip() if p else line
        if rest:
            job.log.append(rest)
        if p is None:
            return
        if job.first_progress is None:
            job.first_progress = (time.time(), p[0])
        job.progress = p

    @staticmethod
    def _failure(job: Job, code: int) -> str:
        errors = [ln[len("error: "):] for ln in job.log if ln.startswith("error: ")]
        if errors:
            message = errors[-1]
            for name, copy in zip(job.names, job.inputs):
                message = message.replace(str(copy), name)
            message = message.replace(str(job.folder / "out") + os.sep, "").replace(
                str(job.folder), "the job's folder")
            return message[0].upper() + message[1:]
        last = job.log[-1] if job.log else f"exit code {code}"
        return (f"The restoration stopped unexpectedly ({last[:200]}); run the command shown below "
                f"with --debug in a terminal to see why.")

    def _publish(self, job: Job) -> bool:
        """Move the command's finished results into ``results/``; False when there are none."""
        out, results = job.folder / "out", job.folder / "results"
        results.mkdir()
        if job.kind == "images":
            for name, copy in zip(job.names, job.inputs):
                # infer_image --ext auto keeps the input's (lower-case) extension
                found = out / "restored_imgs" / f"{copy.stem}_{SUFFIX}{copy.suffix.lower()}"
                if not found.is_file():
                    continue
                after = results / found.name
                os.replace(found, after)
                before = results / f"{copy.stem}_before{copy.suffix.lower()}"
                os.replace(copy, before)
                job.results.append(after)
                job.comparisons.append((name, before, after))
            return bool(job.results)
        restored, side = video_outputs(out, job.inputs[0].name)
        if not restored.is_file():
            return False
        for src in (restored, side):
            if src.is_file():
                os.replace(src, results / src.name)
        job.results = [results / restored.name]
        if (results / side.name).is_file():
            job.results.append(results / side.name)
            job.preview = results / side.name
        return True


def _stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """End a child's process group: SIGTERM, then SIGKILL after ``grace`` seconds."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
