"""Atomic file writes: the one way this project writes a file.

Every file goes through :func:`atomic_path` (a temporary sibling renamed onto the destination on
success, deleted on failure), so an interrupted write never leaves a partial file behind. This
module sits at the bottom of the package and imports the standard library only.
"""

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Union

from gfpgan.errors import UserError

PathLike = Union[str, os.PathLike]
__all__ = ["PathLike", "atomic_path", "write_bytes_atomic", "write_text_atomic", "write_json_atomic"]


@contextlib.contextmanager
def atomic_path(dest: PathLike, suffix: str = "", fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling path; on success rename it onto ``dest``, on failure delete it.

    The one atomic-write helper of the project: every file it writes goes through here. The
    temporary name keeps ``dest``'s extension (plus ``suffix``) so writers that pick a format
    from the extension still work; the temporary lives in ``dest``'s folder so the rename is atomic.

    Args:
        dest: The final path (its folder is created).
        suffix: Extra text before the extension of the temporary name.
        fsync: Flush the file to disk before the rename (checkpoints: a crash right after the
            rename must not leave an empty file whose data was still in the page cache).
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the folder {dest.parent} ({exc.strerror or exc}); "
                        f"choose a writable destination.") from None
    if not os.access(dest.parent, os.W_OK):
        raise UserError(f"the folder {dest.parent} is not writable; choose a writable destination.")
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.stem}.", suffix=f".tmp{suffix}{dest.suffix}",
                               dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if tmp.exists() and fsync and tmp.is_file():
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        if tmp.exists():  # mkstemp creates 0600; give the file the permissions open() would
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes_atomic(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename)."""
    with atomic_path(path, fsync=True) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically (temp file + rename)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: PathLike, obj) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically (a benchmark's ``--json``)."""
    import json

    write_text_atomic(path, json.dumps(obj, indent=1))
