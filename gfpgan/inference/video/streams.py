"""Everything of a source video besides its pictures, carried into the restored file.

* **Audio**: copied where the output container takes the codec (mp4/mov: AAC, MP3, AC-3, E-AC-3,
  ALAC, Opus, FLAC, and PCM in mov; mkv: almost everything), else decoded, resampled to what the
  AAC encoder takes (float planar, a standard layout for the channel count, a rate AAC has) and
  re-encoded.
* **Subtitles**: copied (mkv) or converted between SubRip/ASS/WebVTT and mov_text (mp4/mov);
  a stream the container cannot hold (a Blu-ray PGS bitmap in mp4, any bitmap in mov; mp4 keeps
  DVD VobSub) is left out with a note.
* **Chapters** and **metadata**: the container's tags (``title``, ``creation_time``,
  ``location``...) and each stream's (``language``, ``title``...), except the ones that describe
  the old file (encoder, statistics, brands); each stream's disposition (``default``, ``forced``,
  ``hearing_impaired``...), so players pick the same audio and subtitle tracks.
* **Dropped**: data streams (timecode, telemetry) and attachments; a subtitle the container cannot
  hold (with a note).
* **Start offset**: the output starts at 0. Every stream is moved by the same amount, the
  earliest start among video and audio (an MPEG-TS/PS clock of 1.48 s becomes 0), so the
  offsets between streams are kept, as FFmpeg's CLI does.
"""

from __future__ import annotations

import re
import struct
from fractions import Fraction
from typing import Iterator, List, Optional, Tuple

import av

__all__ = ["av_open", "codec_name", "start_offset", "add_audio", "add_subtitle", "copy_tags", "copy_chapters",
           "copy_disposition", "audio_packets", "subtitle_packets"]

# Audio codecs the mp4/mov muxers take as a copy (players read them); anything else -> AAC.
MP4_AUDIO = {"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"}
_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000,
              7350)
_AAC_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "4.0", 5: "5.0", 6: "5.1", 8: "7.1"}
_TEXT_SUBS = {"subrip", "srt", "ass", "ssa", "webvtt", "mov_text", "text"}
# Tags that describe the old file, not the content, are left behind; so is ``timecode``, from
# which the mov muxer would build a timecode track at the stream's rate (refused for DV's 1/60000).
_STALE_TAGS = {"encoder", "duration", "handler_name", "vendor_id", "major_brand",
               "minor_version", "compatible_brands", "bps", "number_of_frames",
               "number_of_bytes", "rotate", "timecode"}


def codec_name(stream) -> str:
    """The codec of a stream (``mp3``), not its decoder's name (``mp3float``), "" when unknown."""
    ctx = stream.codec_context
    if ctx is None:
        return ""
    return getattr(ctx.codec, "canonical_name", None) or ctx.name or ""


def av_open(path) -> "av.container.InputContainer":
    """Open a file for reading, tolerant of undecodable metadata tags.

    PyAV < 19 needs ``metadata_errors="ignore"`` for that; PyAV 19 dropped the argument.
    """
    try:
        return av.open(str(path), metadata_errors="ignore")
    except TypeError:
        return av.open(str(path))


def start_offset(src, video_start: Fraction, audio_indices) -> Fraction:
    """Seconds to subtract from every stream so the output starts at 0 (never negative).

    Args:
        src: the open source container.
        video_start: time of the first video frame (s).
        audio_indices: container indices of the audio streams carried over.
    """
    starts = [video_start]
    for i in audio_indices:
        st = src.streams[i]
        if st.start_time is not None and st.time_base:
            starts.append(Fraction(st.start_time) * st.time_base)
    return max(Fraction(0), min(starts))


def copy_tags(src_meta, dst_meta) -> None:
    """Copy metadata tags except the ones that describe the old file."""
    for k, v in dict(src_meta).items():
        low = k.lower()
        if low in _STALE_TAGS or low.startswith("_statistics"):
            continue
        try:
            dst_meta[k] = v
        except (ValueError, TypeError):  # a tag FFmpeg cannot store: not worth failing for
            continue


def copy_disposition(src_stream, dst_stream) -> None:
    """Copy a stream's disposition flags (default, forced, hearing impaired...): a stream made
    from a template or an encoder starts with none, and Matroska then marks no track default."""
    try:
        dst_stream.disposition = src_stream.disposition
    except (AttributeError, TypeError, ValueError):  # PyAV < 13 has no disposition
        pass


def copy_chapters(src, out, shift: Fraction) -> None:
    """Copy the source's chapters, moved by the start offset (in s)."""
    chapters = src.chapters()
    if not chapters:
        return
    moved = []
    for ch in chapters:
        tb = ch["time_base"] or Fraction(1, 1000)
        d = int(round(shift / tb))
        moved.append(dict(ch, start=max(0, ch["start"] - d), end=max(0, ch["end"] - d)))
    out.set_chapters(moved)


def _aac_stream(out, src_stream):
    """An AAC encoder stream for an audio source (rate and layout AAC takes)."""
    ctx = src_stream.codec_context
    rate = ctx.sample_rate or 48000
    if rate not in _AAC_RATES:
        rate = min(_AAC_RATES, key=lambda r: (abs(r - rate), -r))
    n = ctx.layout.nb_channels or 2
    layout = _AAC_LAYOUTS.get(n, "stereo" if n > 1 else "mono")
    s = out.add_stream("aac", rate=rate)
    s.codec_context.layout = layout
    s.codec_context.format = "fltp"
    return s


