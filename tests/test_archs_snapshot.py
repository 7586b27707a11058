"""State-dict key snapshot: names and shapes of every network in its released configuration.

Official checkpoints load with strict=True only while these stay the same. The snapshot stores,
per network, the key count and a sha256 of the sorted "name shape" lines (tests/snapshots/
arch_keys.json); a few keys from the released files are also asserted explicitly. Networks are
built on the meta device (no memory, no random init). After an intended change, regenerate with
``GFPGAN_UPDATE_SNAPSHOTS=1 python -m pytest tests/test_archs_snapshot.py``.
"""

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

from gfpgan.archs import (
    FacialComponentDiscriminator,
    GFPGANv1,
    GFPGANv1Clean,
    ResNetArcFace,
    StyleGAN2Discriminator,
    StyleGAN2Generator,
    StyleGAN2GeneratorClean,
    VGGFeatureExtractor,
)

SNAPSHOT = Path(__file__).parent / "snapshots" / "arch_keys.json"
RELEASE = dict(out_size=512, input_is_latent=True, different_w=True, sft_half=True)
NETWORKS = {
    "GFPGANv1Clean_512_cm2": lambda: GFPGANv1Clean(channel_multiplier=2, fix_decoder=False, **RELEASE),
    "GFPGANv1_512_cm1": lambda: GFPGANv1(channel_multiplier=1, **RELEASE),
    "StyleGAN2Generator_512_cm1": lambda: StyleGAN2Generator(512, channel_multiplier=1),
    "StyleGAN2GeneratorClean_512_cm2": lambda: StyleGAN2GeneratorClean(512, channel_multiplier=2),
    "StyleGAN2Discriminator_512_cm1": lambda: StyleGAN2Discriminator(512, channel_multiplier=1),
    "FacialComponentDiscriminator": FacialComponentDiscriminator,
    "ResNetArcFace_IR18": lambda: ResNetArcFace("IRBlock", (2, 2, 2, 2), use_se=False),
    "VGGFeatureExtractor_vgg19_conv5_4": lambda: VGGFeatureExtractor(["conv5_4"], pretrained=False),
}


def _shapes(name):
    with torch.device("meta"):
        net = NETWORKS[name]()
    return {k: list(v.shape) for k, v in net.state_dict().items()}


def _digest(shapes):
    lines = "\n".join(f"{k} {tuple(v)}" for k, v in sorted(shapes.items()))
    return {"count": len(shapes), "sha256": hashlib.sha256(lines.encode()).hexdigest()}


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_key_snapshot(name):
    digest = _digest(_shapes(name))
    if os.environ.get("GFPGAN_UPDATE_SNAPSHOTS") == "1":
        data = json.loads(SNAPSHOT.read_text()) if SNAPSHOT.exists() else {}
        data[name] = digest
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    expected = json.loads(SNAPSHOT.read_text())[name]
    assert digest == expected, f"{name}: state-dict keys/shapes changed; official checkpoints would not load"


def test_released_clean_checkpoint_keys():
    s = _shapes("GFPGANv1Clean_512_cm2")
    assert s["conv_body_first.weight"] == [32, 3, 1, 1]
    assert s["final_linear.weight"] == [8192, 4096]
    assert s["stylegan_decoder.constant_input.weight"] == [1, 512, 4, 4]
    assert s["stylegan_decoder.style_conv1.bias"] == [1, 512, 1, 1]
    assert s["stylegan_decoder.style_convs.13.modulated_conv.weight"] == [1, 64, 64, 3, 3]  # 5-D on disk
    assert s["stylegan_decoder.noises.noise14"] == [1, 1, 512, 512]
    assert s["condition_scale.6.2.weight"] == [32, 32, 3, 3]
    assert "stylegan_decoder.style_mlp.15.weight" in s and "conv_body_down.6.skip.weight" in s
    # parameters + noise buffers = the size of the released v1.3/v1.4 files (87,143,276 floats)
    assert sum(torch.Size(v).numel() for v in s.values()) == 87_143_276


def test_original_checkpoint_keys():
    s = _shapes("GFPGANv1_512_cm1")
    for key in (
        "conv_body_first.0.weight",
        "conv_body_first.1.bias",
        "conv_body_down.0.conv1.0.weight",
        "conv_body_down.0.conv1.1.bias",
        "conv_body_down.0.conv2.1.weight",
        "conv_body_down.0.conv2.2.bias",
        "conv_body_down.0.skip.1.weight",
        "conv_body_up.0.conv2.weight",
        "conv_body_up.0.conv2.activation.bias",
        "conv_body_up.0.skip.weight",
        "stylegan_decoder.style_mlp.8.weight",
        "stylegan_decoder.style_convs.0.activate.bias",
        "condition_shift.0.2.bias",
    ):
        assert key in s, key
    # params + buffers of the cm=1 model; GFPGANv1.pth holds two copies (params and params_ema)
    total = sum(torch.Size(v).numel() for v in s.values())
    assert 2 * total * 4 == pytest.approx(615_378_983, rel=0.001)
