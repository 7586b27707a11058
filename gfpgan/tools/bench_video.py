"""Video benchmark: the streaming pipeline against a naive per-frame loop, side by side.

``python -m gfpgan.tools.bench_video --device cpu --model tiny --size 640x360 --frames 48``

Every contender restores the same generated clip (the astronaut photo sliding across the frame,
one face, with audio) with the same network and weights:

* **naive**: what the reference's FaceRestoreHelper does, frame after frame: decode, detect
  (one frame), align, restore one face per forward pass, paste back with full-frame warps and
  blurs, encode, write;
* **ours**: :func:`gfpgan.inference.job.video_job.run_videos` with :class:`VideoFaceRestorer` at
  the command's defaults (``--precision`` and ``--batch-faces`` chosen for the device; key-frame
  detection every ``--detect-every`` frames with O-Net tracking in between, batched restoration,
  box-local paste-back; decoding, detection, restoration, paste-back and encoding in threads of
  their own);
* **before**: ours with the defaults it had before they were chosen for the device (fp32,
  ``--batch-faces 8``), to show what ``--precision auto`` and ``--batch-faces`` auto buy (time and
  peak memory);
* **ours, detect every frame**: the same with ``detect_every=1``, to show what tracking buys;
* **ours, one thread**: the same with detection and paste-back in the restoring thread
  (``overlap=False``), to show what overlapping them buys.

Each run happens in a fresh subprocess so its peak RSS is its own. Two rates are reported: the
whole job with its start-up (model to the device, CUDA set-up, first detections), and the steady
rate over the middle half of the frames written, which is what a long video sees (on a clip of a
few hundred frames; on a short one the middle half overlaps the final drain). For ours, the busy
seconds of each stage (summed over its threads) show where the time goes. ``--memory`` also runs
ours on a 10x longer clip and reports the RSS ratio (target: within 10%).
Models: ``tiny`` (GFPGANv1Clean 128 px, narrow, random weights: a small CPU generator), ``512``
(the v1.3/v1.4 architecture with random weights) or any --model the CLI takes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional, Sequence

from gfpgan.cli import add_common_arguments
from gfpgan.errors import UserError, command
from gfpgan.files import write_text_atomic
from gfpgan.precision import PRECISIONS

ARCHS = {"tiny": dict(out_size=128, num_style_feat=64, channel_multiplier=1, narrow=0.25,
                      num_mlp=2),
         "512": dict(out_size=512, num_style_feat=512, channel_multiplier=2, num_mlp=8)}


def _model(spec: str):
    if spec not in ARCHS:
        return spec
    import torch

    from gfpgan.archs.gfpgan_arch import GFPGANv1Clean
    torch.manual_seed(0)
    return GFPGANv1Clean(**ARCHS[spec]).eval()


def make_clip(path: Path, frames: int, width: int, height: int) -> None:
    """One face (astronaut, about half the frame height) moving across a 30000/1001 fps clip."""
    from fractions import Fraction

    import av
    import cv2
    import numpy as np
    import skimage.data
    side = height // 2
    face = cv2.resize(skimage.data.astronaut(), (side, side), interpolation=cv2.INTER_AREA)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=Fraction(30000, 1001), options={"preset": "veryfast"})
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        a = out.add_stream("aac", rate=44100, layout="mono")
        for i in range(frames):
            img = np.full((height, width, 3), 70, np.uint8)
            x = (width - side) * i // max(1, frames - 1)
            img[height // 4: height // 4 + side, x:x + side] = face
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = i
            out.mux(vs.encode(f))
        out.mux(vs.encode())
        n = int(frames * 1001 / 30000 * 44100)
        for p in range(0, n, 1024):
            af = av.AudioFrame.from_ndarray(np.zeros((1, min(1024, n - p)), np.float32),
                                            format="fltp", layout="mono")
            af.sample_rate, af.pts = 44100, p
            out.mux(a.encode(af))
        out.mux(a.encode())


class _Clock:
    """Busy seconds per stage (summed over threads) and the times frames come out."""

    def __init__(self):
        self.busy: dict = {}
        self.out: list = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def stage(self, name: str):
        """A :class:`~gfpgan.inference.timing.StageTimer`: sums each stage's busy seconds; an
        "encode" run is one frame out (for :func:`naive <run_naive>`, :meth:`frame_out`)."""
        t = time.perf_counter()
        try:
            yield
        finally:
            now = time.perf_counter()
            with self._lock:
                self.busy[name] = self.busy.get(name, 0.0) + now - t
                if name == "encode":
                    self.out.append(now)

    def frame_out(self) -> None:
        self.out.append(time.perf_counter())

    def steady_fps(self) -> float:
        """Frames/s over the middle half of the output, without the start-up (model to the
        device, CUDA set-up, the pipeline filling) and the final drain: the inverse slope of a
        least-squares line through (frame, time), which frames written in bursts do not bias."""
        import numpy as np

        a, b = len(self.out) // 4, (3 * len(self.out)) // 4
        if b - a < 2:
            return float("nan")
        slope = np.polyfit(np.arange(a, b), np.asarray(self.out[a:b]), 1)[0]
        return 1.0 / slope if slope > 0 else float("inf")


def run_naive(src: Path, dst: Path, model, device: str, clock: _Clock) -> int:
    """The reference-style loop: one frame, one face, full-frame paste, in sequence."""
    import av
    import cv2
    import numpy as np
    import torch

    from gfpgan.inference.faces.alignment import estimate_affine, invert_affine, warp_face
    from gfpgan.inference.faces.detection import build_detector
    from gfpgan.inference.faces.model import load_face_model
    net = load_face_model(model, device=device, precision="fp32")  # the reference's arithmetic
    det = build_detector("mtcnn", device=device)
    n = 0
    with av.open(str(src)) as c, av.open(str(dst), "w") as out:
        vin = c.streams.video[0]
        vs = out.add_stream("libx264", rate=vin.average_rate, options={"crf": "18"})
        vs.width, vs.height, vs.pix_fmt = vin.width, vin.height, "yuv420p"
        for frame in c.decode(vin):
            img = frame.to_ndarray(format="rgb24")
            d = det.detect([img])[0]
            res = img
            for lm in d.landmarks:
                m = estimate_affine(lm, net.size)
                crop = warp_face(img, m, net.size)
                x = torch.from_numpy(crop).permute(2, 0, 1)[None].float().div(127.5).sub(1)
                y = net(x.to(net.device))[0].clamp(-1, 1).add(1).mul(127.5).round()
                face = y.byte().permute(1, 2, 0).cpu().numpy()
                inv = invert_affine(m)
                h, w = img.shape[:2]
                back = cv2.warpAffine(face, inv, (w, h))
                mask = cv2.warpAffine(np.ones((net.size, net.size), np.float32), inv, (w, h))
                mask = cv2.erode(mask, np.ones((2 * (net.size // 64) + 1,) * 2, np.uint8))
                blur = max(3, (net.size // 20) | 1)
                mask = cv2.GaussianBlur(mask, (blur * 2 + 1,) * 2, 0)[..., None]
                res = (mask * back + (1 - mask) * res.astype(np.float32)).round().clip(
                    0, 255).astype(np.uint8)
            f = av.VideoFrame.from_ndarray(res, format="rgb24")
            f.pts, f.time_base = frame.pts, vin.time_base
            out.mux(vs.encode(f))
            clock.frame_out()
            n += 1
        out.mux(vs.encode())
    return n


def run_ours(src: Path, dst: Path, model, device: str, batch_faces: Optional[int], detect_every: int,
             precision: str, overlap: bool, clock: _Clock):
    """Ours on ``src``; (frames, the precision and face batch the run used)."""
    from gfpgan.inference.job.options import VideoJobOptions
    from gfpgan.inference.job.video_job import run_videos
    from gfpgan.inference.tracks.video_restorer import VideoFaceRestorer
    vfr = VideoFaceRestorer(model, device=device, batch_faces=batch_faces, detect_batch_size=8,
                            detect_every=detect_every, precision=precision, overlap=overlap, timer=clock)
    [s] = run_videos([(str(src), str(dst))], vfr, VideoJobOptions(progress=False, preset="medium"),
                     timer=clock)
    return s.frames, vfr.model.precision.name, vfr.restorer.batch_faces


def _child(args) -> int:
    src, dst = Path(args.clip), Path(args.clip).with_suffix(f".{args.child}.mp4")
    model = _model(args.model)
    clock = _Clock()
    t = time.perf_counter()
    used = {"precision": "fp32", "batch_faces": 1}
    if args.child == "naive":
        n = run_naive(src, dst, model, args.device, clock)
    else:
        before = args.child == "before"  # the defaults before they were chosen per device
        n, used["precision"], used["batch_faces"] = run_ours(
            src, dst, model, args.device, 8 if before else args.batch_faces,
            1 if args.child == "ours1" else args.detect_every, "fp32" if before else args.precision,
            args.child != "ours_sequential", clock)
    if args.device.startswith("cuda"):
        import torch
        torch.cuda.synchronize()
    dt = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"frames": n, "seconds": dt, "fps": n / dt, "steady_fps": clock.steady_fps(),
                      "rss_mb": rss, "busy_s": clock.busy, **used}))
    return 0


def _spawn(kind: str, clip: Path, args) -> dict:
    cmd = [sys.executable, "-m", "gfpgan.tools.bench_video", "--child", kind, "--clip",
           str(clip), "--model", args.model, "--device", args.device, "--precision", args.precision,
           "--detect-every", str(args.detect_every)] + (
               ["--batch-faces", str(args.batch_faces)] if args.batch_faces else [])
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        tail = " | ".join(out.stderr.strip().splitlines()[-3:])
        raise UserError(f"the {kind} run failed (exit {out.returncode}): {tail}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="gfpgan-bench-video", description=__doc__.split("\n")[0])
    p.add_argument("--model", default="tiny", help="tiny, 512, or a --model of the CLI")
    p.add_argument("--size", default="640x360", help="WxH of the generated clip")
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--batch-faces", type=int, default=None,
                   help="ours: faces per forward pass (default: the command's, chosen per device)")
    p.add_argument("--detect-every", type=int, default=8, help="ours: full detection every K")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="ours: the generator's arithmetic (default: the command's, auto)")
    p.add_argument("--memory", action="store_true", help="also run ours on a 10x longer clip")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--clip", default=None, help=argparse.SUPPRESS)
    add_common_arguments(p, device=True)
    args = p.parse_args(argv)
    if args.child:
        return _child(args)
    w, h = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        make_clip(clip, args.frames, w, h)
        k = args.detect_every
        runs = {"naive": _spawn("naive", clip, args),
                "before (fp32, 8 a pass)": _spawn("before", clip, args),
                "ours, detect every frame": _spawn("ours1", clip, args),
                f"ours, every {k}, one thread": _spawn("ours_sequential", clip, args),
                f"ours, detect every {k}": _spawn("ours", clip, args)}
        naive, before, ours = runs["naive"], runs["before (fp32, 8 a pass)"], runs[f"ours, detect every {k}"]
        print(f"video benchmark: {args.frames} frames {w}x{h}, one face, model {args.model}, "
              f"device {args.device}; ours' defaults here: --precision {args.precision} -> "
              f"{ours['precision']}, {ours['batch_faces']} face(s) a pass")
        print(f"{'':28s} {'job fps':>8s} {'x naive':>8s} {'steady fps':>11s} {'x naive':>8s} "
              f"{'s/frame':>8s} {'x before':>9s} {'peak RSS MB':>12s}  runs as")
        for name, r in runs.items():
            print(f"{name:28s} {r['fps']:8.2f} {r['fps'] / naive['fps']:7.2f}x "
                  f"{r['steady_fps']:11.2f} {r['steady_fps'] / naive['steady_fps']:7.2f}x "
                  f"{1 / r['fps']:8.3f} {r['fps'] / before['fps']:8.2f}x {r['rss_mb']:12.0f}  "
                  f"{r['precision']}, {r['batch_faces']} a pass")
        print("job: the whole run with start-up; steady: the middle half of the frames written; before: ours "
              "with the defaults it had before they were chosen per device (fp32, --batch-faces 8)")
        for name, r in runs.items():
            if r["busy_s"]:
                parts = ", ".join(f"{k} {v:.2f}" for k, v in r["busy_s"].items())
                print(f"{name} busy seconds: {parts} ({r['seconds']:.2f} s in all)")
        if args.memory:
            long_clip = Path(tmp) / "long.mp4"
            make_clip(long_clip, args.frames * 10, w, h)
            longer = _spawn("ours", long_clip, args)
            print(f"ours, {args.frames * 10} frames: {longer['fps']:.2f} frames/s (steady "
                  f"{longer['steady_fps']:.2f}), peak RSS "
                  f"{longer['rss_mb']:.0f} MB ({longer['rss_mb'] / ours['rss_mb']:.3f}x the "
                  f"{args.frames}-frame run)")
            runs[f"ours, {args.frames * 10} frames"] = longer
    if args.json:
        write_text_atomic(args.json, json.dumps({"frames": args.frames, "size": [w, h], "model": args.model,
                                                 "device": args.device, "precision": args.precision,
                                                 "runs": runs}, indent=1))
    return 0


cli = command(main)  # the console script

if __name__ == "__main__":
    cli()
