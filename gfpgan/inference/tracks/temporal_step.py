"""Video restoration with the learned temporal module: one recurrent state per face track.

:class:`TemporalStep` is the :class:`~gfpgan.inference.tracks.video_restorer.FaceStep` that a
:class:`~gfpgan.inference.tracks.video_restorer.VideoFaceRestorer` is given (with the
:class:`~gfpgan.archs.temporal_arch.TemporalGFPGAN` of a temporal file, :mod:`gfpgan.temporal_file`,
as its model; :func:`temporal_restorer` builds the pair). The restorer hands the step every face
of a group of frames with its ``(frame, track)``; the step keeps the tracks' states and steps
them, and nothing else in the pipeline changes.

* **Order and batching**: one forward pass per frame of the group, over all of the frame's faces
  (up to ``batch_faces`` tracks), so each track is stepped frame after frame while tracks are
  batched together. The state rows are gathered with ``cat_states`` and scattered back with
  ``select_state``. Batching by frame, not across frames, also keeps each pass's batch
  independent of how frames fall into groups and segments (a batch of 1 and of 2 can differ in
  the last bit on the CPU), which the byte-identity of segments needs.
* **Motion**: the state is warped by the face's motion from the previous crop to the current one,
  :func:`gfpgan.motion.landmark_motion` of the landmarks each crop was aligned with, in that crop's
  pixels (near the identity, since each crop is aligned on its face).
* **Resets** (an empty state, so the frame is restored as a track's first): a new track, a track
  that had no face in the previous frame (lost), a previous step whose gate (trust in the frame
  before) fell below ``--gate-reset`` (a cut, an occlusion), and every ``--temporal-reset`` K
  frames of the video, on frames 0, K, 2K... counted from the video's start.
* **Segments**: that last reset makes a frame's output depend on at most the K - 1 frames before
  it, so :meth:`TemporalStep.context` asks for K - 1 more frames of warm-up; every segment of a
  split (and a resumed job) then gives the bytes of one pass over the whole video. Its
  :meth:`~TemporalStep.fingerprint` adds the temporal file's sha256 and the two reset settings.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from gfpgan.archs.temporal_arch import TemporalState, cat_states, select_state
from gfpgan.errors import UserError
from gfpgan.inference.faces.batch import FaceBatchRestorer, crops_to_tensor, tensor_to_crops
from gfpgan.inference.faces.model import TemporalFaceModel
from gfpgan.inference.job.segments import SegmentWindow
from gfpgan.inference.settings import VideoRestorerConfig
from gfpgan.inference.tracks.video_restorer import FaceStep, VideoFaceRestorer
from gfpgan.motion import identity_affine, landmark_motion, transform_points

__all__ = ["load_temporal_net", "TemporalStep", "temporal_restorer"]

ResetHook = Callable[[str, int, int, str], None]


def load_temporal_net(temporal: Union[str, os.PathLike], base: Union[str, os.PathLike, nn.Module,
                                                                    None] = None) -> nn.Module:
    """The TemporalGFPGAN of a temporal file, on the CPU in eval mode.

    Args:
        temporal: the temporal file (``.safetensors`` written by temporal training).
        base: the base generator it was trained on (a model card name, a weights file or a
            module); None when the file holds its base.

    Raises:
        UserError: a missing file, not a temporal file, a base with other weights, weights that
            do not fit the file's own config.
    """
    from gfpgan.temporal_file import load_temporal

    path = os.fspath(temporal)
    if not os.path.isfile(path):
        raise UserError(f"temporal file '{path}' not found; give the temporal.safetensors that "
                        f"temporal training wrote.")
    if base is not None and not isinstance(base, nn.Module):
        from gfpgan.inference.faces.model import build_from_spec

        base = build_from_spec(os.fspath(base))
    try:
        return load_temporal(path, base)
    except RuntimeError as exc:  # load_state_dict: a state or weight of another shape
        if "size mismatch" not in str(exc):
            raise
        raise UserError(f"{path} holds temporal weights of other shapes than its config says "
                        f"(its state would not fit the module); write it again.") from None


@dataclass
class _Track:
    """The state of one track after its last restored face."""

    state: TemporalState  # one row
    points: np.ndarray  # (5, 2) that face's alignment landmarks in its crop's pixels
    frame: int  # its frame in the whole video
    first: bool  # that face was the track's first since a reset (its gate says nothing)


class TemporalStep(FaceStep):
    """One recurrent state per face track, stepped through the faces it is given (module docstring).

    Args:
        temporal: the temporal file.
        base: the base generator (see :func:`load_temporal_net`); None when the file holds it.
        temporal_reset: a periodic reset every K frames of the video (``--temporal-reset``).
        gate_reset: a state whose gate falls below this restarts (``--gate-reset``).
        on_reset: called as ``on_reset(video, frame, track, reason)`` whenever a track's state
            starts empty; reason is ``"new"`` (a new track, or one missing in the frame before),
            ``"gate"`` or ``"period"``.

    Attributes:
        net: the :class:`~gfpgan.archs.temporal_arch.TemporalGFPGAN` to give the restorer as its
            model; the restorer's batch restorer then holds it as a
            :class:`~gfpgan.inference.faces.model.TemporalFaceModel`.
    """

    def __init__(self, temporal: Union[str, os.PathLike],
                 base: Union[str, os.PathLike, nn.Module, None] = None, *, temporal_reset: int,
                 gate_reset: float, on_reset: Optional[ResetHook] = None):
        from gfpgan.model_cards import sha256_file

        self.net = load_temporal_net(temporal, base)
        self.temporal_sha256 = sha256_file(temporal)
        self.temporal_reset = int(temporal_reset)
        self.gate_reset = float(gate_reset)
        self.on_reset = on_reset
        self.video = ""
        self._tracks: Dict[int, _Track] = {}

    def reset(self, window: SegmentWindow) -> None:
        """Forget all tracks, their states included."""
        self.video = window.video
        self._tracks = {}

    def context(self) -> Tuple[int, int]:
        """The K - 1 frames back to the last periodic reset."""
        return self.temporal_reset - 1, 0

    def fingerprint(self) -> Dict[str, Any]:
        """The reset settings and the temporal file's sha256."""
        return dict(temporal=self.temporal_sha256, temporal_reset=self.temporal_reset,
                    gate_reset=self.gate_reset)

    def restore(self, restorer: FaceBatchRestorer, crops: Sequence[np.ndarray],
                affines: Sequence[np.ndarray], keys: Sequence[Tuple[int, int]],
                landmarks: Sequence[np.ndarray]) -> List[np.ndarray]:
        """Step every track through its faces of the group, tracks batched (in waves)."""
        if not crops:
            return []
        if restorer.strength == 0.0:
            return [c.copy() for c in crops]
        if not isinstance(restorer.model, TemporalFaceModel):
            raise TypeError("a TemporalStep needs its restorer to run the step's own net")
        points = [transform_points(lm, a) for lm, a in zip(landmarks, affines)]  # in crop pixels
        first = min(frame for frame, _ in keys)
        self._tracks = {t: s for t, s in self._tracks.items() if s.frame >= first - 1}  # lost
        out: List[np.ndarray] = []
        for i in range(len(keys)):
            if i and keys[i][0] == keys[i - 1][0]:
                continue
            faces = [k for k in range(i, len(keys)) if keys[k][0] == keys[i][0]]
            for j in range(0, len(faces), restorer.batch_faces):
                out += self._step(restorer, faces[j:j + restorer.batch_faces], crops, points, keys)
        return out

    def _start(self, frame: int, tid: int) -> Optional[_Track]:
        """The track's state to continue from, or None (and ``on_reset``) for an empty one."""
        prev = self._tracks.get(tid)
        if prev is None or prev.frame != frame - 1:
            reason = "new"
        elif frame % self.temporal_reset == 0:
            reason = "period"
        elif not prev.first and float(prev.state.gate[0]) < self.gate_reset:
            reason = "gate"
        else:
            return prev
        if self.on_reset is not None:
            self.on_reset(self.video, frame, tid, reason)
        return None

    def _step(self, restorer: FaceBatchRestorer, chunk: Sequence[int], crops, points,
              keys) -> List[np.ndarray]:
        """One forward pass over faces of distinct tracks; updates their states."""
        model: TemporalFaceModel = restorer.model
        starts = [self._start(*keys[k]) for k in chunk]
        empty = model.init_state(1)
        state = cat_states([empty if s is None else s.state for s in starts])
        rel = np.stack([identity_affine() if s is None else landmark_motion(s.points, points[k])
                        for s, k in zip(starts, chunk)])
        x = crops_to_tensor([crops[k] for k in chunk], model.device)
        out, new = model.step(x, state, torch.from_numpy(rel))
        for row, (k, s) in enumerate(zip(chunk, starts)):
            frame, tid = keys[k]
            self._tracks[tid] = _Track(select_state(new, [row]), points[k], frame, s is None)
        return list(tensor_to_crops(restorer.blend(x, out)))


