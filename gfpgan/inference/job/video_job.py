"""A video restoration job: segments, resume manifest, rank sharding and a threaded pipeline.

A video is cut into segments of ``segment_frames`` frames of its frame table. Each segment runs
through three overlapped stages joined by bounded queues (memory stays flat however long the
video is):

    decode thread --q_in--> restore thread (``processor.process``) --q_out--> encode (caller)

(:class:`~gfpgan.inference.tracks.video_restorer.VideoFaceRestorer` splits its stage further: face
detection in a thread ahead of the generator, paste-back on a pool behind it.)

The processor (:class:`~gfpgan.inference.job.segments.SegmentProcessor`) says how many frames it
needs before and after a segment (restored but not written) so that its tracking and look-ahead
have the same context whatever the split; with a deterministic processor whose state reaches
back at most that far, a segment's frames do not depend on where segments start. A frame the
processor marks unchanged is re-encoded from its original decoded planes, so it goes through
without a colour conversion.

Each finished segment is a ``.mov`` file plus a JSON marker in a work folder next to the
destination (``.<name>.parts``), both written with temp + rename; ``resume`` keeps the segments
whose markers exist, and the final file is remuxed from the segments (no re-encode) into a temp
sibling and renamed onto the destination only when complete. Under torchrun, work item ``j``
(all segments of all videos, in order) goes to rank ``j % world_size``; video ``v`` is joined by
rank ``v % world_size`` once every marker of that video exists.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import queue
import shutil
import sys
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from gfpgan.errors import UserError
from gfpgan.inference import video as vio
from gfpgan.inference.job.options import VideoJobOptions
from gfpgan.inference.job.segments import ProcessedFrame, SegmentProcessor, SegmentWindow
from gfpgan.inference.job.threads import put_unless_stopped
from gfpgan.inference.timing import NO_TIMER, StageTimer

__all__ = ["VideoSummary", "run_videos", "work_dir"]


_END = object()


class _Stopped(Exception):
    """Raised inside a stage when another stage failed; never escapes the pipeline."""


@dataclass
class VideoSummary:
    """What happened to one video (as seen by the rank that joined it)."""

    input: str
    output: str
    frames: int
    lost: int
    segments: int
    reused: int
    seconds: float
    notes: List[str] = field(default_factory=list)  # repaired timestamps, streams left out


def work_dir(dest) -> Path:
    """The folder next to ``dest`` that holds its segments and markers."""
    dest = Path(dest)
    return dest.parent / f".{dest.name}.parts"


@functools.lru_cache(maxsize=1)
def _libc():
    """glibc through ctypes, or None (another C library, or no ``malloc_trim``)."""
    import ctypes
    import ctypes.util

    try:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        lib.malloc_trim.argtypes = [ctypes.c_size_t]
        return lib
    except (OSError, AttributeError):
        return None


def _trim_heap() -> None:
    """Hand the heap's free pages back to the OS (glibc's ``malloc_trim``; elsewhere nothing).

    Frames are large buffers allocated in one thread and freed in another; glibc keeps what
    they leave in each thread's arena, so without this the resident memory of a long video
    creeps up (measured: +25% over ten times the frames) although nothing is kept.
    """
    lib = _libc()
    if lib is not None:
        lib.malloc_trim(0)


def _atomic_json(path: Path, obj) -> None:
    from gfpgan.files import write_text_atomic

    write_text_atomic(path, json.dumps(obj, indent=1, sort_keys=True))


_INPUT_KEYS = ("input", "size", "mtime_ns", "frames", "pts_sha1")  # the input's part of it


def _fingerprint(info: vio.VideoInfo, opts: VideoJobOptions, processor: SegmentProcessor,
                 context: Tuple[int, int]) -> dict:
    """What must match for ``--resume`` to reuse segments: the input, the encoding, the split
    and everything the processor says changes its pixels."""
    st = os.stat(info.path)
    keep = {k: v for k, v in asdict(opts).items()
            if k in ("codec", "crf", "preset", "pix_fmt", "codec_options", "segment_frames")}
    keep["warmup"], keep["tail"] = context
    digest = hashlib.sha1(np.ascontiguousarray(info.pts).tobytes()).hexdigest()
    return {"input": str(Path(info.path).resolve()), "size": st.st_size,
            "mtime_ns": st.st_mtime_ns, "frames": info.num_frames, "pts_sha1": digest,
            "options": keep, "side_by_side": bool(opts.side_by_side),
            "processor": json.loads(json.dumps(processor.fingerprint(), default=str))}


class _Pipe:
    """Bounded queues whose put/get give up when any stage failed; first error wins."""

    def __init__(self, size: int):
        self.stop = threading.Event()
        self.errors: List[BaseException] = []
        self.q_in: queue.Queue = queue.Queue(maxsize=max(1, size))
        self.q_out: queue.Queue = queue.Queue(maxsize=max(1, size))

    def put(self, q: queue.Queue, item) -> None:
        if not put_unless_stopped(q, item, self.stop):
            raise _Stopped

    def get(self, q: queue.Queue):
        while not self.stop.is_set():
            try:
                return q.get(timeout=0.05)
            except queue.Empty:
                continue
        raise _Stopped

    def fail(self, exc: BaseException) -> None:
        if not isinstance(exc, _Stopped) and not self.errors:
            self.errors.append(exc)
        self.stop.set()

    def thread(self, fn: Callable, name: str) -> threading.Thread:
        def body():
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller by run()
                self.fail(exc)
        t = threading.Thread(target=body, name=name, daemon=True)
        t.start()
        return t


@dataclass(frozen=True)
class _Segment:
    """One segment of a video: its frame window and the timestamps decoded and written."""

    number: int
    window: SegmentWindow
    feed: Tuple[int, Optional[int]]  # pts range decoded: [start, stop), None: to the end
    write: Tuple[int, Optional[int]]  # pts range written

    @classmethod
    def of(cls, info: vio.VideoInfo, number: int, size: int, context: Tuple[int, int]):
        n, (warmup, tail) = info.num_frames, context
        i0, i1 = number * size, min(n, (number + 1) * size)
        first = max(0, i0 - warmup)

        def pts(i: int) -> Optional[int]:
            return int(info.pts[i]) if i < n else None
        return cls(number, SegmentWindow(Path(info.path).stem, first, i0, i1),
                   (pts(first), pts(i1 + tail)), (pts(i0), pts(i1)))

    def writes(self, pts: int) -> bool:
        start, stop = self.write
        return pts >= start and (stop is None or pts < stop)


@dataclass(frozen=True)
class _EncoderSpec:
    """How every segment of a video is encoded (all but the frame size, known at the first
    frame); ``side_by_side`` is the comparison video's, without the source's aspect ratio."""

    info: vio.VideoInfo
    opts: VideoJobOptions
    side_by_side: bool = False

    def open(self, path: Path, width: int, height: int) -> vio.SegmentEncoder:
        info, opts = self.info, self.opts
        source_fmt = "yuv420p" if self.side_by_side else info.pix_fmt
        pix = (None if self.side_by_side else opts.pix_fmt) or vio.default_pix_fmt(
            opts.codec, source_fmt, width, height)
        return vio.SegmentEncoder(
            path, opts.codec, width, height, info.time_base, info.rate, pix,
            vio.encoder_options(opts.codec, opts.crf, opts.preset, opts.codec_options),
            info.colour, None if self.side_by_side else info.sar,
            0 if self.side_by_side else opts.encoder_threads,
            rotation=0 if self.side_by_side else info.rotation)


class _SegmentOutput:
    """The segment file (and its side-by-side twin) of one segment: opened at the first frame,
    written under ``.part`` names and renamed into place only when complete."""

    def __init__(self, wdir: Path, number: int, spec: _EncoderSpec,
                 sbs_spec: Optional[_EncoderSpec]):
        self.paths = [wdir / f"seg_{number:05d}.mov", wdir / f"sbs_{number:05d}.mov"]
        self.specs = [spec, sbs_spec]
        self.encoders: List[Optional[vio.SegmentEncoder]] = [None, None]
        self.written = 0

    def write(self, d: vio.DecodedFrame, out: ProcessedFrame) -> None:
        images = [out.image]
        if self.specs[1] is not None:
            images.append(np.concatenate([_fit(d.image, out.image.shape), out.image], axis=1))
        for k, img in enumerate(images):
            if self.encoders[k] is None:
                h, w = img.shape[:2]
                self.encoders[k] = self.specs[k].open(self.paths[k].with_suffix(".part.mov"), w, h)
        main = self.encoders[0]
        if not out.changed and d.frame is not None:
            main.write(d.pts, frame=d.frame)  # the original planes: no colour conversion
        else:
            main.write(d.pts, image=out.image)
        if len(images) > 1:
            self.encoders[1].write(d.pts, image=images[1])
        self.written += 1
        if self.written % 64 == 0:
            _trim_heap()

    def finish(self) -> Optional[int]:
        """Close and rename into place; returns the segment's timestamp offset (None: empty)."""
        for enc, path in zip(self.encoders, self.paths):
            if enc is not None:
                enc.close()
                os.replace(path.with_suffix(".part.mov"), path)
        return None if self.encoders[0] is None else self.encoders[0].offset

    def abort(self) -> None:
        for enc, path in zip(self.encoders, self.paths):
            if enc is not None:
                enc.abort()
            path.with_suffix(".part.mov").unlink(missing_ok=True)


