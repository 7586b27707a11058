"""Training clips for the temporal module: synthetic clips from stills, and folders of face tracks.

* :class:`FFHQClipDataset`: any face folder or LMDB (the backends of :mod:`gfpgan.data.file_backends`)
  -> T-frame clips: a smooth random similarity trajectory plus a small non-rigid motion
  (:mod:`gfpgan.data.clip_degradations`), per-clip degradation parameters drifting per frame with
  independent noise, an optional libx264 pass at a random CRF, and the exact relative transforms.
* :class:`FaceTrackClipDataset`: a folder of aligned face-track folders (VFHQ-style, one folder per
  clip, frames numbered consecutively) -> T consecutive frames with the same degradations; the
  relative transforms come from an optional ``landmarks.json`` sidecar in the clip folder (the
  format of :func:`gfpgan.data.file_backends.read_landmarks`), else identity.

Both seed every sample with ``np.random.default_rng([seed, 0, 0, epoch, index])`` like
:class:`~gfpgan.data.ffhq_degradation_dataset.FFHQDegradationDataset` (a pure function of those,
whichever worker or rank makes it, so a resumed run replays it). Each item:
``'lq'``, ``'gt'`` float32 (T, 3, S, S) normalised (0.5/0.5: [-1, 1]); ``'rel_affine'`` float32
(T, 2, 3), crop t-1 -> crop t in pixels (identity at t = 0, :mod:`gfpgan.motion` convention);
``'crf'`` int (-1 without codec); ``'gt_path'`` str; with ``motion_noise`` > 0 (FFHQClipDataset) also
``'rel_input'`` float32 (T, 2, 3): the transforms with an estimate's error, for the module's input
(the losses keep the exact ``'rel_affine'``).
"""

import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from gfpgan.data import degradations as deg
from gfpgan.data.clip_degradations import jitter_motion, make_clip, synthetic_clip
from gfpgan.data.ffhq_degradation_dataset import FFHQDegradationDataset, to_tensor
from gfpgan.errors import UserError
from gfpgan.images import IMAGE_EXTENSIONS, read_image
from gfpgan.registry import DATASET_REGISTRY


def _clip_item(gts: List[np.ndarray], clip: Dict, rel: np.ndarray, path: str, mean, std) -> Dict:
    def stack(frames):
        return torch.stack([to_tensor(f, mean, std) for f in frames])

    return {"lq": stack(clip["lq"]), "gt": stack(gts),
            "rel_affine": torch.from_numpy(np.asarray(rel, np.float32)),
            "crf": -1 if clip["crf"] is None else clip["crf"], "gt_path": path}


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    if img.shape[:2] == (size, size):
        return img
    interp = cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(img, (size, size), interpolation=interp)


