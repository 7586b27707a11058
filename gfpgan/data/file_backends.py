"""Image storage backends (a folder of images, or LMDB) and an atomic LMDB / folder writer.

LMDB layout (BasicSR's, so datasets made by BasicSR's scripts load unchanged)::

    faces.lmdb/
      data.mdb  lock.mdb     key (ascii, no extension) -> encoded image bytes (PNG by default)
      meta_info.txt          one line per image: "<key>.png (h,w,c) <compression level>"
      landmarks.json         optional sidecar: 5-point landmarks per key (see below)

The landmarks sidecar (``landmarks.json``, also written next to a folder of prepared faces) is
``{"format": "gfpgan-landmarks5", "size": S, "landmarks": {key: [[x, y] * 5]}}`` in crop pixels,
point order left eye, right eye, nose, left mouth corner, right mouth corner.

Readers open their files lazily, once per process: a DataLoader worker forked after the dataset
was built opens its own LMDB environment instead of sharing the parent's handle.
"""

import json
import os
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np

from gfpgan.errors import UserError
from gfpgan.images import IMAGE_EXTENSIONS, decode_image, write_bytes_atomic

LANDMARKS_FILE = "landmarks.json"
META_FILE = "meta_info.txt"
_PARTIAL = ".partial"  # suffix of a writer's build folder next to the destination


# ------------------------------------------------------------------------------- readers
class DiskBackend:
    """A folder of image files; keys are file names (sorted, non-recursive)."""

    def __init__(self, root: Union[str, os.PathLike]):
        self.root = Path(root)
        if not self.root.is_dir():
            raise UserError(f"the dataset folder {self.root} does not exist; check dataroot.")
        self.keys: List[str] = sorted(p.name for p in self.root.iterdir()
                                      if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)

    def path(self, key: str) -> str:
        return str(self.root / key)

    def get(self, key: str) -> bytes:
        """Encoded bytes of ``key`` (empty bytes when the file cannot be read)."""
        try:
            return (self.root / key).read_bytes()
        except OSError:
            return b""


def read_meta_info(root: Path) -> List[str]:
    """Keys listed in ``root/meta_info.txt`` (BasicSR layout), in file order."""
    meta = root / META_FILE
    if not meta.is_file():
        raise UserError(f"{meta} is missing; an LMDB dataset needs BasicSR's meta_info.txt "
                        f"(rebuild it with python -m gfpgan.tools.to_lmdb).")
    keys = []
    for line in meta.read_text().splitlines():
        if line.strip():
            name = line.split(" (")[0].strip()
            # the key is the stored name minus its extension; keys may themselves contain dots
            keys.append(name.rsplit(".", 1)[0] if "." in name else name)
    return keys


class LmdbBackend:
    """A BasicSR-layout LMDB; the environment is opened lazily in each process."""

    def __init__(self, root: Union[str, os.PathLike]):
        self.root = Path(root)
        if not (self.root / "data.mdb").is_file():
            raise UserError(f"{self.root / 'data.mdb'} is missing; {self.root} is not an LMDB "
                            f"(make one with python -m gfpgan.tools.to_lmdb).")
        self.keys = read_meta_info(self.root)
        self._env = None
        self._pid = None

    def path(self, key: str) -> str:
        return key  # like BasicSR: an LMDB sample's path is its key

    def _open(self):
        import lmdb  # training-only dependency, imported where it is used

        self._env = lmdb.open(str(self.root), readonly=True, lock=False, readahead=False,
                              meminit=False, max_readers=512)
        self._pid = os.getpid()

    def get(self, key: str) -> bytes:
        if self._env is None or self._pid != os.getpid():
            self._open()
        with self._env.begin(write=False) as txn:
            data = txn.get(key.encode("ascii"))
        return bytes(data) if data is not None else b""

    def __getstate__(self):  # never pickle an open environment into a worker
        state = dict(self.__dict__)
        state["_env"] = None
        return state


def make_backend(root: Union[str, os.PathLike], io_backend: Optional[Dict] = None):
    """Build the backend named by ``io_backend['type']`` ('disk' or 'lmdb') for ``root``."""
    kind = (io_backend or {}).get("type", "disk")
    if kind == "disk":
        return DiskBackend(root)
    if kind == "lmdb":
        if not str(root).rstrip("/").endswith(".lmdb"):
            raise UserError(f"the LMDB dataroot {root} must end in .lmdb; rename it or use io_backend disk.")
        return LmdbBackend(root)
    raise UserError(f"unknown io_backend type {kind!r}; use 'disk' or 'lmdb'.")


