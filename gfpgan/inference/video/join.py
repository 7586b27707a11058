"""Joining encoded segments into the output file with every other stream of the source.

:func:`join_segments` remuxes the segments' packets (no re-encode) at their absolute
timestamps together with the source's audio, subtitles, chapters and metadata (see
:mod:`gfpgan.inference.video.streams`), and restores rotation, aspect ratio and colour tags.
"""

from __future__ import annotations

import contextlib
import heapq
import os
from fractions import Fraction
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

import av

from gfpgan.errors import UserError
from gfpgan.inference.video import streams as mux
from gfpgan.inference.video.info import VideoInfo
from gfpgan.inference.video.streams import av_open as _av_open

__all__ = ["OUTPUT_FORMATS", "join_segments", "file_size"]

# Output containers we mux (by extension) and the muxer name PyAV knows them by.
OUTPUT_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}


def _video_packets(segments: Sequence[tuple], out_stream, shift: int) -> Iterator[tuple]:
    """(time in s, order, packet) for every packet of the segment files, at their absolute
    timestamps less ``shift`` (the output's start offset, in the output stream's time base)."""
    for path, offset, src_tb in segments:
        with av.open(str(path), format="mov") as c:
            st = c.streams.video[0]
            move = int(round(Fraction(offset) * Fraction(src_tb) / st.time_base)) - shift
            for p in c.demux(st):
                if p.size == 0:
                    continue
                dts = p.dts if p.dts is not None else p.pts
                p.pts = p.pts + move
                p.dts = dts + move
                p.stream = out_stream
                yield float(p.dts * st.time_base), 0, p


def join_segments(segments: Sequence[tuple], dest, info: VideoInfo,
                  audio_source: Optional[Path] = None, rotation: Optional[int] = None
                  ) -> List[str]:
    """Remux segment files and the source's other streams into one output file.

    Video packets are not re-encoded. From ``audio_source`` come every audio stream (copied or
    re-encoded, see :mod:`gfpgan.inference.video.streams`), subtitle streams, chapters and the
    container's and streams' metadata; the output starts at 0 with the streams' offsets kept.

    Args:
        segments: ``(segment file, pts offset, time base of the offset)`` in order.
        dest: the file to write (its extension picks the container, see ``OUTPUT_FORMATS``).
        info: the source's :class:`VideoInfo` (time base, rotation, aspect ratio, audio).
        audio_source: the file whose other streams are carried over (None: video only).
        rotation: display rotation to tag (default ``info.rotation``).
    Returns:
        One line per source stream the container could not hold (left out).
    """
    dest = Path(dest)
    fmt = OUTPUT_FORMATS.get(dest.suffix.lower())
    if fmt is None:
        raise UserError(f"cannot write {dest}: the extension must be one of "
                        f"{', '.join(sorted(OUTPUT_FORMATS))}.")
    opts = {}
    if fmt in ("mp4", "mov"):
        # Edit lists are written in the movie timescale: make it the track's so a non-zero
        # start time survives exactly (the default 1/1000 rounds it to a millisecond).
        opts["movie_timescale"] = str(min(info.time_base.denominator, 2 ** 31 - 1))
    rot = info.rotation if rotation is None else rotation
    notes: List[str] = []
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(av.open(str(segments[0][0]), format="mov"))
        out = stack.enter_context(av.open(str(dest), "w", format=fmt, options=opts))
        src = stack.enter_context(_av_open(audio_source)) if audio_source is not None else None
        vout = out.add_stream_from_template(first.streams.video[0])
        vout.time_base = info.time_base
        if rot:
            vout.set_display_rotation(rot)
        if info.sar:
            vout.sample_aspect_ratio = info.sar
        sources = [_video_packets(segments, vout, 0)]
        if src is not None:
            audio = [a.index for a in info.audio]
            video_start = Fraction(int(info.pts[0])) * info.time_base
            shift_v = int(round(mux.start_offset(src, video_start, audio) / info.time_base))
            shift = shift_v * info.time_base  # exactly what the video moves by, in seconds
            sources = [_video_packets(segments, vout, shift_v)]
            mux.copy_tags(src.metadata, out.metadata)
            mux.copy_tags(src.streams.video[0].metadata, vout.metadata)
            mux.copy_disposition(src.streams.video[0], vout)
            for i in audio:
                aout, reencode = mux.add_audio(out, src.streams[i], fmt)
                sources.append(mux.audio_packets(audio_source, i, aout, reencode, shift))
            for st in src.streams.subtitles:
                sout, conv, note = mux.add_subtitle(out, st, fmt, dest.suffix.lower())
                if sout is None:
                    notes.append(note)
                    continue
                sources.append(mux.subtitle_packets(audio_source, st.index, sout, conv, shift))
            mux.copy_chapters(src, out, shift)
        for _, _, p in heapq.merge(*sources, key=lambda x: (x[0], x[1])):
            out.mux(p)
    return notes


def file_size(path) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
