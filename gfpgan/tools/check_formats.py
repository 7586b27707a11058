"""Check that every video of a folder comes through restoration whole.

``python -m gfpgan.tools.check_formats DIR [--model M]`` restores each video of ``DIR`` (an I/O
pass-through without ``--model``, the face pipeline of :mod:`gfpgan.infer_video` with it) and
prints one row per file: codec, frames in/out, duration in/out, streams in/out (video, audio,
subtitle, chapters) and what was noted (repaired timestamps, streams left out) or went wrong.
Frames are counted by decoding every one; durations run from the first frame to the end of the
last. Exit code 1 when a file loses frames, time (more than one frame) or streams.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence

from gfpgan.cli import add_common_arguments
from gfpgan.errors import UserError, command

__all__ = ["Measure", "measure", "check_file", "main", "cli"]

_SAME = (".mp4", ".mov", ".mkv")


@dataclass
class Measure:
    """What a file holds, as counted by decoding it."""

    codec: str
    frames: int
    duration: float
    rate: float
    audio: int
    subtitles: int
    chapters: int
    rotation: int
    note: str = ""

    @property
    def streams(self) -> str:
        return f"v1 a{self.audio} s{self.subtitles} c{self.chapters}"


def measure(path) -> Measure:
    """Decode every video frame of ``path`` and count its streams and chapters."""
    from gfpgan.inference import video as vio
    from gfpgan.inference.video.streams import av_open

    info = vio.probe_video(path)
    frames = sum(1 for _ in vio.iter_frames(info, int(info.pts[0]), None))
    with av_open(path) as c:
        subs, chapters = len(c.streams.subtitles), len(c.chapters())
    note = info.stamps.note() if info.stamps is not None else ""
    return Measure(info.codec, frames, info.duration, float(info.rate), len(info.audio), subs,
                   chapters, info.rotation, note)


@dataclass
class Row:
    """One file of the table."""

    name: str
    src: Optional[Measure]
    out: Optional[Measure]
    problem: str = ""
    notes: str = ""

    def line(self) -> str:
        s, o = self.src, self.out
        cells = [self.name, s.codec if s else "-",
                 f"{s.frames if s else '-'}/{o.frames if o else '-'}",
                 f"{s.duration:.3f}/{o.duration:.3f}" if s and o else
                 (f"{s.duration:.3f}/-" if s else "-"),
                 f"{s.streams if s else '-'} / {o.streams if o else '-'}",
                 "; ".join(x for x in (self.problem or "ok", self.notes) if x)]
        return " | ".join(cells)


def check_file(src: Path, dst: Path, restore: Callable[[Path, Path], List[str]]) -> Row:
    """Restore ``src`` to ``dst`` with ``restore`` and compare what went in and came out."""
    try:
        before = measure(src)
    except UserError as exc:
        return Row(src.name, None, None, f"not read: {exc}")
    try:
        notes = restore(src, dst)
        after = measure(dst)
    except UserError as exc:
        return Row(src.name, before, None, f"failed: {exc}")
    problems = []
    notes = list(notes) or ([before.note] if before.note else [])
    if after.frames != before.frames:
        problems.append(f"{before.frames - after.frames} frame(s) lost")
    if abs(after.duration - before.duration) > 1 / before.rate + 1e-6:
        problems.append(f"duration off by {after.duration - before.duration:+.3f} s")
    if after.audio != before.audio or after.chapters != before.chapters or (
            after.subtitles != before.subtitles and not any("subtitle" in n for n in notes)):
        problems.append("streams differ")
    return Row(src.name, before, after, "; ".join(problems), "; ".join(notes))


def _io_only(src: Path, dst: Path) -> List[str]:
    from gfpgan.inference.job.options import VideoJobOptions
    from gfpgan.inference.job.segments import IdentityProcessor
    from gfpgan.inference.job.video_job import run_videos
    [s] = run_videos([(str(src), str(dst))], IdentityProcessor(),
                     VideoJobOptions(progress=False, preset="veryfast"))
    return list(s.notes)


def _with_model(model: str, device: str) -> Callable[[Path, Path], List[str]]:
    def restore(src: Path, dst: Path) -> List[str]:
        from gfpgan.infer_video import main as infer
        infer(["-i", str(src), "-o", str(dst), "--model", model, "--device", device,
               "--no-progress", "--preset", "veryfast"])
        return []
    return restore


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gfpgan-check-formats", description=__doc__.split("\n")[0])
    p.add_argument("folder", help="a folder of videos (any container FFmpeg reads)")
    p.add_argument("--output", default=None,
                   help="where the restored files go (default: a temporary folder, removed)")
    p.add_argument("--ext", default="same",
                   help="output extension: .mp4/.mov/.mkv, or 'same' (the input's where it is one "
                        "of those, else .mp4)")
    p.add_argument("--model", default=None,
                   help="restore faces with this model (default: I/O pass-through only)")
    add_common_arguments(p, device=True)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    folder = Path(args.folder)
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder; give a folder of videos.")
    if args.ext != "same" and args.ext not in _SAME:
        raise UserError(f"--ext must be 'same' or one of {', '.join(_SAME)}.")
    restore = _with_model(args.model, args.device) if args.model else _io_only
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = Path(args.output) if args.output else Path(tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        rows, used = [], set()
        for f in files:
            ext = args.ext if args.ext != "same" else (
                f.suffix.lower() if f.suffix.lower() in _SAME else ".mp4")
            name = f"{f.stem}{ext}"
            if name in used:  # clip.mp4 and clip.ts: clip.mp4 and clip_ts.mp4
                name = f"{f.stem}_{f.suffix.lstrip('.')}{ext}"
            used.add(name)
            rows.append(check_file(f, out_dir / name, restore))
    videos = [r for r in rows if r.src is not None]
    print("file | codec | frames in/out | duration in/out (s) | streams in / out | result")
    for r in videos:
        print(r.line())
    skipped = len(rows) - len(videos)
    bad = sum(1 for r in videos if r.problem)
    print(f"{len(videos)} video(s), {bad} with problems" +
          (f", {skipped} other file(s) skipped" if skipped else ""), file=sys.stderr)
    return 1 if bad else 0


cli = command(main)  # the console script

if __name__ == "__main__":
    cli()
