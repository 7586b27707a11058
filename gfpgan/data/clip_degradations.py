"""Video clips from one still: smooth motion, small expressions, drifting degradations, a real codec.

Pure functions in the style of :mod:`gfpgan.data.degradations`: every random choice is drawn from a
``numpy.random.Generator`` passed in, parameters are plain JSON-serialisable numbers.

* :func:`sample_trajectory`: a smooth random similarity trajectory (rotation, zoom, shift about
  the crop centre; a constant velocity plus one slow oscillation per parameter, clipped to bounds)
  and the exact relative transforms between consecutive frames (``gfpgan.motion`` convention).
* :func:`render_clip`: the frames of one image along that trajectory, with a small smooth non-rigid
  displacement (expressions) that the relative transforms do not describe; every frame samples
  the same reflected canvas, so the border content moves consistently too.
* :func:`drift_params`: per-frame degradation parameters from one per-clip draw by a bounded
  random walk (RealBasicVSR's idea: blur sigma step 0.1, JPEG quality step 3, resize step 0.015),
  with a fresh noise seed every frame (independent noise).
* :func:`x264_roundtrip`: encode and decode a clip with libx264 through PyAV (in memory), for
  compression artefacts that persist across frames.
"""

import copy
import io
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from gfpgan.motion import invert_affine, relative_affine, similarity

# bounded random-walk steps per frame, on the scales of degradations.sample_degradation's parameters
DEFAULT_DRIFT = {"blur_sigma": 0.1, "scale": 0.015, "noise": 0.5, "jpeg": 3}


def sample_trajectory(rng: np.random.Generator, num_frames: int, size: int, max_angle: float = 5.0,
                      max_zoom: float = 0.05, max_shift: float = 0.04, max_speed: float = 0.25
                      ) -> Tuple[np.ndarray, np.ndarray]:
    """A smooth random similarity trajectory of a ``size`` crop.

    Args:
        rng: the sample's generator.
        num_frames: T.
        size: crop side in pixels.
        max_angle: bound of the rotation (degrees).
        max_zoom: bound of |log zoom|.
        max_shift: bound of the shift, as a fraction of ``size``.
        max_speed: the drift per frame is at most this fraction of each bound.
    Returns:
        (affines (T, 2, 3) float64: still -> frame t, relative (T, 2, 3) float32: frame t-1 ->
        frame t, identity at t = 0).
    """
    bounds = np.array([max_angle, max_zoom, max_shift * size, max_shift * size])
    t = np.arange(num_frames, dtype=np.float64)[:, None]
    start = rng.uniform(-0.5, 0.5, 4) * bounds
    speed = rng.uniform(-max_speed, max_speed, 4) * bounds
    amp = rng.uniform(0.0, 0.5, 4) * bounds
    period = rng.uniform(8.0, 24.0, 4)
    phase = rng.uniform(0.0, 2 * np.pi, 4)
    curve = start + speed * t + amp * (np.sin(2 * np.pi * t / period + phase) - np.sin(phase))
    curve = np.clip(curve, -bounds, bounds)
    affines = np.stack([similarity(a, float(np.exp(z)), x, y, size) for a, z, x, y in curve])
    rel = np.concatenate([np.eye(2, 3)[None], relative_affine(affines[:-1], affines[1:])]).astype(np.float32)
    return affines, rel


def smooth_field(rng: np.random.Generator, size: int, cells: int = 4) -> np.ndarray:
    """A smooth random (size, size, 2) displacement with unit max |component| (bicubic of a coarse grid)."""
    coarse = rng.standard_normal((cells, cells, 2)).astype(np.float32)
    field = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    return field / max(float(np.abs(field).max()), 1e-6)


