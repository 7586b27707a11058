"""``python -m gfpgan.infer_image`` with the reference's spelling (inference_gfpgan.py): -v, -s, -w,
--bg_upsampler, --bg_tile, --only_center_face, with its output layout; -w does something here."""

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from gfpgan.compat.cli import apply_reference_options
from gfpgan.errors import UserError
from gfpgan.infer_image import DEFAULT_MODEL, build_parser, main

TINY = dict(out_size=32, num_style_feat=16, channel_multiplier=0.25, narrow=0.125,
            different_w=True, sft_half=True, input_is_latent=True, fix_decoder=False)


def parse(*argv):
    return apply_reference_options(build_parser().parse_args(["-i", "x", *argv]), DEFAULT_MODEL)


def test_aliases_translate_to_the_commands_own_options():
    args = parse("-v", "1.4", "-s", "3", "--bg_tile", "100", "--only_center_face", "-w", "0.75")
    assert (args.model, args.upscale, args.bg_tile, args.only, args.strength) == (
        "GFPGANv1.4", 3.0, 100, "center", 0.5)
    plain, defaults = parse(), build_parser().parse_args(["-i", "x"])
    assert (plain.model, plain.upscale, plain.bg_tile, plain.only, plain.strength) == (
        DEFAULT_MODEL, defaults.upscale, 400, "all", 1.0)
    assert parse("-v", "1.2").model == "GFPGANCleanv1-NoCE-C2" and parse("-v", "1").model == "GFPGANv1"
    assert parse("--version", "RestoreFormer").model == "RestoreFormer"
    assert parse("-w", "0.5").strength == 1.0  # the reference's default weight: full restoration
    assert parse("--bg_upsampler", "none").bg_upsampler is None


def test_conflicts_and_bad_values_are_one_sentence():
    with pytest.raises(UserError, match="name different models"):
        parse("-v", "1.3", "--model", "my.pth")
    with pytest.raises(UserError, match="weight 1.5 is outside"):
        parse("-w", "1.5")
    with pytest.raises(SystemExit):  # argparse: not one of the versions
        parse("-v", "2.0")


def test_bg_upsampler_realesrgan_is_the_local_file(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    weights = tmp_path / "experiments" / "pretrained_models" / "RealESRGAN_x2plus.pth"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"placeholder")
    assert parse("--bg_upsampler", "realesrgan").bg_upsampler == str(weights)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    import gfpgan.archs  # noqa: F401
    from gfpgan.checkpoint import save_network
    from gfpgan.registry import ARCH_REGISTRY

    d = tmp_path_factory.mktemp("refcli")
    torch.manual_seed(0)
    save_network(d / "tiny.safetensors", ARCH_REGISTRY.get("GFPGANv1Clean")(**TINY), "GFPGANv1Clean", TINY)
    img = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(d / "astro.png"), cv2.resize(img, (256, 256)))
    return d


def _run(workdir, out, *extra):
    rc = main(["-i", str(workdir / "astro.png"), "-o", str(out), "--model", str(workdir / "tiny.safetensors"),
               "--device", "cpu", *extra])
    assert rc == 0
    return {str(p.relative_to(out)): cv2.imread(str(p)) for p in out.rglob("*.png")}


def test_reference_spelling_end_to_end_and_weight_works(workdir):
    full = _run(workdir, workdir / "w05", "-s", "1.5", "-w", "0.5", "--only_center_face", "--suffix", "x")
    assert sorted(full) == ["cmp/astro_00.png", "cropped_faces/astro_00.png", "restored_faces/astro_00_x.png",
                            "restored_imgs/astro_x.png"]
    assert full["restored_imgs/astro_x.png"].shape == (384, 384, 3)
    fidelity = _run(workdir, workdir / "w1", "-w", "1")
    crop, face = fidelity["cropped_faces/astro_00.png"], fidelity["restored_faces/astro_00.png"]
    assert np.array_equal(face, crop)  # weight 1: the input face
    assert not np.array_equal(full["restored_faces/astro_00_x.png"], crop)


def test_bench_compat_rejects_bad_counts():
    from gfpgan.tools.bench_compat import main as bench_main

    with pytest.raises(UserError, match="--faces must be at least 1"):
        bench_main(["--faces", "0", "--no-reference"])
