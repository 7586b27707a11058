"""What goes into a page job: uploads checked, settings turned into the command's argv, progress
read back from the command, the models found on this machine.

No web library and no job control here (:mod:`gfpgan.app.jobs` runs the jobs, :mod:`gfpgan.app.page`
shows them).
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from gfpgan.errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")  # gfpgan.images'


VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".ts",
                    ".wmv", ".flv", ".3gp")


MODEL_EXTENSIONS = (".safetensors", ".pth", ".pt")


# x264's MB-tree rate control gives different bits run to run on noisy content; without it the
# same settings give the same file, so the page's video is the command's, byte for byte
REPRODUCIBLE_X264 = ["--codec-option", "x264-params=mbtree=0"]
MAX_IMAGES = 100


SUFFIX = "restored"  # infer_image --suffix: restored_imgs/<name>_restored.<ext>


PROGRESS_LINE = re.compile(r"(\d+)/(\d+) \[[^\]]*\]?")  # tqdm: " 12/48 [00:03<00:09, 3.85frame/s]"


PKG_PARENT = str(Path(__file__).resolve().parents[2])  # the folder holding this gfpgan package


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
    personalization: Optional[str] = None  # a personal file (both commands' --personal)

    def face_argv(self) -> List[str]:
        argv = ["--model", self.model]
        for flag, value in (("--strength", self.strength), ("--upscale", self.upscale)):
            if value is not None:
                argv += [flag, repr(float(value))]
        if self.device:
            argv += ["--device", self.device]
        return argv + personalization_argv(self.personalization)


def personalization_argv(path: Optional[str]) -> List[str]:
    """The options that apply a personal file (``python -m gfpgan.personalize``; both commands'
    ``--personal``); none for ``None``."""
    return [] if path is None else ["--personal", path]


def safe_file_name(name: str, taken: set) -> str:
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
    found = PROGRESS_LINE.findall(line)
    return (int(found[-1][0]), int(found[-1][1])) if found else None


def duration_text(seconds: float) -> str:
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
        return f"{text}, about {duration_text(left)} left."
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
    """A path typed into the page (model, temporal or personal file): None when empty, else an existing
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