def render_clip(img: np.ndarray, affines: np.ndarray, rng: Optional[np.random.Generator] = None,
                nonrigid: float = 0.0) -> List[np.ndarray]:
    """Frames of ``img`` along ``affines``, plus an optional smooth non-rigid motion.

    Args:
        img: (S, S, 3) still (any dtype OpenCV remaps; float32 in [0, 1] in the datasets).
        affines: (T, 2, 3) still -> frame t (pixels).
        rng: the generator of the non-rigid fields (needed when ``nonrigid`` > 0).
        nonrigid: peak displacement in pixels of the expression field (0: rigid motion only).
    Returns:
        T frames (S, S, 3), same dtype as ``img``.
    """
    size = img.shape[0]
    gx, gy = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64))
    pts = np.stack([gx, gy, np.ones_like(gx)], -1)
    if nonrigid > 0:
        a, b = smooth_field(rng, size), smooth_field(rng, size)
        period, phase = rng.uniform(6.0, 16.0), rng.uniform(0, 2 * np.pi)
    frames = []
    for t, aff in enumerate(affines):
        src = (pts @ invert_affine(aff).T).astype(np.float32)  # where frame t's pixel sits on the still
        if nonrigid > 0:
            w = np.float32(nonrigid * np.sin(2 * np.pi * t / period + phase))
            # the expression field lives on the face (still coordinates), sampled where each pixel lands
            disp = (cv2.remap(a, src[..., 0], src[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
                    * w + cv2.remap(b, src[..., 0], src[..., 1], cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REFLECT101) * np.float32(nonrigid * 0.5))
            src = src + disp
        frames.append(cv2.remap(img, src[..., 0], src[..., 1], cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REFLECT101))
    return frames


def _walk(rng: np.random.Generator, value: float, step: float, lo: float, hi: float) -> float:
    return float(np.clip(value + rng.uniform(-step, step), lo, hi))


def drift_params(rng: np.random.Generator, first: Dict, num_frames: int, options: Dict,
                 drift: Optional[Dict] = None) -> List[Dict]:
    """Per-frame degradation parameters drifting from the clip's draw by a bounded random walk.

    Args:
        rng: the sample's generator.
        first: frame 0's parameters (:func:`gfpgan.data.degradations.sample_degradation`).
        num_frames: T.
        options: the ``sample_degradation`` options the ranges come from.
        drift: per-frame steps ``{'blur_sigma', 'scale', 'noise', 'jpeg'}`` (default
            :data:`DEFAULT_DRIFT`; 0 freezes a parameter). Every frame gets a new noise seed.
    Returns:
        T parameter dicts; each drifting value stays inside its option's range.
    """
    steps = dict(DEFAULT_DRIFT, **(drift or {}))
    out = [copy.deepcopy(first)]
    for _ in range(1, num_frames):
        p = copy.deepcopy(out[-1])
        if "blur" in p:
            lo, hi = options["blur_sigma"]
            for k in ("sigma_x", "sigma_y"):
                p["blur"][k] = _walk(rng, p["blur"][k], steps["blur_sigma"], lo, hi)
            if p["blur"]["kernel"] == "iso":
                p["blur"]["sigma_y"] = p["blur"]["sigma_x"]
        if "scale" in p:
            p["scale"] = _walk(rng, p["scale"], steps["scale"], *options["downsample_range"])
        if "noise" in p:
            p["noise"] = {"sigma": _walk(rng, p["noise"]["sigma"], steps["noise"], *options["noise_range"]),
                          "noise_seed": int(rng.integers(0, 2**63 - 1))}
        if "jpeg" in p:
            lo, hi = options["jpeg_range"]
            p["jpeg"] = int(round(_walk(rng, p["jpeg"], steps["jpeg"], lo, hi)))
        out.append(p)
    return out


def x264_roundtrip(frames: Sequence[np.ndarray], crf: int, preset: str = "veryfast") -> List[np.ndarray]:
    """Encode RGB uint8 frames with libx264 at ``crf`` (yuv420p, in memory) and decode them.

    Odd sides are padded by one replicated row/column for the 4:2:0 format and cropped back.
    Single-threaded and without macroblock-tree rate control, so the result is deterministic.
    """
    import av  # the video dependency, imported where it is used

    h, w = frames[0].shape[:2]
    ph, pw = h + h % 2, w + w % 2
    buf = io.BytesIO()
    with av.open(buf, "w", format="h264") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = pw, ph, "yuv420p"
        # macroblock-tree rate control off: with it, libx264 gave run-to-run different bitstreams
        # for the same frames here (seen on short clips); without it every run is identical
        stream.options = {"crf": str(int(crf)), "preset": preset, "threads": "1",
                          "x264-params": "no-mbtree=1"}
        for f in frames:
            f = cv2.copyMakeBorder(np.ascontiguousarray(f), 0, ph - h, 0, pw - w, cv2.BORDER_REPLICATE)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(stream.encode())
    with av.open(io.BytesIO(buf.getvalue()), "r", format="h264") as inp:
        decoded = [fr.to_ndarray(format="rgb24")[:h, :w] for fr in inp.decode(video=0)]
    if len(decoded) != len(frames):
        raise RuntimeError(f"libx264 round trip returned {len(decoded)} of {len(frames)} frames")
    return decoded


def degrade_clip(gts: Sequence[np.ndarray], params: Sequence[Dict], size: int,
                 crf: Optional[int] = None) -> List[np.ndarray]:
    """LQ frames of a clip: each frame's degradation, then optionally one codec pass over the clip.

    Args:
        gts: T float32 (S, S, 3) GT frames in [0, 1].
        params: T parameter dicts (:func:`drift_params`).
        size: output side S.
        crf: libx264 CRF, or None for no codec. The codec runs at the clip's frame-0 low
            resolution (a video's own resolution), every frame resized to it first.
    Returns:
        T float32 (S, S, 3) LQ frames in [0, 1] on the 1/255 grid.
    """
    from gfpgan.data import degradations as deg

    if crf is None:
        return [deg.apply_degradation(g, p) for g, p in zip(gts, params)]
    lh, lw = deg.downsampled_size(size, size, params[0].get("scale", 1.0))
    small = [deg.apply_degradation(g, p, out_hw=(lh, lw)) for g, p in zip(gts, params)]
    coded = x264_roundtrip([np.round(s * 255.0).astype(np.uint8) for s in small], crf)
    up = [deg.resize(c.astype(np.float32), size, size) for c in coded]
    return [(np.clip(np.round(u), 0, 255) / 255.0).astype(np.float32) for u in up]



def make_clip(rng: np.random.Generator, frames: Sequence[np.ndarray], degradation: Dict,
              drift: Optional[Dict] = None, codec_prob: float = 0.0,
              crf_range: Sequence[int] = (18, 25)) -> Dict:
    """Degrade GT frames as one clip: drifting parameters, per-frame noise, optional codec.

    Args:
        rng: the sample's generator (draws: frame 0's parameters, the drift, the codec choice).
        frames: T float32 (S, S, 3) GT frames in [0, 1].
        degradation: :func:`gfpgan.data.degradations.sample_degradation` options.
        drift: per-frame random-walk steps (see :func:`drift_params`).
        codec_prob: probability of a libx264 pass over the clip.
        crf_range: CRF range of that pass (integers, inclusive).
    Returns:
        ``{'lq': T float32 frames, 'params': T dicts, 'crf': int or None}``.
    """
    from gfpgan.data import degradations as deg

    first = deg.sample_degradation(rng, **degradation)
    params = drift_params(rng, first, len(frames), degradation, drift)
    coded = bool(rng.uniform() < codec_prob)  # both draws always happen: streams stay aligned
    crf = int(rng.integers(int(crf_range[0]), int(crf_range[1]), endpoint=True))
    crf = crf if coded else None
    return {"lq": degrade_clip(frames, params, frames[0].shape[0], crf), "params": params, "crf": crf}


def synthetic_clip(rng: np.random.Generator, still: np.ndarray, num_frames: int, motion: Dict,
                   nonrigid: float, degradation: Dict, drift: Optional[Dict] = None, codec_prob: float = 0.0,
                   crf_range: Sequence[int] = (18, 25)) -> Dict:
    """A degraded clip of one still: trajectory, rendering, 8-bit GT frames, :func:`make_clip`.

    Args:
        rng: the sample's generator.
        still: float32 (S, S, 3) face in [0, 1].
        num_frames: T.
        motion: :func:`sample_trajectory` bounds (max_angle, max_zoom, max_shift, max_speed).
        nonrigid: peak non-rigid displacement as a fraction of S.
        degradation, drift, codec_prob, crf_range: see :func:`make_clip`.
    Returns:
        ``{'gt', 'lq'}`` (T float32 (S, S, 3) in [0, 1] on the 1/255 grid, as a video's frames),
        ``'affine'`` (T, 2, 3) still -> frame, ``'rel_affine'`` (T, 2, 3) float32, ``'params'``, ``'crf'``.
    """
    size = still.shape[0]
    affines, rel = sample_trajectory(rng, num_frames, size, **motion)
    gts = [np.round(g * 255.0) / np.float32(255.0) for g in render_clip(still, affines, rng, nonrigid * size)]
    clip = make_clip(rng, gts, degradation, drift, codec_prob, crf_range)
    return dict(clip, gt=gts, affine=affines, rel_affine=rel)


def jitter_motion(rng: np.random.Generator, rel: np.ndarray, size: int, shift: float,
                  angle: float = 1.0, zoom: float = 0.01) -> np.ndarray:
    """Relative transforms with the error of an estimate: what the module is given at inference.

    In a video the motion between crops comes from landmarks fitted on degraded frames (and
    smoothed), not from the truth; each transform t >= 1 is composed with a small random similarity
    about the crop centre (Gaussian shift ``shift * size`` pixels per axis, rotation ``angle``
    degrees, log zoom ``zoom``, all standard deviations), frame 0 stays the identity.

    Returns:
        float32 (T, 2, 3).
    """
    from gfpgan.motion import compose_affine

    out = np.asarray(rel, np.float64).copy()
    for t in range(1, len(out)):
        a, z, x, y = rng.normal(0.0, 1.0, 4) * np.array([angle, zoom, shift * size, shift * size])
        out[t] = compose_affine(similarity(a, float(np.exp(z)), x, y, size), out[t])
    return out.astype(np.float32)