@DATASET_REGISTRY.register()
class FFHQClipDataset(FFHQDegradationDataset):
    """Still faces -> synthetic degraded clips with known motion.

    Args:
        dataroot_gt: folder of aligned faces or an LMDB (see ``FFHQDegradationDataset``).
        num_frames: T frames per clip.
        max_angle, max_zoom, max_shift, max_speed: the trajectory's bounds (degrees, |log zoom|,
            fraction of the side, fraction of a bound per frame), see ``sample_trajectory``.
        nonrigid: peak non-rigid displacement as a fraction of the side (0: rigid only).
        drift: per-frame random-walk steps ``{'blur_sigma', 'scale', 'noise', 'jpeg'}``.
        codec_prob: probability of a libx264 pass over the clip; ``crf_range``: its CRF range.
        motion_noise: standard deviation of the error added to the transforms the module is given
            (``'rel_input'``), as a fraction of the side (0: exact motion; see
            :func:`~gfpgan.data.clip_degradations.jitter_motion`); its own generator, so the clips
            themselves are those of ``motion_noise: 0``.
        **kwargs: every option of ``FFHQDegradationDataset`` (out_size, the degradation ranges,
            use_hflip, mean/std, gray, seed; rank is ignored) except the component boxes.
    """

    def __init__(self, dataroot_gt: str, num_frames: int = 5, max_angle: float = 5.0, max_zoom: float = 0.05,
                 max_shift: float = 0.04, max_speed: float = 0.25, nonrigid: float = 0.01,
                 drift: Optional[Dict] = None, codec_prob: float = 0.0, crf_range: Sequence[int] = (18, 25),
                 motion_noise: float = 0.0, **kwargs):
        if kwargs.get("crop_components"):
            raise UserError("crop_components is not supported by FFHQClipDataset; remove it from the "
                            "options.")
        if int(num_frames) < 1:
            raise UserError(f"num_frames must be at least 1, got {num_frames}.")
        super().__init__(dataroot_gt, **kwargs)
        self.num_frames = int(num_frames)
        self.motion = dict(max_angle=max_angle, max_zoom=max_zoom, max_shift=max_shift, max_speed=max_speed)
        self.nonrigid, self.drift = float(nonrigid), dict(drift or {})
        self.codec_prob, self.crf_range = float(codec_prob), tuple(crf_range)
        self.motion_noise = float(motion_noise)

    def sample(self, index: int) -> Dict:
        """Sample ``index`` as numpy: 'gt', 'lq' (T float32 (S, S, 3) in [0, 1]), 'affine' (T, 2, 3)
        still -> frame, 'rel_affine' (T, 2, 3), 'params' (T dicts), 'crf', 'path'."""
        rng = self.generator(index)
        pos, img = self.source.read_first_good(int(index) % len(self))
        img = _resize(img, self.out_size)
        if self.use_hflip and bool(rng.uniform() < 0.5):
            img = img[:, ::-1]
        still = np.ascontiguousarray(img, dtype=np.float32) / 255.0
        clip = synthetic_clip(rng, still, self.num_frames, self.motion, self.nonrigid, self.degradation,
                              self.drift, self.codec_prob, self.crf_range)
        if clip["params"][0]["gray"] and self.gt_gray:
            clip["gt"] = [deg.to_gray(g) for g in clip["gt"]]
        return dict(clip, path=self.source.backend.path(self.source.keys[pos]))

    def __getitem__(self, index: int) -> Dict:
        s = self.sample(index)
        item = _clip_item(s["gt"], s, s["rel_affine"], s["path"], self.mean, self.std)
        if self.motion_noise > 0:
            g = self.generator(index)
            rng = np.random.default_rng([int(g.integers(2**62)), 1])  # a stream apart from the clip's
            item["rel_input"] = torch.from_numpy(jitter_motion(rng, s["rel_affine"], self.out_size,
                                                               self.motion_noise))
        return item


def _frame_number(path: Path) -> int:
    m = re.search(r"(\d+)$", path.stem)
    if m is None:
        raise UserError(f"{path} has no frame number at the end of its name; name track frames 00000.png, "
                        f"00001.png, ...")
    return int(m.group(1))


def list_track(folder: Path, num_frames: int) -> List[Path]:
    """The frames of one track folder, checked: numbered consecutively, at least ``num_frames``."""
    frames = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
                    key=_frame_number)
    if len(frames) < num_frames:
        raise UserError(f"clip {folder} has {len(frames)} frames, fewer than num_frames={num_frames}; "
                        f"remove it or lower num_frames.")
    nums = [_frame_number(p) for p in frames]
    for a, b, p in zip(nums, nums[1:], frames):
        if b != a + 1:
            raise UserError(f"clip {folder} is missing frame {a + 1} (after {p.name}); track frames must be "
                            f"numbered consecutively.")
    return frames


