"""The face database: keep the best aligned faces of each video track for later fine-tuning.

The GFP-GAN paper trains on FFHQ-aligned faces; a video run already detects, tracks and aligns
every face, so it can hand those faces to a training run for free. Taking every frame would fill
the dataset with near-duplicates and blurred frames, so per track only the ``top_n`` faces are kept:
those that can serve as training targets first (at least as large in the video as the crop, a
confident detection, frontal: :func:`~gfpgan.inference.tracks.targets.evidence_of`), then by
*sharpness x size* (variance of the Laplacian of the gray crop times the face box side); tracks
shorter than ``min_track`` frames (usually false detections) are dropped. ``metadata.csv`` says
which faces are targets (``target``) and why (``scale``, ``sharpness``, ``frontal``, ``score``);
``python -m gfpgan.personalize`` takes only those.

Output (``DIR`` ending in ``.lmdb``, or ``DIR/faces.lmdb``), in the layout the training dataset
(``FFHQDegradationDataset`` with ``io_backend: lmdb``) reads, written with the data package's
atomic :class:`~gfpgan.data.file_backends.LmdbWriter`::

    faces.lmdb/
      data.mdb lock.mdb meta_info.txt   images (PNG), key "<video>_t<track>_f<frame>"
      landmarks.json                    5 points per key in crop pixels (component-box tool input)
      metadata.csv                      key, video, frame, track, box, landmarks (frame pixels),
                                        detector score, sharpness, scale, frontal,
                                        target (1: a training target)

Running again with the same ``DIR`` adds the new faces to the existing dataset (rebuilt atomically:
the old one stays intact until the new one is complete). lmdb is imported only when writing.
"""

from __future__ import annotations

import csv
import heapq
import itertools
import os
from pathlib import Path
from typing import Collection, Dict, List, Optional, Tuple

import numpy as np

from gfpgan.inference.faces.alignment import transform_points
from gfpgan.inference.tracks.sinks import FaceRecord, FaceSink, safe_name
from gfpgan.inference.tracks.targets import evidence_of

__all__ = ["FaceCollector", "METADATA_FILE"]

METADATA_FILE = "metadata.csv"
_FIELDS = (["key", "video", "frame", "track", "x1", "y1", "x2", "y2", "score", "sharpness", "scale",
            "frontal", "target"] + [f"lm{i}{c}" for i in range(5) for c in "xy"])


