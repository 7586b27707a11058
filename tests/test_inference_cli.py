"""gfpgan-infer-image: inputs (file/folder/glob), the reference output layout, bad inputs."""

import subprocess
import sys

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from gfpgan.errors import UserError
from gfpgan.infer_image import list_inputs, main

TINY = dict(out_size=32, num_style_feat=16, channel_multiplier=0.25, narrow=0.125,
            different_w=True, sft_half=True, input_is_latent=True, fix_decoder=False)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    import gfpgan.archs  # noqa: F401
    from gfpgan.checkpoint import save_network
    from gfpgan.registry import ARCH_REGISTRY

    d = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    save_network(d / "tiny.safetensors", ARCH_REGISTRY.get("GFPGANv1Clean")(**TINY),
                 "GFPGANv1Clean", TINY)
    (d / "in").mkdir()
    img = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(d / "in" / "astro.jpg"), cv2.resize(img, (256, 256)))
    cv2.imwrite(str(d / "in" / "empty.png"), np.zeros((40, 50, 3), np.uint8))
    (d / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    (d / "in" / "notes.txt").write_text("not an image")
    return d


def test_list_inputs(workdir):
    names = [p.name for p in list_inputs(str(workdir / "in"))]
    assert names == ["astro.jpg", "broken.png", "empty.png"]
    assert [p.name for p in list_inputs(str(workdir / "in" / "*.png"))] == ["broken.png", "empty.png"]
    assert [p.name for p in list_inputs(str(workdir / "in" / "astro.jpg"))] == ["astro.jpg"]
    with pytest.raises(UserError, match="no images"):
        list_inputs(str(workdir / "nothing*"))


def test_folder_run_writes_reference_layout_and_skips_unreadable(workdir, capsys):
    out = workdir / "out"
    rc = main(["-i", str(workdir / "in"), "-o", str(out), "--model", str(workdir / "tiny.safetensors"),
               "--device", "cpu", "--upscale", "2", "--suffix", "v1"])
    assert rc == 1  # one unreadable image
    assert "broken.png" in capsys.readouterr().err
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == ["cmp/astro_00.png", "cropped_faces/astro_00.png",
                     "restored_faces/astro_00_v1.png", "restored_imgs/astro_v1.jpg",
                     "restored_imgs/empty_v1.png"]
    cmp_img = cv2.imread(str(out / "cmp" / "astro_00.png"))
    assert cmp_img.shape == (32, 64, 3)
    full = cv2.imread(str(out / "restored_imgs" / "astro_v1.jpg"))
    assert full.shape == (512, 512, 3)
    empty = cv2.imread(str(out / "restored_imgs" / "empty_v1.png"))
    assert empty.shape == (80, 100, 3) and empty.max() == 0


def test_aligned_mode(workdir):
    out = workdir / "out_aligned"
    rc = main(["-i", str(workdir / "in" / "astro.jpg"), "-o", str(out), "--aligned",
               "--model", str(workdir / "tiny.safetensors"), "--device", "cpu", "--ext", "png"])
    assert rc == 0
    assert sorted(p.parent.name for p in out.rglob("*.png")) == [
        "cmp", "cropped_faces", "restored_faces"]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "gfpgan.infer_image", *args],
                          capture_output=True, text=True, timeout=300)


def test_bad_inputs_exit_nonzero_with_one_sentence_and_no_output(workdir):
    out = workdir / "out_bad"
    p = run_cli("-i", str(workdir / "in" / "broken.png"), "-o", str(out),
                "--model", str(workdir / "tiny.safetensors"), "--device", "cpu")
    assert p.returncode == 2
    assert p.stderr.strip().startswith("error:") and "broken.png" in p.stderr
    assert "Traceback" not in p.stderr
    assert not out.exists() or not any(out.rglob("*"))
    # a model file that does not fit
    p = run_cli("-i", str(workdir / "in" / "astro.jpg"), "-o", str(out),
                "--model", str(workdir / "in" / "notes.txt"), "--device", "cpu")
    assert p.returncode == 2 and "notes.txt" in p.stderr and "Traceback" not in p.stderr
    assert not out.exists() or not any(out.rglob("*"))


def test_bad_strength_is_user_error(workdir):
    with pytest.raises(UserError, match="strength"):
        main(["-i", str(workdir / "in"), "--strength", "2"])