def add_audio(out, src_stream, fmt: str) -> Tuple[object, bool]:
    """Add an output stream for a source audio stream; returns (stream, re-encode?)."""
    name = codec_name(src_stream)
    copy = name in MP4_AUDIO or (fmt == "mov" and name.startswith("pcm_"))
    if fmt == "matroska" or copy:
        try:
            s = out.add_stream_from_template(src_stream)
            s.time_base = src_stream.time_base
            copy_tags(src_stream.metadata, s.metadata)
            copy_disposition(src_stream, s)
            return s, False
        except ValueError:  # the muxer does not take this codec
            pass
    s = _aac_stream(out, src_stream)
    copy_tags(src_stream.metadata, s.metadata)
    copy_disposition(src_stream, s)
    return s, True


def add_subtitle(out, src_stream, fmt: str, ext: str) -> Tuple[Optional[object], Optional[str],
                                                                 str]:
    """Add an output stream for a source subtitle stream.

    Returns:
        (stream, conversion, note): conversion is None (copy) or the target text codec; stream
        is None with a one-line note when the container cannot hold this subtitle.
    """
    name = codec_name(src_stream)
    try:
        s = out.add_stream_from_template(src_stream)
        s.time_base = src_stream.time_base
        conv = None
    except ValueError:
        if name not in _TEXT_SUBS:
            return None, None, (f"subtitle stream #{src_stream.index} ({name}) cannot be stored "
                                f"in {ext}; write .mkv to keep it")
        conv = "subrip" if fmt == "matroska" else "mov_text"
        s = out.add_mux_stream(conv)
        s.time_base = src_stream.time_base
    copy_tags(src_stream.metadata, s.metadata)
    copy_disposition(src_stream, s)
    return s, conv, ""


_ASS_TAG = re.compile(r"\{[^}]*\}")
_HTML_TAG = re.compile(r"</?[a-zA-Z][^>]*>")


def _subtitle_text(codec: str, data: bytes) -> str:
    """The plain text of one subtitle packet."""
    if codec == "mov_text":
        n = struct.unpack(">H", data[:2])[0] if len(data) >= 2 else 0
        return data[2:2 + n].decode("utf-8", "replace")
    text = data.decode("utf-8", "replace")
    if codec in ("ass", "ssa"):
        text = text.split(",", 8)[-1]  # ReadOrder,Layer,Style,Name,MarginL,R,V,Effect,Text
        text = _ASS_TAG.sub("", text).replace("\\N", "\n").replace("\\n", "\n")
    return _HTML_TAG.sub("", text).strip()


def subtitle_packets(src_path, index: int, out_stream, conv: Optional[str],
                     shift: Fraction) -> Iterator[tuple]:
    """(time in s, order, packet) of one subtitle stream, copied or converted."""
    with av_open(src_path) as c:
        st = c.streams[index]
        codec = codec_name(st)
        d = int(round(shift / st.time_base))
        try:
            for p in c.demux(st):
                if p.size == 0 or p.pts is None:
                    continue
                if conv is not None:
                    text = _subtitle_text(codec, bytes(p)).encode("utf-8")
                    q = av.Packet(struct.pack(">H", len(text)) + text if conv == "mov_text"
                                  else text)
                    q.pts, q.duration = p.pts, p.duration
                    p = q
                p.pts = p.pts - d
                p.dts = p.pts
                p.time_base = st.time_base
                p.stream = out_stream
                yield float(p.pts * st.time_base), 2, p
        except av.error.FFmpegError:
            return


def audio_packets(src_path, index: int, out_stream, reencode: bool,
                  shift: Fraction) -> Iterator[tuple]:
    """(time in s, order, packet) of one source audio stream, copied or re-encoded."""
    with av_open(src_path) as c:
        st = c.streams[index]
        d = int(round(shift / st.time_base))
        if not reencode:
            try:
                for p in c.demux(st):
                    if p.size == 0 or p.dts is None:
                        continue
                    p.dts -= d
                    if p.pts is not None:
                        p.pts -= d
                    p.stream = out_stream
                    yield float(p.dts * st.time_base), 1, p
            except av.error.FFmpegError:
                return
            return
        yield from _reencode(c, st, out_stream, shift)


def _reencode(c, st, out_stream, shift: Fraction) -> Iterator[tuple]:
    ctx = out_stream.codec_context
    sr = ctx.sample_rate
    res = av.AudioResampler(format=ctx.format.name, layout=ctx.layout.name, rate=sr,
                            frame_size=ctx.frame_size or 1024)
    start = Fraction(st.start_time or 0) * st.time_base
    next_pts: Optional[int] = None

    def stamped(frames: List) -> Iterator[tuple]:
        nonlocal next_pts
        for r in frames:
            r.pts, r.time_base = next_pts or 0, Fraction(1, sr)
            next_pts = (next_pts or 0) + r.samples
            for p in out_stream.encode(r):
                yield float(p.dts * p.time_base), 1, p
    try:
        for fr in c.decode(st):
            if next_pts is None:
                t0 = fr.pts * st.time_base if fr.pts is not None else start
                next_pts = int(round((t0 - shift) * sr))
            yield from stamped(res.resample(fr))
    except av.error.FFmpegError:
        pass  # a damaged tail: keep what decoded
    yield from stamped(res.resample(None))
    for p in out_stream.encode(None):
        yield float(p.dts * p.time_base), 1, p