# ------------------------------------------------------------------------------ landmarks
def write_landmarks(path: Union[str, os.PathLike], landmarks: Dict[str, np.ndarray], size: int) -> None:
    """Write a landmarks sidecar atomically (key -> (5, 2) crop-pixel points)."""
    doc = {"format": "gfpgan-landmarks5", "size": int(size),
           "landmarks": {k: np.asarray(v, np.float64).reshape(5, 2).round(3).tolist()
                         for k, v in sorted(landmarks.items())}}
    write_bytes_atomic(path, json.dumps(doc).encode())


def read_landmarks(path: Union[str, os.PathLike]) -> Dict:
    """Read a landmarks sidecar: ``{'size': S, 'landmarks': {key: (5, 2) float64}}``."""
    path = Path(path)
    if path.is_dir():
        path = path / LANDMARKS_FILE
    try:
        doc = json.loads(path.read_text())
        lms = {k: np.asarray(v, np.float64).reshape(5, 2) for k, v in doc["landmarks"].items()}
        return {"size": int(doc["size"]), "landmarks": lms}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path} is not a readable landmarks file ({exc}); make it with "
                        f"python -m gfpgan.tools.prepare_faces.") from None


# -------------------------------------------------------------------------------- writers
class _AtomicWriter:
    """Shared logic: build in ``<dest>.partial``, rename onto ``dest`` when the block succeeds.

    An interrupted build stays in ``<dest>.partial``; the next writer resumes it (keys already
    committed are reported by :meth:`has`) or, with ``resume=False``, deletes it and starts over.
    ``dest`` itself is only ever a complete dataset.
    """

    def __init__(self, dest, overwrite: bool = False, resume: bool = True, landmarks_size: int = 512):
        self.dest = Path(dest)
        self.tmp = self.dest.with_name(self.dest.name + _PARTIAL)
        self.overwrite, self.resume = overwrite, resume
        self.landmarks: Dict[str, np.ndarray] = {}
        self.landmarks_size = landmarks_size
        self.done: Dict[str, str] = {}  # key -> meta line, in insertion order
        self._discard = False

    def __enter__(self):
        if self.dest.exists() and not self.overwrite:
            raise UserError(f"{self.dest} already exists; remove it or pass --overwrite.")
        if self.tmp.exists() and not self.resume:
            shutil.rmtree(self.tmp)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._journal_path = self.tmp / "progress.jsonl"
        if self._journal_path.exists():
            for line in self._journal_path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    break  # a torn last line from a crash: everything after it is redone
                self.done[rec["key"]] = rec["meta"]
                if rec.get("lm") is not None:
                    self.landmarks[rec["key"]] = np.asarray(rec["lm"])
        self._journal = open(self._journal_path, "a")
        self._open()
        return self

    def discard(self) -> None:
        """Delete the build folder when the block exits (use before raising on unusable input)."""
        self._discard = True

    def has(self, key: str) -> bool:
        """Whether ``key`` was already written (in this run or a resumed one)."""
        return key in self.done

    def __len__(self) -> int:
        return len(self.done)

    def add(self, key: str, data: Union[bytes, np.ndarray], landmarks: Optional[np.ndarray] = None,
            compress_level: int = 1) -> None:
        """Add one image.

        Args:
            key: ascii name without extension (e.g. "00000"); unique.
            data: encoded image bytes (stored as given; PNG keeps BasicSR's meta_info truthful),
                or an RGB uint8 (H, W, 3) image (encoded as PNG here).
            landmarks: optional (5, 2) points of this face in crop pixels.
            compress_level: PNG compression used when ``data`` is an array (and recorded).
        """
        if " " in key or not key.isascii():
            raise UserError(f"image key {key!r} must be ascii without spaces; rename the file.")
        if isinstance(data, np.ndarray):
            h, w = data.shape[:2]
            c = 1 if data.ndim == 2 else data.shape[2]
            data = _encode_png(data, compress_level)
        else:
            h, w, c = decode_image(data, key).shape  # validates the bytes, too
        self._put(key, data)
        meta = f"{key}.png ({h},{w},{c}) {compress_level}"
        lm = None if landmarks is None else np.asarray(landmarks, np.float64).reshape(5, 2)
        self.done[key] = meta
        if lm is not None:
            self.landmarks[key] = lm
        self._pending.append({"key": key, "meta": meta, "lm": None if lm is None else lm.tolist()})
        self._after_add()

    def _flush_journal(self):
        for rec in self._pending:
            self._journal.write(json.dumps(rec) + "\n")
        self._journal.flush()
        os.fsync(self._journal.fileno())
        self._pending = []

    def __exit__(self, exc_type, exc, tb):
        self._close(success=exc_type is None)
        self._flush_journal()
        self._journal.close()
        if self._discard:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return False
        if exc_type is not None:
            return False  # keep <dest>.partial for a resume
        self._finish_files()
        if self.landmarks:
            write_landmarks(self.tmp / LANDMARKS_FILE, self.landmarks, self.landmarks_size)
        self._journal_path.unlink()
        if self.dest.exists():
            shutil.rmtree(self.dest) if self.dest.is_dir() else self.dest.unlink()
        os.replace(self.tmp, self.dest)
        return False


