"""Temporal-consistency metrics of restored video: warping error, landmark jitter, identity drift.

* **Flow-warping error** (Lai et al., ECCV 2018, "Learning Blind Video Temporal Consistency"):
  frame t-1 of the output is warped to frame t with optical flow and compared with frame t on the
  pixels that the forward-backward check marks as visible in both (Sundaram et al., ECCV 2010).
  The flow comes from OpenCV (DIS or Farneback: no weights) on a chosen source, by default the
  output itself; with a ground-truth or input clip as the flow source, motion the restorer
  invented is not mistaken for real motion. Lower is steadier. Reported x1000 on [0, 1] images.
  For synthetic clips the flow is known exactly: pass the relative transforms between consecutive
  crops (``rel_affines``, :mod:`gfpgan.motion`) and the flow comes from them (then only the
  pixels that leave the frame are masked).
* **TLME** (temporal landmark motion error, as in PGTFormer's tables): the mean over frames and
  points of ``||(L_t - L_t-1) - (G_t - G_t-1)||``, landmark motion the ground truth does not have.
* **Landmark jitter** per face track (pixels; see :func:`gfpgan.inference.tracks.tracking.landmark_jitter`):
  tracks are built with the pipeline's :class:`~gfpgan.inference.tracks.tracking.IoUTracker`.
* **Identity consistency**: the ArcFace angle (degrees) between consecutive crops of a track; with
  the ground truth's embeddings, also the excess over the ground truth's own change.
"""

from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np

from gfpgan.metrics.identity import embedding_angle

FLOW_METHODS = ("dis", "farneback")


def optical_flow(src: np.ndarray, dst: np.ndarray, method: str = "dis") -> np.ndarray:
    """Dense flow F with ``src(x) ~ dst(x + F(x))``.

    Args:
        src, dst: (H, W, 3) RGB uint8 frames (or (H, W) gray).
        method: "dis" (OpenCV DIS, medium preset) or "farneback".
    Returns:
        (H, W, 2) float32 flow in pixels (dx, dy).
    """
    def gray(x):
        return cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) if x.ndim == 3 else x

    a, b = gray(np.ascontiguousarray(src)), gray(np.ascontiguousarray(dst))
    if method == "dis":
        return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(a, b, None)
    if method == "farneback":
        return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 4, 15, 3, 5, 1.2, 0)
    raise ValueError(f"flow method must be one of {FLOW_METHODS}, got {method!r}")


