"""A corpus of real-world video formats, generated with Debian's ``ffmpeg`` CLI.

Every clip is a moving face-free test pattern (``testsrc2``) with a white *flash* frame at 1.0 s
and, where it has sound, a quiet tone with a loud 1 kHz *click* starting at the same instant, so
a test can check that picture and sound still coincide after restoration. The cases cover the
containers and codecs people actually have: DivX/Xvid AVIs (with packed-order B-frames, whose
timestamps are missing or go backwards), camcorder MPEG-TS/AVCHD, DVD VOB, MJPEG camera AVIs with
PCM, WMV, FLV, 3GP, phone mov/mp4 with rotation, location and a creation date, webm, mkv with
several audio and subtitle tracks and chapters, VFR, raw H.264 without timestamps, a damaged AVI.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pytest

FFMPEG = shutil.which("ffmpeg")
FFPROBE = shutil.which("ffprobe")
CI = os.environ.get("CI", "").lower() == "true"
FLASH_S = 1.0  # time of the flash frame and of the click onset
CLICK = "0.03*sin(2*PI*440*t)+0.9*sin(2*PI*1000*t)*between(t,1.0,1.03)"
SRT = "1\n00:00:00,200 --> 00:00:00,900\nHello {lang}\n\n2\n00:00:01,000 --> 00:00:01,400\nFlash\n"
CHAPTERS = (";FFMETADATA1\ntitle=Corpus clip\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=700\n"
            "title=Start\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=700\nEND=1400\ntitle=Flash\n")


@dataclass
class Case:
    """One corpus file: how ffmpeg makes it and what the restored output must keep.

    Attributes:
        name: file name (its extension picks the container).
        video: ffmpeg output options for the video stream (codec, pixel format...).
        audio: options for the audio stream(s) (empty: no audio).
        out: extension of the restored output.
        size, rate, seconds: the test pattern's geometry and timing.
        extra: further ffmpeg output options (muxer, metadata, rotation).
        inputs: extra inputs (``srt:eng``, ``srt:fre``, ``chapters``, ``audio2``).
        maps: explicit ``-map`` list when several inputs are used.
        vf: extra video filter (after the flash).
        audio_rate: sample rate of the generated sound.
        channels: channels of the generated sound.
        expect: what the output must show (``subtitles``, ``chapters``, ``rotation``, metadata
            keys...).
        remux: ``(input options, output options)`` of a second, stream-copy pass (a cut, a
            bitstream filter that rewrites timestamps).
        post: ``damage`` to overwrite bytes in the middle of the file after writing it.
    """

    name: str
    video: Sequence[str]
    audio: Sequence[str] = ()
    out: str = ".mp4"
    size: str = "128x96"
    rate: str = "25"
    seconds: float = 1.6
    extra: Sequence[str] = ()
    inputs: Sequence[str] = ()
    maps: Sequence[str] = ()
    vf: str = ""
    audio_rate: int = 44100
    channels: int = 2
    expect: Dict[str, object] = field(default_factory=dict)
    remux: Optional[Tuple[Sequence[str], Sequence[str]]] = None
    post: Optional[str] = None


# decode-order stamps as pts, moved to where the display-order ones start (audio stays in sync)
DTS_AS_PTS = ["-bsf:v", "setts=pts=DTS-STARTDTS+STARTPTS"]
H264 = ["-c:v", "libx264", "-preset", "ultrafast", "-bf", "2", "-pix_fmt", "yuv420p"]
AAC = ["-c:a", "aac", "-b:a", "96k"]
PHONE_META = ["-metadata", "creation_time=2019-07-14T10:20:30.000000Z", "-metadata",
              "title=Family picnic", "-metadata", "location=+48.8577+002.2950/"]

CASES: List[Case] = [
    Case("h264_aac.mp4", H264, AAC),
    Case("hevc10_aac.mp4", ["-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt", "yuv420p10le",
                            "-x265-params", "log-level=error", "-tag:v", "hvc1"], AAC),
    Case("vp9_opus.webm", ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8",
                           "-b:v", "200k"], ["-c:a", "libopus"], out=".mkv", audio_rate=48000),
    Case("theora_vorbis.ogv", ["-c:v", "libtheora", "-q:v", "6"], ["-c:a", "libvorbis"]),
    Case("prores_pcm.mov", ["-c:v", "prores_ks", "-profile:v", "0"], ["-c:a", "pcm_s16le"],
         out=".mov", audio_rate=48000),
    Case("dv_pal.dv", ["-c:v", "dvvideo", "-pix_fmt", "yuv420p"], ["-c:a", "pcm_s16le"],
         size="720x576", seconds=1.2, audio_rate=48000),
    Case("h263_aac.3gp", ["-c:v", "h263"], AAC + ["-ac", "1"], size="128x96", rate="15",
         audio_rate=22050, channels=1),
    Case("flv1_mp3.flv", ["-c:v", "flv"], ["-c:a", "libmp3lame"], audio_rate=22050),
    Case("divx_bframes_ac3.avi", ["-c:v", "mpeg4", "-vtag", "DX50", "-bf", "2", "-q:v", "4"],
         ["-c:a", "ac3"], audio_rate=48000),
    Case("divx_bframes_damaged.avi", ["-c:v", "mpeg4", "-vtag", "DX50", "-bf", "2", "-q:v", "4"],
         ["-c:a", "libmp3lame"], post="damage"),
    Case("xvid_nobf_mp3.avi", ["-c:v", "mpeg4", "-vtag", "XVID", "-bf", "0", "-q:v", "4"],
         ["-c:a", "libmp3lame"], rate="30000/1001"),
    Case("mjpeg_pcm.avi", ["-c:v", "mjpeg", "-pix_fmt", "yuvj422p", "-q:v", "5"],
         ["-c:a", "pcm_u8"], audio_rate=11025, channels=1),
    Case("dvd_mpeg2_ac3.vob", ["-c:v", "mpeg2video", "-bf", "2", "-q:v", "4"],
         ["-c:a", "ac3"], extra=["-f", "vob"], audio_rate=48000),
    Case("mpeg1_mp2.mpg", ["-c:v", "mpeg1video", "-bf", "2", "-q:v", "4"], ["-c:a", "mp2"],
         extra=["-f", "mpeg"], audio_rate=44100),
    Case("avchd_interlaced.mts", H264 + ["-flags", "+ildct+ilme", "-x264-params", "tff=1"],
         ["-c:a", "ac3"], extra=["-f", "mpegts", "-mpegts_m2ts_mode", "1"],
         rate="30000/1001", audio_rate=48000),
    Case("h264_aac.ts", H264, AAC, extra=["-f", "mpegts"], rate="24"),
    Case("wmv2_wma.wmv", ["-c:v", "wmv2", "-q:v", "4"], ["-c:a", "wmav2"]),
    Case("phone_rotated.mov", H264, AAC + ["-ac", "1"], out=".mov", channels=1, extra=PHONE_META,
         remux=([], ["-metadata:s:v:0", "rotate=90"]),
         expect={"rotation": 90, "meta": ["creation_time", "title", "location"]}),
    Case("phone_subs.mp4", H264, AAC, out=".mkv", inputs=["srt:eng", "chapters"],
         maps=["0:v", "1:a", "2:s", "-map_metadata", "3", "-map_chapters", "3"],
         extra=PHONE_META[:4] + ["-c:s", "mov_text", "-metadata:s:s:0", "language=eng"],
         expect={"subtitles": 1, "chapters": 2, "meta": ["title"]}),
    Case("multi_tracks.mkv", H264, AAC, out=".mp4",
         inputs=["audio2", "srt:eng", "srt:fre", "chapters"],
         maps=["0:v", "1:a", "2:a", "3:s", "4:s", "-map_metadata", "5", "-map_chapters", "5",
               "-c:a:1", "libvorbis", "-c:s", "srt", "-metadata:s:a:0", "language=eng",
               "-metadata:s:a:1", "language=fre", "-metadata:s:s:0", "language=eng",
               "-metadata:s:s:1", "language=fre"],
         expect={"subtitles": 2, "chapters": 2, "meta": ["title"], "languages": True}),
    Case("subs_copy.mkv", H264, AAC, out=".mkv", inputs=["srt:eng"],
         maps=["0:v", "1:a", "2:s", "-c:s", "srt"], expect={"subtitles": 1}),
    Case("vfr.mkv", H264, AAC, out=".mkv", vf="select='not(between(mod(n\\,10)\\,6\\,8))'",
         extra=["-fps_mode", "vfr"]),
    # a cut at a non-key frame: the mp4 keeps the frames before the cut in an edit list
    Case("trimmed_editlist.mp4", H264, AAC, remux=(["-ss", "0.3"], [])),
    # display-order frames carrying decode-order stamps (as packed B-frame DivX files give them)
    Case("divx_dts_stamps.mkv", ["-c:v", "mpeg4", "-bf", "2", "-q:v", "4"], ["-c:a", "libmp3lame"],
         out=".mkv", remux=([], DTS_AS_PTS), expect={"repaired": True}),
    Case("h264_dts_stamps.mkv", H264, AAC, remux=([], DTS_AS_PTS),
         expect={"repaired": True}),
    Case("h264_repeated_pts.mkv", H264, AAC, out=".mkv",
         remux=([], ["-bsf:v", "setts=pts=if(eq(N\\,7)+eq(N\\,20)\\,PREV_OUTPTS\\,PTS)"]),
         expect={"repaired": True}),
    Case("raw_nopts.h264", H264, (), out=".mp4"),
    Case("two_audio.mp4", H264, AAC, inputs=["audio2"],
         maps=["0:v", "1:a", "2:a", "-c:a:1", "ac3"]),
]


def _run(args: Sequence[str]) -> None:
    r = subprocess.run([FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args],
                       capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"ffmpeg failed: {' '.join(args)}\n{r.stderr}")


def make_case(case: Case, folder: Path) -> Path:
    """Write ``case`` into ``folder`` with the ffmpeg CLI; returns the file."""
    dest = folder / case.name
    if dest.exists():
        return dest
    flash = (f"drawbox=x=0:y=0:w=iw:h=ih:color=white:t=fill:"
             f"enable='between(t,{FLASH_S},{FLASH_S}+0.9/({case.rate}))'")
    vf = ",".join(x for x in (case.vf, flash) if x)
    args = ["-f", "lavfi", "-i", f"testsrc2=size={case.size}:rate={case.rate}:d={case.seconds}"]
    tone = (f"aevalsrc=exprs='{CLICK}':s={case.audio_rate}:d={case.seconds}"
            f":c={'mono' if case.channels == 1 else 'stereo'}")
    if case.audio:
        args += ["-f", "lavfi", "-i", tone]
    for extra in case.inputs:
        if extra.startswith("srt:"):
            lang = extra[4:]
            srt = folder / f"{Path(case.name).stem}.{lang}.srt"
            srt.write_text(SRT.format(lang=lang))
            args += ["-i", str(srt)]
        elif extra == "chapters":
            meta = folder / f"{Path(case.name).stem}.ffmeta"
            meta.write_text(CHAPTERS)
            args += ["-i", str(meta)]
        elif extra == "audio2":
            args += ["-f", "lavfi", "-i", tone.replace("440", "660")]
    maps, prev = [], ""
    for m in case.maps:  # a bare "N:x" stream selector is a -map; anything else goes as is
        maps += ["-map", m] if m[:1].isdigit() and not prev.startswith("-") else [m]
        prev = m
    tmp = dest.with_name("tmp_" + dest.name) if case.remux else dest
    _run([*args, "-vf", vf, *case.video, *case.audio, *maps, *case.extra, str(tmp)])
    if case.remux:
        _run([*case.remux[0], "-i", str(tmp), "-map", "0", "-c", "copy", *case.remux[1],
              str(dest)])
        tmp.unlink()
    if case.post == "damage":
        data = bytearray(dest.read_bytes())
        for k in range(3):  # a few bursts of garbage inside frame data, headers left alone
            at = len(data) * (3 + 2 * k) // 10
            data[at:at + 64] = bytes((i * 37 + 11) % 256 for i in range(64))
        dest.write_bytes(bytes(data))
    return dest


def make_corpus(folder: Path, names: Optional[Sequence[str]] = None) -> List[Path]:
    """Write every case (or those named) into ``folder``; returns the files."""
    folder.mkdir(parents=True, exist_ok=True)
    return [make_case(c, folder) for c in CASES if names is None or c.name in names]


def require_cli() -> None:
    """Fail (under CI=true) or skip (elsewhere, with the reason) when ffmpeg/ffprobe are missing."""
    missing = [name for name, path in (("ffmpeg", FFMPEG), ("ffprobe", FFPROBE)) if path is None]
    if not missing:
        return
    verb = "CLIs are" if len(missing) > 1 else "CLI is"
    msg = (f"the {' and '.join(missing)} {verb} not installed (`make ffmpeg` installs Debian's "
           f"ffmpeg); the format corpus needs it as its oracle.")
    if CI:
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


def ffprobe(path: Path) -> dict:
    """``ffprobe -show_streams -show_format -show_chapters`` as JSON, with every packet's stream,
    pts and duration (a stream's ``duration`` field is a header estimate in AVI and MPEG-TS)."""
    r = subprocess.run([FFPROBE, "-v", "error", "-show_streams", "-show_format", "-show_chapters",
                        "-show_entries", "packet=stream_index,pts,duration", "-of", "json",
                        str(path)], capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def framemd5_rows(path: Path) -> Tuple[Fraction, List[Tuple[int, int, str]]]:
    """``(time base, [(pts, duration, md5)...])`` of the first video stream as ``ffmpeg -f
    framemd5`` decodes it: every frame the decoder returns, once (``-fps_mode passthrough``; by
    default the CLI would duplicate or drop frames to mend broken timestamps), stamps in the
    stream's own time base (``-enc_time_base -1``) as the file has them (``-copyts``: not moved
    to start at 0), each frame's planes as decoded (``-noautorotate``), in the decoder's pixel
    format, hashed."""
    r = subprocess.run([FFMPEG, "-nostdin", "-v", "error", "-copyts", "-noautorotate", "-i",
                        str(path), "-map", "0:v:0", "-fps_mode", "passthrough", "-enc_time_base:v",
                        "-1", "-f", "framemd5", "-"], capture_output=True, text=True, check=True)
    tb, rows = Fraction(1), []
    for line in r.stdout.splitlines():
        if line.startswith("#tb 0:"):
            tb = Fraction(line.split(":")[1].strip())
        elif line and not line.startswith("#"):
            cells = [c.strip() for c in line.split(",")]
            rows.append((int(cells[2]), int(cells[3]), cells[5]))
    return tb, rows


def framemd5(path: Path) -> tuple:
    """(frames, duration in s) of the first video stream as ``ffmpeg -f framemd5`` decodes it."""
    tb, rows = framemd5_rows(path)
    if not rows:
        return 0, 0.0
    return len(rows), float((rows[-1][0] + rows[-1][1] - rows[0][0]) * tb)


def planes_md5(frame) -> str:
    """MD5 of a decoded PyAV frame's planes without line padding: what ``framemd5`` hashes for
    a planar pixel format (every format of the corpus is one)."""
    assert frame.format.name.startswith(("yuv", "gray")), frame.format.name
    size = 2 if frame.format.components[0].bits > 8 else 1
    h = hashlib.md5()
    for plane in frame.planes:
        rows = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)
        h.update(np.ascontiguousarray(rows[:plane.height, :plane.width * size]).tobytes())
    return h.hexdigest()
