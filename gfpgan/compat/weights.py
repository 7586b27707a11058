"""Weights by name for the reference's Python API (``GFPGANer(model_path=...)``).

Programs written for TencentARC/GFPGAN pass a release URL or a local path as ``model_path``. The
reference downloads every URL into its own ``site-packages/gfpgan/weights``; here a URL is first
resolved to a local file of the same name (:data:`WEIGHT_DIRS`: ``experiments/pretrained_models``,
``~/.cache/gfpgan`` and the reference's ``gfpgan/weights`` folders), so a machine that already has
the file never touches the network. Only when it is nowhere is ``gfpgan.utils.load_file_from_url``
called (looked up at call time: AUTOMATIC1111's webui replaces it), whose default
(:func:`download_weights`) downloads into ``~/.cache/gfpgan`` atomically and checks the file
against its model card's size and sha256. Offline, the error names the file and where to put it.
"""

import os
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import List, Optional, Union

from gfpgan import model_cards
from gfpgan.errors import UserError

PathLike = Union[str, os.PathLike]
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the gfpgan package
REPO_ROOT = PACKAGE_DIR.parent
CACHE_DIR = Path(model_cards.CACHE_DIR)
# the project's folders, then the reference's: its CLI looks in gfpgan/weights (relative to the
# working directory) and GFPGANer downloads into <site-packages>/gfpgan/weights
WEIGHT_DIRS = (*model_cards.DEFAULT_SEARCH_DIRS, "gfpgan/weights", str(PACKAGE_DIR / "weights"))

__all__ = ["WEIGHT_DIRS", "weight_dirs", "find_weights", "download_weights", "resolve_model_path"]


def weight_dirs() -> List[Path]:
    """The folders searched for weights, in order; relative ones from the working directory first,
    then from this checkout."""
    bases = (Path.cwd(), REPO_ROOT)
    found = [base / d for d in map(lambda x: Path(x).expanduser(), WEIGHT_DIRS) for base in bases]
    return list(dict.fromkeys(found))  # an absolute folder ignores its base: keep it once


def find_weights(file_name: str) -> Optional[Path]:
    """The first file called ``file_name`` in :func:`weight_dirs`, or None."""
    for d in weight_dirs():
        if (d / file_name).is_file():
            return d / file_name
    return None


def _file_name(url: str) -> str:
    return os.path.basename(urllib.parse.urlparse(url).path)


def _card_for(file_name: str):
    """The model card whose weights file is ``file_name``, or None."""
    for card in model_cards.list_cards():
        if card.weights == file_name:
            return card
    return None


def download_weights(url: str, model_dir: Optional[PathLike] = None, progress: bool = True,
                     file_name: Optional[str] = None) -> str:
    """Download ``url`` into ``model_dir`` unless the file is already there (BasicSR's signature).

    The file is written atomically; when a model card describes it, its size and sha256 are
    checked before it takes its final name, so a truncated or wrong download never lands.

    Args:
        url: where the file is published.
        model_dir: destination folder (default ``~/.cache/gfpgan``).
        progress: print one line before downloading.
        file_name: name to save as (default: the URL's last path component).

    Returns:
        The local path, as a string.

    Raises:
        UserError: no network (one sentence naming the file and where to put it), or a file that
            does not match its card.
    """
    from gfpgan.files import atomic_path

    name = file_name or _file_name(url)
    dest = Path(model_dir or CACHE_DIR).expanduser() / name
    if dest.is_file():
        return str(dest)
    card = _card_for(name)
    if progress:
        print(f"downloading {name} from {url} to {dest.parent}", file=sys.stderr)
    try:
        with atomic_path(dest) as tmp:
            with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as f:
                shutil.copyfileobj(response, f, 1 << 20)
            if card is not None:
                from gfpgan.model_cards import verify_sha256

                verify_sha256(tmp, card)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc.strerror or exc
        raise UserError(f"{name} is not on this machine and cannot be downloaded from {url} ({reason}); "
                        f"download it yourself and put it in experiments/pretrained_models/ or {dest.parent}."
                        ) from None
    return str(dest)


def resolve_model_path(model_path: PathLike) -> Path:
    """Turn ``GFPGANer``'s ``model_path`` into a local file.

    Args:
        model_path: a local file, a release URL (resolved by file name in :func:`weight_dirs`,
            else through ``gfpgan.utils.load_file_from_url`` into ``~/.cache/gfpgan``), or a model
            card name such as ``"GFPGANv1.4"``.

    Returns:
        The path of an existing file.

    Raises:
        UserError: the file cannot be found or fetched.
    """
    text = os.fspath(model_path)
    if text.startswith(("https://", "http://")):
        local = find_weights(_file_name(text))
        if local is not None:
            return local
        # a program may have replaced ``gfpgan.utils.load_file_from_url`` (webui does): the facade,
        # when loaded, is read at call time, not imported from here (it sits above this module)
        download = getattr(sys.modules.get("gfpgan.utils"), "load_file_from_url", load_file_from_url)
        return Path(download(url=text, model_dir=str(CACHE_DIR.expanduser()), progress=True,
                             file_name=None))
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if os.sep not in text and "/" not in text:  # a bare file or card name
        local = find_weights(path.name)
        if local is not None:
            return local
        try:
            card = model_cards.load_card(text)
        except UserError:
            card = None
        if card is not None:
            return model_cards.resolve_weights(card, search_dirs=WEIGHT_DIRS)
    raise UserError(f"model_path {text} not found; give the path of a .pth file, its release URL or a "
                    f"model card name (e.g. GFPGANv1.4), or put the file in experiments/pretrained_models/.")


def load_file_from_url(url: str, model_dir: Optional[str] = None, progress: bool = True,
                       file_name: Optional[str] = None) -> str:
    """Download a weights file unless it is already in ``model_dir`` (the reference's helper).

    ``GFPGANer`` looks this name up in ``gfpgan.utils`` at call time (when that module is loaded),
    so programs that replace it (AUTOMATIC1111's webui redirects ``model_dir``) keep working. See
    :func:`gfpgan.compat.weights.download_weights` (atomic, checked against the model card's sha256).

    Returns:
        The local path.
    """
    return download_weights(url, model_dir=model_dir, progress=progress, file_name=file_name)