def warp(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Sample ``img`` at ``x + flow(x)`` (bilinear, border replicated); same dtype as float32."""
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(img.astype(np.float32), gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def occlusion_mask(flow_bw: np.ndarray, flow_fw: np.ndarray) -> np.ndarray:
    """(H, W) bool, True where the backward flow is consistent with the forward one (visible)."""
    fw_at = warp(flow_fw, flow_bw)
    lhs = ((flow_bw + fw_at) ** 2).sum(-1)
    rhs = 0.01 * ((flow_bw ** 2).sum(-1) + (fw_at ** 2).sum(-1)) + 0.5
    h, w = flow_bw.shape[:2]
    gx, gy = np.meshgrid(np.arange(w), np.arange(h))
    x, y = gx + flow_bw[..., 0], gy + flow_bw[..., 1]
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    return (lhs < rhs) & inside


def warping_error_flows(prev: np.ndarray, cur: np.ndarray, flow_bw: np.ndarray, flow_fw: np.ndarray,
                        region: Optional[np.ndarray] = None) -> float:
    """Warping error of a pair under given flows (x1000 on [0, 1] images; NaN if nothing visible).

    Args:
        prev, cur: (H, W, 3) RGB uint8 output frames t-1 and t.
        flow_bw: (H, W, 2) with ``cur(x) ~ prev(x + flow_bw(x))``; ``flow_fw`` the reverse.
        region: optional (H, W) bool mask of the pixels of ``cur`` to measure (a face's box, say).
    """
    mask = occlusion_mask(flow_bw, flow_fw)
    if region is not None:
        mask = mask & region
    if not mask.any():
        return float("nan")
    diff = (cur.astype(np.float32) - warp(prev, flow_bw)) / 255.0
    return float((diff[mask] ** 2).mean() * 1000.0)


def warping_error_pair(prev: np.ndarray, cur: np.ndarray, flow_prev: Optional[np.ndarray] = None,
                       flow_cur: Optional[np.ndarray] = None, method: str = "dis",
                       region: Optional[np.ndarray] = None) -> float:
    """Flow-warping error between two consecutive output frames (x1000, images in [0, 1]).

    Args:
        prev, cur: (H, W, 3) RGB uint8 output frames t-1 and t.
        flow_prev, flow_cur: the frames to estimate the flow on (default: ``prev``, ``cur``).
        method: flow method, see :func:`optical_flow`.
        region: optional (H, W) bool mask of the pixels of ``cur`` to measure.
    Returns:
        Mean squared error over visible pixels and channels, times 1000 (NaN if none visible).
    """
    fp = prev if flow_prev is None else flow_prev
    fc = cur if flow_cur is None else flow_cur
    # cur(x) ~ prev(x + flow_bw(x))
    return warping_error_flows(prev, cur, optical_flow(fc, fp, method), optical_flow(fp, fc, method), region)


def warping_error(frames: Sequence[np.ndarray], flow_frames: Optional[Sequence[np.ndarray]] = None,
                  method: str = "dis", rel_affines: Optional[np.ndarray] = None,
                  regions: Optional[Sequence[np.ndarray]] = None) -> Dict[str, object]:
    """Flow-warping error of a clip.

    Args:
        frames: T >= 2 (H, W, 3) RGB uint8 output frames.
        flow_frames: T frames to estimate the motion on (ground truth or input); default ``frames``.
        method: "dis" or "farneback".
        rel_affines: (T, 2, 3) exact transforms frame t-1 -> frame t in pixels of these frames
            (entry 0 unused); when given, the flows come from them and ``flow_frames`` is ignored.
        regions: T (H, W) bool masks: measure only these pixels of each frame t >= 1 (e.g. the face).
    Returns:
        ``{"mean": float, "per_pair": [T-1 floats]}``.
    """
    if flow_frames is not None and len(flow_frames) != len(frames):
        raise ValueError(f"flow source has {len(flow_frames)} frames, output has {len(frames)}")
    if regions is not None and len(regions) != len(frames):
        raise ValueError(f"{len(regions)} region masks for {len(frames)} frames")
    region = (lambda i: None) if regions is None else (lambda i: regions[i])
    if rel_affines is not None:
        from gfpgan.motion import affine_flow

        if len(rel_affines) != len(frames):
            raise ValueError(f"{len(rel_affines)} transforms for {len(frames)} frames")
        h, w = frames[0].shape[:2]
        per = [warping_error_flows(frames[i - 1], frames[i], *affine_flow(rel_affines[i], h, w), region(i))
               for i in range(1, len(frames))]
    else:
        src = frames if flow_frames is None else flow_frames
        per = [warping_error_pair(frames[i - 1], frames[i], src[i - 1], src[i], method, region(i))
               for i in range(1, len(frames))]
    return {"mean": float(np.nanmean(per)) if per else float("nan"), "per_pair": per}


def tlme(landmarks: Sequence[Optional[np.ndarray]], gt_landmarks: Sequence[Optional[np.ndarray]]
         ) -> Dict[str, object]:
    """Temporal landmark motion error: landmark motion of the output that the ground truth lacks.

    Args:
        landmarks: T (K, 2) landmarks of the output frames (None where no face was found).
        gt_landmarks: T (K, 2) landmarks of the ground truth frames (None likewise).
    Returns:
        ``{"mean": pixels (NaN if no pair has all four), "per_pair": [T-1 floats, NaN where missing]}``.
    """
    if len(landmarks) != len(gt_landmarks):
        raise ValueError(f"{len(landmarks)} output landmark sets for {len(gt_landmarks)} ground-truth ones")
    per = []
    for t in range(1, len(landmarks)):
        four = (landmarks[t - 1], landmarks[t], gt_landmarks[t - 1], gt_landmarks[t])
        if any(v is None for v in four):
            per.append(float("nan"))
            continue
        o0, o1, g0, g1 = (np.asarray(v, np.float64) for v in four)
        per.append(float(np.linalg.norm((o1 - o0) - (g1 - g0), axis=-1).mean()))
    ok = [v for v in per if not np.isnan(v)]
    return {"mean": float(np.mean(ok)) if ok else float("nan"), "per_pair": per}


def face_tracks(detections, iou_threshold: float = 0.3) -> Dict[int, Dict[str, list]]:
    """Group per-frame detections into tracks with the pipeline's tracker.

    Args:
        detections: list (one per frame) of :class:`~gfpgan.inference.faces.detection.Detections`.
    Returns:
        track id -> {"frames": [t...], "landmarks": [(5,2)...], "boxes": [(4,)...]}.
    """
    from gfpgan.inference.tracks.tracking import IoUTracker

    tracker, tracks = IoUTracker(iou_threshold=iou_threshold), {}
    for t, det in enumerate(detections):
        ids = tracker.update(det.boxes, det.landmarks)
        for i, tid in enumerate(ids.tolist()):
            tr = tracks.setdefault(tid, {"frames": [], "landmarks": [], "boxes": []})
            tr["frames"].append(t)
            tr["landmarks"].append(np.asarray(det.landmarks[i], np.float64))
            tr["boxes"].append(np.asarray(det.boxes[i], np.float64))
    return tracks


def track_jitter(tracks: Dict[int, Dict[str, list]], min_length: int = 3) -> Dict[int, float]:
    """Landmark jitter (pixels) of every track of at least ``min_length`` frames."""
    from gfpgan.inference.tracks.tracking import landmark_jitter

    return {tid: landmark_jitter(np.stack(tr["landmarks"])) for tid, tr in tracks.items()
            if len(tr["frames"]) >= min_length}


def identity_consistency(embeddings: np.ndarray, gt_embeddings: Optional[np.ndarray] = None
                         ) -> Dict[str, float]:
    """Identity drift along a track from its (T, D) ArcFace embeddings (T >= 2).

    Args:
        embeddings: (T, D) embeddings of the output crops.
        gt_embeddings: optional (T, D) embeddings of the ground-truth crops.
    Returns:
        ``{"mean_deg": mean angle between consecutive embeddings, "max_deg": the largest}``; with
        the ground truth also ``"gt_mean_deg"`` and ``"excess_deg"`` (mean of output angle minus
        ground-truth angle per pair: identity change the ground truth does not have).
    """
    emb = np.asarray(embeddings, np.float64)
    if len(emb) < 2:
        nan = float("nan")
        return {"mean_deg": nan, "max_deg": nan} if gt_embeddings is None else \
            {"mean_deg": nan, "max_deg": nan, "gt_mean_deg": nan, "excess_deg": nan}
    ang = embedding_angle(emb[:-1], emb[1:]).numpy()
    out = {"mean_deg": float(ang.mean()), "max_deg": float(ang.max())}
    if gt_embeddings is not None:
        gt = np.asarray(gt_embeddings, np.float64)
        if gt.shape != emb.shape:
            raise ValueError(f"ground-truth embeddings {gt.shape} do not match the output's {emb.shape}")
        gang = embedding_angle(gt[:-1], gt[1:]).numpy()
        out.update(gt_mean_deg=float(gang.mean()), excess_deg=float((ang - gang).mean()))
    return out


def crop_track(frames: Sequence[np.ndarray], track: Dict[str, list], size: int = 128) -> List[np.ndarray]:
    """Aligned (size, size, 3) face crops of a track, for the identity embedder."""
    from gfpgan.inference.faces.alignment import estimate_affine, warp_face

    return [warp_face(frames[t], estimate_affine(lm, size), size)
            for t, lm in zip(track["frames"], track["landmarks"])]
