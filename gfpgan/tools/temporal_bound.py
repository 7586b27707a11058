"""What fusing a face's previous frames could add at most: exact-motion averages on a video test set.

    python -m gfpgan.tools.temporal_bound --model results/demo/model/generator.safetensors \\
        --set results/demo/bench_temporal/set_64px_12f_seed0 --back 4

A causal temporal module sees the current face and the previous ones. If it aligned the previous
``--back`` - 1 frames perfectly and averaged them with the current one, what would it gain? Here the
motion is the set's exact transforms (its manifest: never known at inference, so this is an upper
bound of alignment, not something a restorer can do), and each frame from the ``--back``-th on is
scored against its ground truth (PSNR, 0-255 RGB, fp32 base):

* ``degraded input`` and ``degraded input, averaged``: the degraded frames alone, and the aligned
  average of the last ``--back`` of them: how much independent noise the frames hold;
* ``frame by frame``: the base on each frame;
* ``input average, restored``: the base on the aligned average of the degraded frames (fusion
  before the network);
* ``output average``: the aligned average of the base's last ``--back`` outputs (fusion after it).

When both averages stay close to frame by frame, the frames share their error (blur, downsampling,
a codec's smoothing) and no averaging of aligned previous frames can recover much; a larger gain
needs detail the frames hold differently (sub-pixel sampling at less blur, larger faces).
"""

from __future__ import annotations

import argparse
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
import torch

from gfpgan.cli import add_common_arguments
from gfpgan.errors import UserError, command
from gfpgan.files import write_json_atomic

__all__ = ["aligned_stack", "bound", "table"]

ROWS = (("input", "degraded input"), ("input_avg", "degraded input, averaged"),
        ("per_frame", "frame by frame"), ("restored_input_avg", "input average, restored"),
        ("output_avg", "output average"))


def aligned_stack(frames: Sequence[np.ndarray], rel_affines: np.ndarray, t: int, back: int) -> np.ndarray:
    """Frames ``t - back + 1 .. t`` warped onto frame ``t`` by the crop-to-crop transforms
    (``rel_affines[j]``: crop j-1 -> crop j), float32 (back, H, W, C), frame ``t`` first."""
    from gfpgan.motion import compose_affine

    h, w = frames[t].shape[:2]
    out, to_t = [frames[t].astype(np.float32)], np.eye(3)[:2]
    for k in range(1, back):
        to_t = compose_affine(to_t, rel_affines[t - k + 1])  # crop t-k -> crop t
        out.append(cv2.warpAffine(frames[t - k], to_t, (w, h), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE).astype(np.float32))
    return np.stack(out)


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def bound(model: str, root: str, back: int = 4, device: str = "cpu") -> Dict[str, Dict[str, float]]:
    """{row: {'psnr', 'frames'}} over every frame with ``back`` - 1 predecessors (see the module
    docstring)."""
    from gfpgan.engine.video_eval import read_video_set
    from gfpgan.images import read_image
    from gfpgan.inference.faces.batch import crops_to_tensor, tensor_to_crops
    from gfpgan.inference.faces.model import load_face_model
    from gfpgan.metrics.psnr_ssim import calculate_psnr

    if back < 2:
        raise UserError(f"--back {back}: average at least 2 frames.")
    clips = read_video_set(root)
    net = load_face_model(model, device=device, precision="fp32")

    def restore(images: List[np.ndarray]) -> List[np.ndarray]:
        with torch.inference_mode():
            return tensor_to_crops(net(crops_to_tensor(images, net.device)))

    scores: Dict[str, List[float]] = {key: [] for key, _ in ROWS}
    for clip in clips:
        lq = [read_image(p) for p in clip["lq"]]
        gt = [read_image(p) for p in clip["gt"]]
        if len(lq) < back:
            raise UserError(f"the clips of {root} have {len(lq)} frames, fewer than --back {back}.")
        if lq[0].shape[:2] != (net.size, net.size):
            raise UserError(f"the clips of {root} are {lq[0].shape[1]} px, the model takes {net.size}; "
                            f"make the set at the model's size.")
        out = restore(lq)
        frames = range(back - 1, len(lq))
        inputs = [_u8(aligned_stack(lq, clip["rel_affines"], t, back).mean(0)) for t in frames]
        restored_avg = restore(inputs)
        for i, t in enumerate(frames):
            got = {"input": lq[t], "input_avg": inputs[i], "per_frame": out[t],
                   "restored_input_avg": restored_avg[i],
                   "output_avg": _u8(aligned_stack(out, clip["rel_affines"], t, back).mean(0))}
            for key, img in got.items():
                scores[key].append(calculate_psnr(img, gt[t]))
    return {key: {"psnr": float(np.mean(v)), "frames": len(v)} for key, v in scores.items()}


def table(rows: Dict[str, Dict[str, float]], back: int) -> str:
    ref = rows["per_frame"]["psnr"]
    lines = [f"| exact motion, last {back} frames ({rows['per_frame']['frames']} frames scored) | PSNR ↑ "
             "| vs frame by frame |", "|---|---:|---:|"]
    for key, label in ROWS:
        lines.append(f"| {label} | {rows[key]['psnr']:.3f} | {rows[key]['psnr'] - ref:+.3f} |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gfpgan.tools.temporal_bound",
                                description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, help="the base generator")
    p.add_argument("--set", required=True,
                   help="a video test set at the model's size (make_video_testset; bench_temporal keeps "
                        "its own)")
    p.add_argument("--back", type=int, default=4,
                   help="frames averaged: the current one and its predecessors")
    p.add_argument("--json", default=None, help="also write the results here")
    add_common_arguments(p, device=True)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    rows = bound(args.model, args.set, args.back, args.device)
    if args.json:
        write_json_atomic(args.json, {"model": args.model, "set": args.set, "back": args.back, "rows": rows})
    print(table(rows, args.back))
    return 0


cli = command(main)  # the console script

if __name__ == "__main__":
    cli()