def _run_segment(info: vio.VideoInfo, seg: _Segment, processor: SegmentProcessor, wdir: Path,
                 specs: Tuple[_EncoderSpec, Optional[_EncoderSpec]], opts: VideoJobOptions,
                 pbar, timer: StageTimer) -> dict:
    """Decode, restore and encode one segment; returns its marker (frames, lost, offset).

    Three stages overlap: decode (a thread) -> restore (a thread) -> encode (here).
    """
    output = _SegmentOutput(wdir, seg.number, *specs)
    pipe = _Pipe(opts.queue_size)
    bad_packets = [0]

    def decode():
        for d in vio.iter_frames(info, *seg.feed, bad_packets):
            pipe.put(pipe.q_in, d)
        pipe.put(pipe.q_in, _END)

    def restore():
        decoded = deque()

        def images():
            while (d := pipe.get(pipe.q_in)) is not _END:
                decoded.append(d)
                yield d.image
        for out in processor.process(images(), seg.window):
            pipe.put(pipe.q_out, (decoded.popleft(), out))
        pipe.put(pipe.q_out, _END)

    threads = [pipe.thread(decode, "gfpgan-decode"), pipe.thread(restore, "gfpgan-restore")]
    try:
        while (item := pipe.get(pipe.q_out)) is not _END:
            d, out = item
            if seg.writes(d.pts):
                with timer.stage("encode"):
                    output.write(d, out)
                if pbar is not None:
                    pbar.update(1)
        for t in threads:
            t.join()
        if pipe.errors:
            raise pipe.errors[0]
        offset = output.finish()
    except BaseException as exc:
        pipe.fail(exc)
        for t in threads:
            t.join()
        output.abort()
        if pipe.errors and pipe.errors[0] is not exc and isinstance(exc, _Stopped):
            raise pipe.errors[0] from None
        raise
    expected = seg.window.stop - seg.window.start
    marker = {"segment": seg.number, "frames": output.written, "expected": expected,
              "lost": expected - output.written, "bad_packets": bad_packets[0],
              "offset": offset, "time_base": str(info.time_base)}
    _atomic_json(wdir / f"seg_{seg.number:05d}.json", marker)
    _trim_heap()  # the segment's threads and encoder are gone: return their memory
    return marker


