"""The generator's precision paths: the choice per CPU (simulated feature flags), each path's output
against fp32 within its stated tolerance, and the layout fix that makes bf16 fast."""

import math

import pytest
import torch

from gfpgan import precision as P
from gfpgan.archs.gfpgan_arch import GFPGANv1, GFPGANv1Clean
from gfpgan.archs.stylegan2_arch import StyleConv
from gfpgan.errors import UserError
from gfpgan.inference.faces.model import load_face_model

TINY = dict(out_size=64, num_style_feat=64, channel_multiplier=1, narrow=0.25, num_mlp=2,
            input_is_latent=True, different_w=True, sft_half=True)
AMX = {"amx_bf16", "amx_tile", "avx512f"}


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a.float() - b.float()) / 2).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(1 / mse)


def faces(size: int, batch: int = 2) -> torch.Tensor:
    import cv2
    import skimage.data

    img = cv2.resize(skimage.data.astronaut(), (size, size), interpolation=cv2.INTER_AREA)
    x = torch.from_numpy(img).permute(2, 0, 1).float().div(127.5).sub(1)
    return torch.stack([x, x.flip(-1)][:batch])


def tiny(cls=GFPGANv1Clean, seed=0):
    torch.manual_seed(seed)
    net = cls(**TINY).eval()
    for p in net.stylegan_decoder.parameters():  # a noise strength as trained weights have
        if p.numel() == 1:
            p.data.fill_(0.1)
    return net


@pytest.fixture
def native_bf16(monkeypatch):
    """This CPU as one with AMX-BF16 (where it has none, oneDNN emulates bf16: same values, slower)."""
    monkeypatch.setattr(P, "cpu_features", lambda: frozenset({"amx_bf16"}))


@pytest.mark.parametrize("flags, name", [
    ({"amx_bf16", "avx512_bf16"}, "bf16"),  # Sapphire Rapids and later Xeons
    ({"avx512_bf16"}, "bf16"),  # AMD Zen 4 / EPYC Genoa, Cooper Lake: native bf16 without AMX
    ({"avx512f", "avx2"}, "fp32"),  # Skylake-X, Zen 3: bf16 would be emulated, many times slower
    (set(), "fp32"),  # ARM, or a CPU that reports nothing
])
def test_auto_follows_the_cpu(flags, name):
    chosen = P.choose_precision("auto", "cpu", features=flags)
    assert (chosen.name, chosen.dtype, chosen.channels_last) == (
        name, {"bf16": torch.bfloat16, "fp32": torch.float32}[name], name == "bf16")


def test_explicit_choices_and_refusals():
    assert P.choose_precision("fp32", "cpu", features=AMX) == P.Precision(
        "fp32", torch.float32, False, "asked for")  # the reference's computation, even with AMX
    assert P.choose_precision("bf16", "cpu", features=AMX).dtype == torch.bfloat16
    assert P.choose_precision("auto", "cuda").name == "fp32"  # the GPU default is unchanged
    assert P.choose_precision("fp16", "cuda").dtype == torch.float16
    # auto keeps a layout not measured faithful in bf16 in fp32 even on an AMX CPU
    assert P.choose_precision("auto", "cpu", features=AMX, bf16_faithful=False).name == "fp32"
    with pytest.raises(UserError, match="no native bf16"):
        P.choose_precision("bf16", "cpu", features={"avx512f"})
    with pytest.raises(UserError, match="fp16 is for CUDA"):
        P.choose_precision("fp16", "cpu", features=AMX)
    with pytest.raises(UserError, match="is not one of"):
        P.choose_precision("int8", "cpu")


def test_cpu_features_agree_with_pytorchs_cpuinfo():
    """/proc/cpuinfo's flags (what the choice reads) against PyTorch's own cpuinfo queries."""
    found = P.cpu_features()
    assert found <= P.NATIVE_BF16_FLAGS
    assert ("avx512_bf16" in found) == torch.cpu._is_avx512_bf16_supported()
    assert ("amx_bf16" in found) == torch.cpu._is_amx_tile_supported()


def test_fp32_is_the_plain_forward_bit_for_bit():
    net, x = tiny(), faces(64)
    with torch.inference_mode():
        want = net(x, return_rgb=False, randomize_noise=False)[0]
    model = load_face_model(net, device="cpu", precision="fp32")
    assert model.net is net  # fp32 runs the caller's module itself
    assert torch.equal(model(x), want)


def test_bf16_within_tolerance_and_the_callers_module_untouched(native_bf16):
    net, x = tiny(), faces(64)
    with torch.inference_mode():
        want = net(x, return_rgb=False, randomize_noise=False)[0]
    model = load_face_model(net, device="cpu")  # auto, on a CPU with native bf16
    assert model.precision.name == "bf16" and model.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in net.parameters())  # a copy was converted
    got = model(x)
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert 40 < psnr(got, want) < 80  # bf16: close to fp32, and really not fp32


def test_auto_keeps_the_original_layout_in_fp32(native_bf16):
    model = load_face_model(tiny(GFPGANv1), device="cpu")
    assert model.precision.name == "fp32"
    assert "not one measured faithful" in model.precision.reason


def test_batch_one_keeps_a_plain_channels_last_layout():
    """A batch of one folded and unfolded by view() got a degenerate batch stride, which sent the
    next bilinear upsampling down a strided path 10x slower (half the bf16 forward's time)."""
    conv = StyleConv(16, 16, 3, 8).eval().to(torch.bfloat16)
    x = torch.randn(1, 16, 12, 12).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        out = conv(x, torch.randn(1, 8).to(torch.bfloat16))
    assert out.stride() == (16 * 12 * 12, 1, 12 * 16, 16)


@pytest.mark.slow
def test_512_generator_bf16_on_a_real_face(native_bf16):
    """The released architecture at full size (random weights, noise on): 51 dB from fp32, above
    the 40 dB floor with room. The demodulation factors and the RGB skip chain in fp32 are what
    give it: in bf16 they leave 47 dB and 50 dB."""
    torch.manual_seed(0)
    net = GFPGANv1Clean(out_size=512, channel_multiplier=2, input_is_latent=True, different_w=True,
                        sft_half=True).eval()
    for p in net.stylegan_decoder.parameters():
        if p.numel() == 1:
            p.data.fill_(0.1)
    x = faces(512, batch=1)
    with torch.inference_mode():
        want = net(x, return_rgb=False)[0]
    got = load_face_model(net, device="cpu")(x)
    assert 50.5 < psnr(got, want) < 80


def test_gfpganers_model_runs_a_bf16_copy_that_follows_the_network(native_bf16):
    """``GFPGANer.gfpgan`` stays the caller's fp32 network (callers run it, load weights into it);
    the faces go through a bf16 copy that is made again when those weights change."""
    from gfpgan.compat.archs import ReferenceFaceModel

    net, x = tiny(), faces(64)
    model = ReferenceFaceModel(net, 64)
    first = model(x)
    assert all(p.dtype == torch.float32 for p in net.parameters())
    with torch.no_grad():
        net.stylegan_decoder.to_rgbs[-1].bias.add_(0.5)  # e.g. load_state_dict of other weights
        want = net(x, return_rgb=False, randomize_noise=False)[0]
    second = model(x)
    assert 40 < psnr(second, want) < 80
    assert (second - first).mean().item() == pytest.approx(0.5, abs=0.05)
    exact = ReferenceFaceModel(net, 64, precision="fp32")
    assert torch.equal(exact(x), want)