def temporal_restorer(temporal: Union[str, os.PathLike],
                      base: Union[str, os.PathLike, nn.Module, None] = None,
                      config: Optional[VideoRestorerConfig] = None, *,
                      on_reset: Optional[ResetHook] = None, **kwargs) -> VideoFaceRestorer:
    """A video face restorer that runs the temporal module of ``temporal``.

    Args:
        temporal, base, on_reset: as for :class:`TemporalStep`.
        config: a :class:`~gfpgan.inference.settings.VideoRestorerConfig` (its ``temporal_reset``
            and ``gate_reset`` are the step's); the backend must be torch.
        **kwargs: config fields to override and the other arguments of
            :class:`~gfpgan.inference.tracks.video_restorer.VideoFaceRestorer`.
    """
    names = {f.name for f in dataclasses.fields(VideoRestorerConfig)}
    settings = {k: kwargs.pop(k) for k in list(kwargs)
                if k in names and not (k == "detector" and not isinstance(kwargs[k], str))}
    config = dataclasses.replace(config or VideoRestorerConfig(), **settings)
    if config.backend != "torch":
        raise UserError("--temporal runs on the torch backend; export one step with "
                        "gfpgan-export --temporal for ONNX Runtime, or drop --backend.")
    step = TemporalStep(temporal, base, temporal_reset=config.temporal_reset,
                        gate_reset=config.gate_reset, on_reset=on_reset)
    return VideoFaceRestorer(step.net, config, step=step, **kwargs)
