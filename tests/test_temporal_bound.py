"""The exact-motion bound of fusing previous frames (gfpgan.tools.temporal_bound)."""

import json

import cv2
import numpy as np
import pytest
import skimage.data

from gfpgan.data.clip_degradations import render_clip
from gfpgan.errors import UserError
from gfpgan.metrics.psnr_ssim import calculate_psnr
from gfpgan.tools.temporal_bound import aligned_stack, main


def _face(size=64):
    return cv2.resize(skimage.data.astronaut()[20:260, 120:360], (size, size), interpolation=cv2.INTER_AREA)


def test_previous_frames_land_on_the_current_one():
    from gfpgan.motion import invert_affine, relative_affine, similarity

    # the still turns 2 degrees, grows 2% and moves (2.5, -1.5) px a frame
    affines = np.stack([similarity(2 * t, 1.02 ** t, 2.5 * t, -1.5 * t, 64) for t in range(6)])
    rel = np.concatenate([np.eye(3)[None, :2], relative_affine(affines[:-1], affines[1:])])
    frames = render_clip(_face(), affines)
    stack = aligned_stack(frames, rel, 5, 4)
    inner = (slice(12, 52), slice(12, 52))  # away from the borders the warps fill in
    for k in range(1, 4):
        moved = calculate_psnr(frames[5 - k][inner], frames[5][inner])
        aligned = calculate_psnr(stack[k][inner].round().astype(np.uint8), frames[5][inner])
        assert aligned > moved + 6 and aligned > 27  # the transforms, composed the right way round
    # the inverse composition would not align them
    wrong = aligned_stack(frames, invert_affine(rel), 5, 4)
    assert calculate_psnr(wrong[3][inner].round().astype(np.uint8), frames[5][inner]) < aligned - 6


def test_the_bound_averages_independent_noise_away(tmp_path, capsys):
    import torch

    from gfpgan.archs.gfpgan_arch import GFPGANv1Clean
    from gfpgan.checkpoint import save_network
    from gfpgan.images import write_image_atomic

    kw = dict(out_size=64, num_style_feat=32, channel_multiplier=1, narrow=0.125, num_mlp=2)
    torch.manual_seed(0)
    save_network(tmp_path / "base.safetensors", GFPGANv1Clean(**kw).eval(), "GFPGANv1Clean", kw)
    root, rng, still = tmp_path / "set", np.random.default_rng(0), _face()
    for t in range(5):  # a still face, fresh noise on every frame
        write_image_atomic(root / "gt" / "a" / f"{t:05d}.png", still)
        noisy = np.clip(still + rng.normal(0, 20, still.shape), 0, 255).astype(np.uint8)
        write_image_atomic(root / "lq" / "a" / f"{t:05d}.png", noisy)
    rel = np.tile(np.eye(3)[:2], (5, 1, 1)).tolist()
    manifest = {"frames": 5, "clips": [{"name": "a", "rel_affines": rel}]}
    (root / "manifest.json").write_text(json.dumps(manifest))
    assert main(["--model", str(tmp_path / "base.safetensors"), "--set", str(root), "--back", "4",
                 "--json", str(tmp_path / "b.json"), "--device", "cpu"]) == 0
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert {r["frames"] for r in rows.values()} == {2}  # frames 3 and 4 have 3 predecessors
    # four frames of independent noise: the noise's power falls 4x (6 dB; clipping takes a little)
    assert 4.5 < rows["input_avg"]["psnr"] - rows["input"]["psnr"] < 6.5
    assert "| output average |" in capsys.readouterr().out
    with pytest.raises(UserError, match="fewer than --back 9"):
        main(["--model", str(tmp_path / "base.safetensors"), "--set", str(root), "--back", "9"])