def _fit(img: np.ndarray, shape) -> np.ndarray:
    if img.shape[:2] == tuple(shape[:2]):
        return img
    import cv2  # only for side-by-side with --upscale
    return cv2.resize(img, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def _prepare(info: vio.VideoInfo, dest: Path, opts: VideoJobOptions,
             processor: SegmentProcessor, context: Tuple[int, int]) -> None:
    """Create the work folder of one video, or keep it for ``resume`` when it was made with the
    same fingerprint; rank 0 only. Another input is refused (a mistyped destination); other
    settings or weights start that video over: segments restored two ways are never spliced."""
    wdir = work_dir(dest)
    fp = _fingerprint(info, opts, processor, context)
    job = wdir / "job.json"
    if opts.resume and job.exists():
        try:
            old = json.loads(job.read_text())
        except (OSError, ValueError):
            old = {}
        if old == fp:
            return
        if any(old.get(k) != fp[k] for k in _INPUT_KEYS):
            raise UserError(f"the unfinished job in {wdir} was started with another input; rerun "
                            f"without --resume to start over.")
        print(f"note: {info.path} was started with other settings or weights; restoring it "
              f"from the start.", file=sys.stderr)
    if wdir.exists():
        for p in wdir.iterdir():  # only our own files live here
            if p.name == "job.json" or p.name.startswith(("seg_", "sbs_")):
                p.unlink()
    try:
        wdir.mkdir(parents=True, exist_ok=True)
        _atomic_json(job, fp)
    except OSError as exc:
        raise UserError(f"cannot write the work folder {wdir} ({exc.strerror or exc}); choose a "
                        f"writable destination with free space.") from None


def _join(info: vio.VideoInfo, dest: Path, opts: VideoJobOptions, nseg: int
          ) -> Tuple[List[dict], List[str]]:
    from gfpgan.files import atomic_path
    wdir = work_dir(dest)
    markers = [json.loads((wdir / f"seg_{s:05d}.json").read_text()) for s in range(nseg)]
    audio = None if info.files else info.path
    segs = [(wdir / f"seg_{m['segment']:05d}.mov", m["offset"], Fraction(m["time_base"]))
            for m in markers if m["frames"]]
    if not segs:
        raise UserError(f"no frame of {info.path} could be decoded; the file is damaged.")
    with atomic_path(dest) as tmp:
        notes = vio.join_segments(segs, tmp, info, audio)
    if opts.side_by_side:
        sbs = [(p.with_name("sbs_" + p.name[4:]), o, tb) for p, o, tb in segs]
        with atomic_path(opts.side_by_side) as tmp:
            vio.join_segments(sbs, tmp, info, audio, rotation=0)
    shutil.rmtree(wdir, ignore_errors=True)
    return markers, ([info.stamps.note()] if info.stamps and info.stamps.repaired else []) + notes


def run_videos(jobs: Sequence[Tuple[str, str]], processor: SegmentProcessor,
               opts: VideoJobOptions,
               rank: int = 0, world_size: int = 1, barrier: Optional[Callable] = None,
               poll_s: float = 0.2, timer: StageTimer = NO_TIMER) -> List[VideoSummary]:
    """Restore a list of videos, sharing segments among torchrun ranks.

    Args:
        jobs: ``(input, output)`` pairs; input is a video file or a folder of frames.
        processor: the :class:`~gfpgan.inference.job.segments.SegmentProcessor`, called once per
            segment with the context frames it asks for.
        opts: :class:`VideoJobOptions`.
        rank, world_size, barrier: torchrun placement (barrier: a callable, e.g.
            :func:`gfpgan.dist.barrier`).
        poll_s: how often a joining rank looks for the other ranks' segments.
        timer: sees the encoding of every written frame (stage "encode").
    Returns:
        A :class:`VideoSummary` per video joined by this rank.
    """
    t0 = time.time()
    infos, dests = [], []
    for src, dst in jobs:
        dst = Path(dst)
        if dst.suffix.lower() not in vio.OUTPUT_FORMATS:
            raise UserError(f"cannot write {dst}: the output extension must be one of "
                            f"{', '.join(sorted(vio.OUTPUT_FORMATS))}.")
        if Path(src).resolve() == dst.resolve():
            raise UserError(f"the output {dst} is the input; choose another output path.")
        infos.append(vio.probe_video(src, opts.folder_fps))
        dests.append(dst)
    warmup, tail = processor.context()
    context = (warmup if opts.warmup is None else opts.warmup, tail)
    if rank == 0:
        for info, dst in zip(infos, dests):
            _prepare(info, dst, opts, processor, context)
    if barrier is not None and world_size > 1:
        barrier()
    nsegs = [max(1, -(-i.num_frames // opts.segment_frames)) for i in infos]
    items = [(v, s) for v in range(len(infos)) for s in range(nsegs[v])]
    mine = [it for j, it in enumerate(items) if j % world_size == rank]
    todo = [(v, s) for v, s in mine
            if not (work_dir(dests[v]) / f"seg_{s:05d}.json").exists()]
    reused = {v: sum(1 for vv, _ in mine if vv == v) for v in range(len(infos))}
    for v, _ in todo:
        reused[v] -= 1
    total = sum(min(infos[v].num_frames, (s + 1) * opts.segment_frames) - s * opts.segment_frames
                for v, s in todo)
    pbar = None
    if opts.progress:
        from tqdm import tqdm
        pbar = tqdm(total=total, unit="frame", desc=f"restore[{rank}]" if world_size > 1
                    else "restore", dynamic_ncols=True)
    try:
        for v, s in todo:
            info = infos[v]
            specs = (_EncoderSpec(info, opts),
                     _EncoderSpec(info, opts, side_by_side=True) if opts.side_by_side else None)
            _run_segment(info, _Segment.of(info, s, opts.segment_frames, context), processor,
                         work_dir(dests[v]), specs, opts, pbar, timer)
    finally:
        if pbar is not None:
            pbar.close()
    out = []
    for v in range(len(infos)):
        if v % world_size != rank:
            continue
        wdir = work_dir(dests[v])
        while not all((wdir / f"seg_{s:05d}.json").exists() for s in range(nsegs[v])):
            time.sleep(poll_s)  # other ranks still encoding; torchrun ends us if one dies
        markers, notes = _join(infos[v], dests[v], opts, nsegs[v])
        out.append(VideoSummary(str(infos[v].path), str(dests[v]),
                                sum(m["frames"] for m in markers),
                                sum(m["lost"] for m in markers), nsegs[v], reused[v],
                                time.time() - t0, notes))
    return out
