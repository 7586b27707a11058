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
from typing import Deque, Dict, List, Optional, Tuple

from gfpgan.app.inputs import (
    PKG_PARENT,
    PROGRESS_LINE,
    SUFFIX,
    JobSettings,
    Uploads,
    describe_progress,
    duration_text,
    image_command,
    parse_progress,
    safe_file_name,
    video_command,
    video_outputs,
)

__all__ = ["Job", "JobRunner"]




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
            took = duration_text((self.ended or now) - (self.started or now))
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
            copy = folder / "in" / safe_file_name(name, taken)
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
        env["PYTHONPATH"] = os.pathsep.join([PKG_PARENT] + [
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
            chunk = stream.read1(4096)  # a binary pipe: a BufferedReader, which returns what is there
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
        rest = line[list(PROGRESS_LINE.finditer(line))[-1].end():].strip() if p else line
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