class FaceCollector(FaceSink):
    """Collect the best faces per track of one or more videos into an LMDB dataset.

    A :class:`~gfpgan.inference.tracks.sinks.FaceSink`: it keeps the faces of written frames only.

    Args:
        out_dir: ``DIR`` of ``--collect DIR`` (a path ending in .lmdb is used as the LMDB itself).
        video: name recorded in the keys and metadata for every face; None: each record's own
            video name. Either way it is reduced to ASCII letters, digits and ``_.-``.
        top_n: faces kept per track.
        min_track: tracks seen in fewer frames are dropped.
    """

    def __init__(self, out_dir, video: Optional[str] = None, top_n: int = 4, min_track: int = 3):
        out = Path(out_dir)
        self.dest = out if out.suffix == ".lmdb" else out / "faces.lmdb"
        self.video = None if video is None else safe_name(str(video))
        self.top_n = int(top_n)
        self.min_track = int(min_track)
        self._heaps: Dict[Tuple[str, int], List[Tuple[float, int, dict]]] = {}
        self._seen: Dict[Tuple[str, int], int] = {}
        self._tie = itertools.count()
        self._done: List[dict] = []
        self.size: Optional[int] = None
        self.targets_written = 0  # faces written by close() that can serve as training targets

    def add(self, record: FaceRecord) -> None:
        """Offer one face; kept when it is among the ``top_n`` of its track, training targets first
        (see :func:`~gfpgan.inference.tracks.targets.evidence_of`), then sharpest x largest."""
        if not record.written:
            return  # a segment's context frame: the neighbouring segment writes it
        box = np.asarray(record.box, np.float64).reshape(4)
        side = float(min(box[2] - box[0], box[3] - box[1]))
        ev = evidence_of(record)
        rank = ev.sharpness * max(side, 1.0) * (1e6 if ev.qualifies else 1.0)
        video = self.video or safe_name(record.video)
        key = (video, int(record.track))
        self._seen[key] = self._seen.get(key, 0) + 1
        heap = self._heaps.setdefault(key, [])
        if len(heap) >= self.top_n and rank <= heap[0][0]:
            return  # worse than everything kept: do not copy the crop
        self.size = record.crop.shape[0]
        landmarks = np.asarray(record.landmarks, np.float64).reshape(5, 2)
        rec = {"video": video, "frame": int(record.frame), "track": int(record.track), "box": box,
               "landmarks": landmarks,
               "crop_landmarks": transform_points(landmarks, record.affine),
               "score": float(record.score), "sharpness": ev.sharpness, "scale": ev.scale,
               "frontal": ev.frontal, "target": int(ev.qualifies), "crop": record.crop.copy()}
        item = (rank, next(self._tie), rec)
        if len(heap) < self.top_n:
            heapq.heappush(heap, item)
        else:
            heapq.heapreplace(heap, item)

    def end_tracks(self, video: str, live: Collection[int]) -> None:
        """Move the ended tracks of ``video`` to the output list; bounds memory."""
        name = self.video or safe_name(video)
        live = set(int(t) for t in live)
        for key in [k for k in self._heaps if k[0] == name and k[1] not in live]:
            self._finish_track(key)

    def _finish_track(self, key: Tuple[str, int]) -> None:
        heap = self._heaps.pop(key)
        if self._seen.pop(key, 0) >= self.min_track:
            self._done.extend(rec for _, _, rec in sorted(heap, key=lambda x: -x[0]))

    def __len__(self) -> int:
        return len(self._done) + sum(len(h) for h in self._heaps.values())

    def close(self) -> Optional[Path]:
        """Write (or extend) the LMDB dataset atomically; returns its path, None if empty."""
        for key in list(self._heaps):
            self._finish_track(key)
        if not self._done:
            return None
        from gfpgan.data.file_backends import LmdbWriter  # lazy: lmdb only when writing

        old_rows, old_items = self._read_existing()
        size = self.size or 512
        with LmdbWriter(self.dest, overwrite=True, resume=False, landmarks_size=size) as w:
            for key, data, lm in old_items:
                w.add(key, data, landmarks=lm)
            rows = list(old_rows)
            for rec in self._done:
                key = f"{rec['video']}_t{rec['track']:04d}_f{rec['frame']:06d}"
                n = 1
                while w.has(key):  # the same video collected twice: keep both, unique keys
                    key = f"{rec['video']}_t{rec['track']:04d}_f{rec['frame']:06d}_{n}"
                    n += 1
                w.add(key, rec["crop"], landmarks=rec["crop_landmarks"])
                self.targets_written += rec["target"]
                b, lm = rec["box"], rec["landmarks"]
                rows.append(dict(zip(_FIELDS, [key, rec["video"], rec["frame"], rec["track"],
                                               *np.round(b, 2).tolist(), round(rec["score"], 5),
                                               round(rec["sharpness"], 3), round(rec["scale"], 4),
                                               round(rec["frontal"], 4), rec["target"],
                                               *np.round(lm.reshape(10), 3).tolist()])))
            with open(Path(w.tmp) / METADATA_FILE, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=_FIELDS)
                writer.writeheader()
                writer.writerows(rows)
        self._done = []
        return self.dest

    def _read_existing(self):
        """Rows and (key, png bytes, crop landmarks) of a dataset already at ``dest``."""
        if not self.dest.exists():
            return [], []
        import lmdb

        from gfpgan.data.file_backends import LANDMARKS_FILE, read_landmarks, read_meta_info

        keys = read_meta_info(self.dest)
        lms = {}
        if (self.dest / LANDMARKS_FILE).exists():
            lms = read_landmarks(self.dest / LANDMARKS_FILE)["landmarks"]
        env = lmdb.open(os.fspath(self.dest), readonly=True, lock=False, readahead=False)
        try:
            with env.begin() as txn:
                items = [(k, bytes(txn.get(k.encode("ascii"))), lms.get(k)) for k in keys]
        finally:
            env.close()
        rows = []
        if (self.dest / METADATA_FILE).exists():
            with open(self.dest / METADATA_FILE, newline="") as f:
                rows = list(csv.DictReader(f))
        return rows, items