def _landmark_motion(folder: Path, frames: Sequence[Path], size: int) -> Optional[np.ndarray]:
    """(T, 2, 3) relative similarities from the clip's landmarks sidecar, or None without one."""
    from gfpgan.data.file_backends import LANDMARKS_FILE, read_landmarks

    if not (folder / LANDMARKS_FILE).is_file():
        return None
    doc = read_landmarks(folder / LANDMARKS_FILE)
    k = size / doc["size"]
    rel = [np.eye(2, 3, dtype=np.float32)]
    for a, b in zip(frames, frames[1:]):
        try:
            pa, pb = doc["landmarks"][a.stem] * k, doc["landmarks"][b.stem] * k
        except KeyError as exc:
            raise UserError(f"{folder / LANDMARKS_FILE} has no landmarks for frame {exc.args[0]}; "
                            f"remake it.") from None
        m, _ = cv2.estimateAffinePartial2D(pa, pb, method=cv2.LMEDS)
        rel.append((np.eye(2, 3) if m is None else m).astype(np.float32))
    return np.stack(rel)


@DATASET_REGISTRY.register()
class FaceTrackClipDataset(Dataset):
    """Folders of aligned face-track frames (one folder per clip) -> degraded T-frame clips.

    Args:
        dataroot_gt: folder holding one sub-folder per clip, frames numbered consecutively
            (``00000.png``...), optionally with a ``landmarks.json`` sidecar (crop pixels).
        num_frames: T; a random window of T consecutive frames per item.
        out_size: side of the output (frames are resized to it).
        mean, std: per-channel normalisation.
        drift, codec_prob, crf_range: as in :class:`FFHQClipDataset`.
        seed: the base seed of every sample's generator; rank: ignored (as in the FFHQ dataset).
        **degradation: ``gfpgan.data.degradations.sample_degradation`` options (blur_sigma,
            downsample_range, noise_range, jpeg_range, ...; their defaults otherwise).
    """

    def __init__(self, dataroot_gt: str, num_frames: int = 5, out_size: int = 512,
                 mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.5, 0.5, 0.5),
                 drift: Optional[Dict] = None, codec_prob: float = 0.0, crf_range: Sequence[int] = (18, 25),
                 seed: int = 0, rank: Optional[int] = None, **degradation):
        root = Path(dataroot_gt)
        if not root.is_dir():
            raise UserError(f"the track folder {root} does not exist; check dataroot_gt.")
        self.num_frames, self.out_size = int(num_frames), int(out_size)
        self.clips = [(d, list_track(d, self.num_frames)) for d in sorted(root.iterdir()) if d.is_dir()]
        if not self.clips:
            raise UserError(f"{root} holds no clip folders; put each track's frames in its own sub-folder.")
        self.mean, self.std = tuple(mean), tuple(std)
        self.degradation = degradation
        deg.sample_degradation(np.random.default_rng(0), **degradation)  # bad options fail here
        self.drift, self.codec_prob, self.crf_range = dict(drift or {}), float(codec_prob), tuple(crf_range)
        self.seed, self.epoch = int(seed), 0

    set_epoch = FFHQDegradationDataset.set_epoch
    generator = FFHQDegradationDataset.generator

    def __len__(self) -> int:
        return len(self.clips)

    def sample(self, index: int) -> Dict:
        """Sample ``index`` as numpy (see :meth:`FFHQClipDataset.sample`; 'affine' absent)."""
        rng = self.generator(index)
        folder, frames = self.clips[int(index) % len(self)]
        start = int(rng.integers(0, len(frames) - self.num_frames, endpoint=True))
        window = frames[start:start + self.num_frames]
        gts = [_resize(read_image(p), self.out_size).astype(np.float32) / 255.0 for p in window]
        rel = _landmark_motion(folder, window, self.out_size)
        if rel is None:
            rel = np.repeat(np.eye(2, 3, dtype=np.float32)[None], self.num_frames, 0)
        clip = make_clip(rng, gts, self.degradation, self.drift, self.codec_prob, self.crf_range)
        return dict(clip, gt=gts, rel_affine=rel, path=str(folder))

    def __getitem__(self, index: int) -> Dict:
        s = self.sample(index)
        return _clip_item(s["gt"], s, s["rel_affine"], s["path"], self.mean, self.std)
