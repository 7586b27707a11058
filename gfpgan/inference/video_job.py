"""A video restoration job: segments, resume manifest, rank sharding and a threaded pipeline.

A video is cut into segments of ``segment_frames`` frames of its frame table. Each segment runs
through three overlapped stages joined by bounded queues (memory stays flat however long the
video is):

    decode thread --q_in--> restore thread (``processor.process``) --q_out--> encode (caller)

(:class:`~gfpgan.inference.face_pipeline.VideoFaceRestorer` splits its stage further: face
detection in a thread ahead of the generator, paste-back on a pool behind it.)

The restorer sees ``warmup`` frames before the segment and ``tail`` frames after it (restored but
not written) so its tracking and look-ahead have the same context whatever the split; with a
deterministic restorer whose state reaches back at most ``warmup`` frames, a segment's frames do
not depend on where segments start. A frame the restorer returns unchanged (the same array) is
re-encoded from its original decoded planes, so it goes through without a colour conversion.

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
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from gfpgan.errors import UserError
from gfpgan.inference import video_io as vio
from gfpgan.inference.overlap import put_unless_stopped

__all__ = ["VideoJobOptions", "VideoSummary", "run_videos", "work_dir", "IdentityProcessor"]

_END = object()


class _Stopped(Exception):
    """Raised inside a stage when another stage failed; never escapes the pipeline."""


@dataclass
class VideoJobOptions:
    """Encoding and scheduling options of a job (everything except the restorer itself).

    Attributes:
        codec, crf, preset, pix_fmt: the video encoder (pix_fmt None: the source's when the
            encoder takes it, yuv444p at odd sizes, else yuv420p).
        codec_options: further encoder options, e.g. ``{"x264-params": "mbtree=0"}``.
        segment_frames: frames per segment (the unit of resume and of torchrun sharding).
        warmup: frames before a segment restored for context but not written.
        tail: frames after a segment fed to the restorer so its look-ahead sees them.
        queue_size: capacity of each inter-stage queue (frames).
        resume: keep the completed segments of an interrupted job with the same settings.
        side_by_side: also write an input|output comparison video there.
        progress: show a tqdm bar (frames, frames/s, ETA).
        folder_fps: frame rate of a folder-of-frames input.
        fingerprint: extra settings (model, strength...) that must match for a resume.
    """

    codec: str = "libx264"
    crf: Optional[float] = 18
    preset: Optional[str] = "medium"
    pix_fmt: Optional[str] = None
    codec_options: Dict[str, str] = field(default_factory=dict)
    segment_frames: int = 240
    warmup: int = 16
    tail: int = 8
    queue_size: int = 8
    resume: bool = False
    side_by_side: Optional[str] = None
    progress: bool = True
    folder_fps: Fraction = Fraction(25)
    encoder_threads: int = 0
    fingerprint: Dict[str, object] = field(default_factory=dict)


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


class IdentityProcessor:
    """A restorer that returns every frame unchanged (tests, I/O benchmarks)."""

    lookahead = 0

    def process(self, frames):
        yield from frames


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
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _fingerprint(info: vio.VideoInfo, opts: VideoJobOptions) -> dict:
    st = os.stat(info.path)
    keep = {k: v for k, v in asdict(opts).items()
            if k in ("codec", "crf", "preset", "pix_fmt", "codec_options", "segment_frames",
                     "warmup", "tail")}
    digest = hashlib.sha1(np.ascontiguousarray(info.pts).tobytes()).hexdigest()
    return {"input": str(Path(info.path).resolve()), "size": st.st_size,
            "mtime_ns": st.st_mtime_ns, "frames": info.num_frames, "pts_sha1": digest,
            "options": keep, "side_by_side": bool(opts.side_by_side),
            "extra": json.loads(json.dumps(opts.fingerprint, default=str))}


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


def _run_segment(info: vio.VideoInfo, seg: int, processor, wdir: Path, opts: VideoJobOptions,
                 pbar) -> dict:
    """Decode, restore and encode segment ``seg``; returns its marker (frames, lost, offset)."""
    n, size = info.num_frames, opts.segment_frames
    i0, i1 = seg * size, min(n, (seg + 1) * size)
    feed_start = int(info.pts[max(0, i0 - opts.warmup)])
    feed_stop = int(info.pts[i1 + opts.tail]) if i1 + opts.tail < n else None
    w_start = int(info.pts[i0])
    w_stop = int(info.pts[i1]) if i1 < n else None
    k = (info.rotation // 90) % 4
    lost_packets = [0]
    pipe = _Pipe(opts.queue_size)
    if hasattr(processor, "start_segment"):
        processor.start_segment(Path(info.path).stem, seg, max(0, i0 - opts.warmup), i0, i1)

    def decode():
        for d in vio.iter_frames(info, feed_start, feed_stop, lost_packets):
            pipe.put(pipe.q_in, d)
        pipe.put(pipe.q_in, _END)

    def restore():
        metas = deque()

        def feed():
            while True:
                item = pipe.get(pipe.q_in)
                if item is _END:
                    return
                metas.append(item)
                yield item.image
        proc = processor.process if hasattr(processor, "process") else processor
        for out in proc(feed()):
            pipe.put(pipe.q_out, (metas.popleft(), out))
        pipe.put(pipe.q_out, _END)

    seg_path = wdir / f"seg_{seg:05d}.mov"
    sbs_path = wdir / f"sbs_{seg:05d}.mov"
    parts = [seg_path.with_suffix(".part.mov"), sbs_path.with_suffix(".part.mov")]
    enc = sbs = None
    written = 0
    threads = [pipe.thread(decode, "gfpgan-decode"), pipe.thread(restore, "gfpgan-restore")]
    try:
        while True:
            item = pipe.get(pipe.q_out)
            if item is _END:
                break
            d, out = item
            if d.pts < w_start or (w_stop is not None and d.pts >= w_stop):
                continue
            untouched = out is d.image
            stored = np.rot90(out, -k) if k else out
            if enc is None:
                h, w = stored.shape[:2]
                pix = opts.pix_fmt or vio.default_pix_fmt(opts.codec, info.pix_fmt, w, h)
                enc = vio.SegmentEncoder(parts[0], opts.codec, w, h, info.time_base, info.rate,
                                         pix, vio.encoder_options(opts.codec, opts.crf,
                                                                  opts.preset, opts.codec_options),
                                         info.colour, info.sar, opts.encoder_threads)
                if opts.side_by_side:
                    sh, sw = out.shape[:2]
                    sbs = vio.SegmentEncoder(parts[1], opts.codec, 2 * sw, sh, info.time_base,
                                             info.rate, vio.default_pix_fmt(
                                                 opts.codec, "yuv420p", 2 * sw, sh),
                                             vio.encoder_options(opts.codec, opts.crf,
                                                                 opts.preset, opts.codec_options),
                                             info.colour)
            if untouched and d.frame is not None and (d.frame.width, d.frame.height) == (
                    enc.stream.width, enc.stream.height):
                enc.write(d.pts, frame=d.frame)
            else:
                enc.write(d.pts, image=stored)
            if sbs is not None:
                sbs.write(d.pts, image=np.concatenate([_fit(d.image, out.shape), out], axis=1))
            written += 1
            if written % 64 == 0:
                _trim_heap()
            if pbar is not None:
                pbar.update(1)
        for t in threads:
            t.join()
        if pipe.errors:
            raise pipe.errors[0]
        if enc is not None:  # None: every frame of the segment was undecodable
            enc.close()
        if sbs is not None:
            sbs.close()
    except BaseException as exc:
        pipe.fail(exc)
        for t in threads:
            t.join()
        for e in (enc, sbs):
            if e is not None:
                e.abort()
        for p in parts:
            p.unlink(missing_ok=True)
        if pipe.errors and pipe.errors[0] is not exc and isinstance(exc, _Stopped):
            raise pipe.errors[0] from None
        raise
    if enc is not None:
        os.replace(parts[0], seg_path)
    if sbs is not None:
        os.replace(parts[1], sbs_path)
    marker = {"segment": seg, "frames": written, "expected": i1 - i0,
              "lost": (i1 - i0) - written, "bad_packets": lost_packets[0],
              "offset": enc.offset if enc is not None else None,
              "time_base": str(info.time_base)}
    _atomic_json(wdir / f"seg_{seg:05d}.json", marker)
    _trim_heap()  # the segment's threads and encoder are gone: return their memory
    return marker


def _fit(img: np.ndarray, shape) -> np.ndarray:
    if img.shape[:2] == tuple(shape[:2]):
        return img
    import cv2  # only for side-by-side with --upscale
    return cv2.resize(img, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def _prepare(info: vio.VideoInfo, dest: Path, opts: VideoJobOptions) -> None:
    """Create (or check, for resume) the work folder of one video; rank 0 only."""
    wdir = work_dir(dest)
    fp = _fingerprint(info, opts)
    job = wdir / "job.json"
    if opts.resume and job.exists():
        try:
            old = json.loads(job.read_text())
        except (OSError, ValueError):
            old = None
        if old == fp:
            return
        raise UserError(f"the unfinished job in {wdir} was started with another input or other "
                        f"settings; rerun without --resume to start over.")
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
    from gfpgan.utils import atomic_path
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


def run_videos(jobs: Sequence[Tuple[str, str]], processor, opts: VideoJobOptions,
               rank: int = 0, world_size: int = 1, barrier: Optional[Callable] = None,
               poll_s: float = 0.2) -> List[VideoSummary]:
    """Restore a list of videos, sharing segments among torchrun ranks.

    Args:
        jobs: ``(input, output)`` pairs; input is a video file or a folder of frames.
        processor: object with ``process(frames) -> iterator`` (or a callable doing that),
            frames being upright RGB uint8 (H, W, 3) arrays, returned in order; called once per
            segment.
        opts: :class:`VideoJobOptions`.
        rank, world_size, barrier: torchrun placement (barrier: a callable, e.g.
            :func:`gfpgan.dist.barrier`).
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
    if rank == 0:
        for info, dst in zip(infos, dests):
            _prepare(info, dst, opts)
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
            _run_segment(infos[v], s, processor, work_dir(dests[v]), opts, pbar)
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