def _encode_png(img: np.ndarray, level: int) -> bytes:
    import cv2

    arr = img if img.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", arr, [cv2.IMWRITE_PNG_COMPRESSION, int(level)])
    if not ok:
        raise UserError("cannot encode an image as PNG.")
    return buf.tobytes()


class LmdbWriter(_AtomicWriter):
    """Write a BasicSR-layout LMDB atomically and resumably.

    Example::

        with LmdbWriter("datasets/ffhq/ffhq_512.lmdb") as w:
            for key, img in items:
                if not w.has(key):
                    w.add(key, img)          # RGB uint8 array or PNG bytes

    Args:
        dest: destination folder (should end in ``.lmdb`` for the datasets to accept it).
        overwrite: replace an existing ``dest`` on success (otherwise it is an error).
        resume: continue an interrupted build found in ``<dest>.partial`` (else start over).
        commit_every: images per LMDB transaction (and per progress-journal flush).
        map_size: initial LMDB map size in bytes; it doubles automatically when full.
    """

    def __init__(self, dest, overwrite: bool = False, resume: bool = True, commit_every: int = 100,
                 map_size: int = 1 << 34, landmarks_size: int = 512):
        super().__init__(dest, overwrite, resume, landmarks_size)
        self.commit_every, self.map_size = commit_every, map_size

    def _open(self):
        import lmdb

        self._env = lmdb.open(str(self.tmp), map_size=self.map_size, subdir=True, meminit=False)
        self._txn = self._env.begin(write=True)
        self._pending, self._pending_data = [], {}

    def _put(self, key: str, data: bytes) -> None:
        import lmdb

        self._pending_data[key] = data
        todo = {key: data}
        while True:
            try:
                for k, d in todo.items():
                    self._txn.put(k.encode("ascii"), d)
                return
            except lmdb.MapFullError:
                # grow the map and redo this transaction's puts in a fresh one
                self._txn.abort()
                self.map_size *= 2
                self._env.set_mapsize(self.map_size)
                self._txn = self._env.begin(write=True)
                todo = self._pending_data

    def _after_add(self) -> None:
        if len(self._pending) >= self.commit_every:
            self._commit()

    def _commit(self):
        self._txn.commit()
        self._flush_journal()  # the journal only ever names keys that are durably in data.mdb
        self._pending_data = {}
        self._txn = self._env.begin(write=True)

    def _close(self, success: bool):
        # commit even on failure: every put is a complete image, and the journal (flushed right
        # after) names exactly these keys, so a resume skips them
        import lmdb

        try:
            self._txn.commit()
        except lmdb.Error:
            self._txn.abort()
            self._pending = []  # nothing of this transaction is durable: do not journal it
        self._pending_data = {}
        self._env.sync()
        self._env.close()

    def _finish_files(self):
        meta = "".join(line + "\n" for line in self.done.values())
        (self.tmp / META_FILE).write_text(meta)


class FolderWriter(_AtomicWriter):
    """Write a folder of PNG images atomically and resumably (same interface as LmdbWriter)."""

    def _open(self):
        self._pending = []

    def _put(self, key: str, data: bytes) -> None:
        write_bytes_atomic(self.tmp / f"{key}.png", data)

    def _after_add(self) -> None:
        if len(self._pending) >= 100:
            self._flush_journal()

    def _close(self, success: bool):
        pass

    def _finish_files(self):
        pass
