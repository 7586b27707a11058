"""Make a short video of a real face moving smoothly, clean and degraded, with an audio track.

The demo and the video tests need a clip with a known ground truth: a photo (by default the portrait
scikit-image ships, ``skimage.data.astronaut()``) is warped along a smooth sub-pixel path (drift,
small rotation and zoom), every frame is degraded with ONE set of GFP-GAN degradation parameters per
clip (blur, downsampling, JPEG; fresh noise every frame, as a real camera would add), and both
versions are written with the same timestamps and a sine-tone audio track.

    python -m gfpgan.tools.synth_video --out-dir results/clip --frames 48 --size 192 --fps 25
"""

import argparse
import json
from fractions import Fraction
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import av
import cv2
import numpy as np

from gfpgan.cli import add_common_arguments
from gfpgan.errors import UserError, command
from gfpgan.files import atomic_path, write_text_atomic
from gfpgan.images import read_image


def face_path_frames(photo: np.ndarray, n: int, size: int, zoom: float = 1.0,
                     backdrop: Optional[Sequence[int]] = None) -> List[np.ndarray]:
    """Frames of ``photo`` (RGB uint8) moving along a smooth path, ``size`` x ``size`` pixels.

    Args:
        photo: source image; it is first resized so its shorter side is ``size * zoom``.
        n: number of frames.
        size: frame side.
        zoom: extra scale of the photo (>1 crops tighter around the centre).
        backdrop: RGB of a plain wall around a photo smaller than the frame (None: the photo
            mirrored at its edges, which repeats its face).
    """
    h, w = photo.shape[:2]
    s = size * zoom / min(h, w)
    base = cv2.resize(photo, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    cy, cx = base.shape[0] / 2.0, base.shape[1] / 2.0
    border = cv2.BORDER_REFLECT101 if backdrop is None else cv2.BORDER_CONSTANT
    wall = tuple(int(v) for v in backdrop or (0, 0, 0))
    frames = []
    for t in range(n):
        a = 2 * np.pi * t / max(n, 1)
        m = cv2.getRotationMatrix2D((cx, cy), 3.0 * np.sin(a), 1.0 + 0.03 * np.sin(0.7 * a))
        # centre the photo in the frame, then drift by a few pixels (sub-pixel steps)
        m[:, 2] += (size / 2.0 - cx + 0.06 * size * np.sin(a), size / 2.0 - cy + 0.04 * size * np.cos(a))
        frames.append(cv2.warpAffine(base, m, (size, size), flags=cv2.INTER_CUBIC, borderMode=border,
                                     borderValue=wall))
    return frames


def degrade_frames(frames: Sequence[np.ndarray], seed: int = 0, blur_sigma: float = 1.2,
                   scale: float = 2.0, noise: float = 6.0, jpeg: int = 50) -> Tuple[List[np.ndarray], dict]:
    """Degrade every frame with one clip-wide blur/downsample/JPEG setting and per-frame noise.

    Returns:
        The degraded RGB uint8 frames and the parameters used (JSON-serialisable).
    """
    from gfpgan.data import degradations as deg

    rng = np.random.default_rng(seed)
    params = {"blur": {"kernel": "iso", "sigma_x": blur_sigma, "sigma_y": blur_sigma, "theta": 0.0,
                       "size": 2 * int(np.ceil(3 * blur_sigma)) + 1},
              "scale": scale, "jpeg": int(jpeg)}
    out = []
    for f in frames:
        p = dict(params, noise={"sigma": noise, "noise_seed": int(rng.integers(0, 2**62))})
        out.append((deg.apply_degradation(f.astype(np.float32) / 255.0, p) * 255.0).round().astype(np.uint8))
    return out, params


def write_clip(path, frames: Sequence[np.ndarray], fps: Fraction = Fraction(25), audio: bool = True,
               crf: int = 12) -> None:
    """Write RGB frames as H.264 (yuv444p, near lossless) in mp4/mkv, with a 440 Hz AAC tone."""
    h, w = frames[0].shape[:2]
    path = Path(path)
    with atomic_path(path) as tmp:
        with av.open(str(tmp), "w", format="matroska" if path.suffix == ".mkv" else "mp4") as out:
            # no MB-tree: the same frames then give the same file, run after run
            vs = out.add_stream("libx264", rate=fps, options={"crf": str(crf), "preset": "fast",
                                                              "x264-params": "mbtree=0"})
            vs.width, vs.height, vs.pix_fmt = w, h, "yuv444p"
            a = out.add_stream("aac", rate=44100, layout="mono") if audio else None
            for i, img in enumerate(frames):
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
                vf.pts = i
                vf.time_base = 1 / fps
                out.mux(vs.encode(vf.reformat(format="yuv444p")))
            out.mux(vs.encode())
            if a is not None:
                sr, fs = 44100, a.codec_context.frame_size or 1024
                total = int(len(frames) / fps * sr)
                for p in range(0, total, fs):
                    m = min(fs, total - p)
                    wave = (0.2 * np.sin(2 * np.pi * 440 * np.arange(p, p + m) / sr)).astype(np.float32)
                    af = av.AudioFrame.from_ndarray(wave[None], format="fltp", layout="mono")
                    af.sample_rate, af.pts = sr, p
                    out.mux(a.encode(af))
                out.mux(a.encode())


def make_clip_pair(out_dir, photo: Optional[np.ndarray] = None, frames: int = 48, size: int = 192,
                   fps: Fraction = Fraction(25), zoom: float = 1.0, seed: int = 0, **degrade) -> dict:
    """Write ``clean.mp4`` and ``degraded.mp4`` (same timestamps, with audio) into ``out_dir``.

    Returns:
        A description (paths, frame count, fps, degradation parameters), also written as clip.json.
    """
    if photo is None:
        import skimage.data

        photo = skimage.data.astronaut()
    clean = face_path_frames(photo, frames, size, zoom)
    lq, params = degrade_frames(clean, seed=seed, **degrade)
    out_dir = Path(out_dir)
    write_clip(out_dir / "clean.mp4", clean, fps)
    write_clip(out_dir / "degraded.mp4", lq, fps)
    info = {"clean": str(out_dir / "clean.mp4"), "degraded": str(out_dir / "degraded.mp4"),
            "frames": frames, "size": size, "fps": str(fps), "degradation": params}
    write_text_atomic(out_dir / "clip.json", json.dumps(info, indent=2))
    return info


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out-dir", required=True, help="folder for clean.mp4, degraded.mp4, clip.json")
    p.add_argument("--photo", help="a photo with one face (default: scikit-image's astronaut)")
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--size", type=int, default=192, help="frame side in pixels")
    p.add_argument("--fps", default="25", help="frame rate, e.g. 25 or 30000/1001")
    p.add_argument("--zoom", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--blur-sigma", type=float, default=1.2)
    p.add_argument("--scale", type=float, default=2.0, help="downsampling factor")
    p.add_argument("--noise", type=float, default=6.0, help="Gaussian noise sigma (0-255 scale)")
    p.add_argument("--jpeg", type=int, default=50, help="JPEG quality")
    add_common_arguments(p)
    a = p.parse_args(argv)
    if a.frames < 1 or a.size < 16:
        raise UserError("--frames must be >= 1 and --size >= 16.")
    photo = read_image(a.photo) if a.photo else None
    info = make_clip_pair(a.out_dir, photo, a.frames, a.size, Fraction(a.fps), a.zoom, a.seed,
                          blur_sigma=a.blur_sigma, scale=a.scale, noise=a.noise, jpeg=a.jpeg)
    print(json.dumps(info, indent=2))
    return 0


cli = command(main)  # the console script

if __name__ == "__main__":
    cli()
