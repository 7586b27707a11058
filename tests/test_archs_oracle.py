"""Parity with the reference gfpgan==1.3.8: its randomly initialised networks' state dicts load into
ours with strict=True and give the same outputs (fixed noise, fp32, CPU, max abs diff <= 1e-4)."""

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
)
from tests.oracle import require_oracle, run_oracle

pytestmark = pytest.mark.oracle
TOL = 1e-4

SMALL = dict(out_size=64, channel_multiplier=2, narrow=0.5)
GFPGAN_KW = dict(SMALL, fix_decoder=False, input_is_latent=True, different_w=True, sft_half=True)

# Builds every small reference network with a fixed seed, runs it on IN's inputs, returns state
# dicts and outputs. The stand-in fused_act lets the original-arch networks run on CPU.
SMALL_SNIPPET = """
from gfpgan.archs.gfpganv1_clean_arch import GFPGANv1Clean
from gfpgan.archs.gfpganv1_arch import GFPGANv1, FacialComponentDiscriminator
from gfpgan.archs.stylegan2_clean_arch import StyleGAN2GeneratorClean
from gfpgan.archs.arcface_arch import ResNetArcFace
from basicsr.archs.stylegan2_arch import StyleGAN2Discriminator, StyleGAN2Generator
x = IN["x"]
def keep(name, net, out):
    OUT[name + "/sd"] = net.state_dict()
    OUT[name + "/out"] = out
with torch.no_grad():
    torch.manual_seed(0)
    g = GFPGANv1Clean(**IN["gfpgan_kw"]).eval()
    keep("clean", g, g(x, return_rgb=True, randomize_noise=False)[0])
    torch.manual_seed(1)
    g = GFPGANv1Clean(out_size=64, channel_multiplier=1, narrow=0.5, fix_decoder=False).eval()
    keep("clean_plain", g, g(x, randomize_noise=False)[0])
    torch.manual_seed(2)
    g = GFPGANv1(**IN["gfpgan_kw"]).eval()
    image, rgbs = g(x, return_rgb=True, randomize_noise=False)
    keep("orig", g, image)
    OUT["orig/rgb"] = rgbs[-1]
    torch.manual_seed(3)
    g = StyleGAN2GeneratorClean(64, num_style_feat=64, narrow=0.25).eval()
    keep("sg_clean", g, g([IN["z"]], randomize_noise=False)[0])
    torch.manual_seed(4)
    g = StyleGAN2Generator(64, num_style_feat=64, channel_multiplier=1, narrow=0.25).eval()
    keep("sg_orig", g, g([IN["z"]], randomize_noise=False)[0])
    torch.manual_seed(5)
    d = StyleGAN2Discriminator(64, channel_multiplier=1, narrow=0.25)
    keep("disc", d, d(IN["x4"]))
    torch.manual_seed(6)
    d = FacialComponentDiscriminator()
    out, feats = d(IN["crop"], return_feats=True)
    keep("comp", d, out)
    OUT["comp/f0"], OUT["comp/f1"] = feats
    for se in (False, True):
        torch.manual_seed(7)
        a = ResNetArcFace("IRBlock", (2, 2, 2, 2), use_se=se)
        for m in a.modules():  # non-trivial BatchNorm statistics so eval mode is really tested
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        a.eval()
        keep(f"arc{int(se)}", a, a(IN["gray"]))
"""


@pytest.fixture(scope="module")
def small():
    require_oracle()
    g = torch.Generator().manual_seed(123)
    inputs = {
        "x": torch.rand(2, 3, 64, 64, generator=g) * 2 - 1,
        "x4": torch.rand(4, 3, 64, 64, generator=g) * 2 - 1,
        "z": torch.randn(2, 64, generator=g),
        "crop": torch.rand(2, 3, 40, 40, generator=g) * 2 - 1,
        "gray": torch.rand(2, 1, 128, 128, generator=g) * 2 - 1,
        "gfpgan_kw": GFPGAN_KW,
    }
    return inputs, run_oracle(SMALL_SNIPPET, inputs, fused_act_standin=True)


def _load(net, ref, name):
    net.load_state_dict(ref[name + "/sd"], strict=True)
    return net.eval()


def _close(a, b, tol=TOL):
    assert a.shape == b.shape
    diff = (a - b).abs().max().item()
    assert diff <= tol, f"max abs diff {diff:.3g} > {tol}"
    return diff


@torch.no_grad()
def test_gfpgan_clean_small_matches_reference(small):
    inputs, ref = small
    net = _load(GFPGANv1Clean(**GFPGAN_KW), ref, "clean")
    _close(net(inputs["x"])[0], ref["clean/out"])  # eval mode default = the fixed noise buffers
    _close(net(inputs["x"][1:])[0], ref["clean/out"][1:])  # batch-1 (per-sample weight) path


@torch.no_grad()
def test_gfpgan_clean_single_w_full_sft_matches_reference(small):
    inputs, ref = small
    net = _load(GFPGANv1Clean(out_size=64, channel_multiplier=1, narrow=0.5), ref, "clean_plain")
    _close(net(inputs["x"])[0], ref["clean_plain/out"])


@torch.no_grad()
def test_gfpgan_original_matches_reference(small):
    inputs, ref = small
    net = _load(GFPGANv1(**GFPGAN_KW), ref, "orig")
    image, rgbs = net(inputs["x"])
    _close(image, ref["orig/out"])
    _close(rgbs[-1], ref["orig/rgb"])


@torch.no_grad()
def test_stylegan2_generators_match_reference(small):
    inputs, ref = small
    clean = _load(StyleGAN2GeneratorClean(64, num_style_feat=64, narrow=0.25), ref, "sg_clean")
    _close(clean([inputs["z"]])[0], ref["sg_clean/out"])
    orig = _load(StyleGAN2Generator(64, num_style_feat=64, channel_multiplier=1, narrow=0.25), ref, "sg_orig")
    _close(orig([inputs["z"]])[0], ref["sg_orig/out"])


@torch.no_grad()
def test_discriminators_match_reference(small):
    inputs, ref = small
    disc = _load(StyleGAN2Discriminator(64, channel_multiplier=1, narrow=0.25), ref, "disc")
    _close(disc(inputs["x4"]), ref["disc/out"])
    comp = _load(FacialComponentDiscriminator(), ref, "comp")
    out, feats = comp(inputs["crop"], return_feats=True)
    _close(out, ref["comp/out"])
    _close(feats[0], ref["comp/f0"])
    _close(feats[1], ref["comp/f1"])


@torch.no_grad()
@pytest.mark.parametrize("use_se", [False, True])
def test_arcface_matches_reference(small, use_se):
    inputs, ref = small
    net = _load(ResNetArcFace("IRBlock", (2, 2, 2, 2), use_se=use_se), ref, f"arc{int(use_se)}")
    _close(net(inputs["gray"]), ref[f"arc{int(use_se)}/out"])


@pytest.mark.slow
@torch.no_grad()
def test_gfpgan_clean_v13_config_at_512_matches_reference():
    """The released v1.3/v1.4 configuration (cm=2, 512 px): strict load + output parity."""
    require_oracle()
    kw = dict(
        out_size=512,
        channel_multiplier=2,
        fix_decoder=False,
        input_is_latent=True,
        different_w=True,
        sft_half=True,
    )
    x = torch.rand(1, 3, 512, 512, generator=torch.Generator().manual_seed(0)) * 2 - 1
    ref = run_oracle(
        """
from gfpgan.archs.gfpganv1_clean_arch import GFPGANv1Clean
torch.manual_seed(0)
net = GFPGANv1Clean(**IN["kw"]).eval()
with torch.no_grad():
    OUT["out"] = net(IN["x"], return_rgb=False, randomize_noise=False)[0]
OUT["sd"] = net.state_dict()
""",
        {"x": x, "kw": kw},
    )
    with torch.device("meta"):  # skip a random init that the load overwrites anyway
        net = GFPGANv1Clean(**kw)
    net.load_state_dict(ref["sd"], strict=True, assign=True)
    out = net.eval()(x, return_rgb=False)[0]
    diff = _close(out, ref["out"])
    print(f"GFPGANv1Clean cm=2 512: max abs diff vs reference {diff:.3g}")
    assert out.abs().max() > 0.1  # a real image, not a degenerate all-zero output


def test_original_gfpganv1_at_512_cm1_has_reference_keys_and_shapes():
    """GFPGANv1.pth layout (cm=1, 512): every reference key and shape, built on the meta device."""
    require_oracle()
    kw = dict(
        out_size=512,
        channel_multiplier=1,
        fix_decoder=True,
        input_is_latent=True,
        different_w=True,
        sft_half=True,
    )
    ref = run_oracle(
        """
from gfpgan.archs.gfpganv1_arch import GFPGANv1
with torch.device("meta"):
    net = GFPGANv1(**IN["kw"])
OUT["shapes"] = {k: torch.tensor(v.shape) for k, v in net.state_dict().items()}
""",
        {"kw": kw},
        fused_act_standin=True,
    )
    with torch.device("meta"):
        ours = GFPGANv1(**kw)
    mine = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    theirs = {k: tuple(v.tolist()) for k, v in ref["shapes"].items()}
    assert sorted(mine) == sorted(theirs)
    assert mine == theirs
    assert len(mine) == 285


# The released prior StyleGAN2_512_Cmul1_FFHQ_B12G4_scratch_800k.pth: BasicSR's StyleGAN2Generator
# with these kwargs ({'params', 'params_ema'}; its size, 204,535,545 bytes, is two such state dicts).
PRIOR_512 = dict(out_size=512, num_style_feat=512, num_mlp=8, channel_multiplier=1,
                 resample_kernel=(1, 3, 3, 1), lr_mlp=0.01)


def test_stylegan2_prior_512_cmul1_loads_strictly_and_matches_reference(tmp_path):
    """Issue 27: the released prior's architecture, built by the reference with random weights,
    loads strictly into the class StyleGAN2Model trains and gives the same images; likewise the
    reference's StyleGAN2GeneratorClean (512, Cmul1); and a prior file written by StyleGAN2Model
    loads into the reference's GFPGANv1 through its own decoder_load_path."""
    from gfpgan.models.stylegan2_model import save_prior

    require_oracle()
    z = torch.randn(1, 512, generator=torch.Generator().manual_seed(0))
    small = dict(out_size=32, num_style_feat=32, channel_multiplier=1, narrow=0.25)
    torch.manual_seed(3)
    ours_small, ema_small = StyleGAN2Generator(**small), StyleGAN2Generator(**small)
    save_prior(tmp_path / "prior.pth", ours_small, ema_small)
    ref = run_oracle(
        """
from gfpgan.archs.gfpganv1_arch import GFPGANv1, StyleGAN2GeneratorSFT
from gfpgan.archs.stylegan2_clean_arch import StyleGAN2GeneratorClean
with torch.no_grad():
    torch.manual_seed(0)
    g = StyleGAN2GeneratorSFT(**IN["kw"], sft_half=True).eval()  # GFPGANv1's decoder_load_path target
    OUT["orig/sd"], OUT["orig/out"] = g.state_dict(), g([IN["z"]], [], randomize_noise=False)[0]
    del g
    torch.manual_seed(1)
    g = StyleGAN2GeneratorClean(512, num_style_feat=512, num_mlp=8, channel_multiplier=1).eval()
    OUT["clean/sd"], OUT["clean/out"] = g.state_dict(), g([IN["z"]], randomize_noise=False)[0]
    del g
    net = GFPGANv1(decoder_load_path=IN["prior"], fix_decoder=True, input_is_latent=True, different_w=True,
                   sft_half=True, **IN["small"])
    OUT["gfpgan/decoder"] = net.stylegan_decoder.state_dict()
""",
        {"z": z, "kw": dict(PRIOR_512), "small": small, "prior": str(tmp_path / "prior.pth")},
        fused_act_standin=True,
    )
    for name, cls, kw in (("orig", StyleGAN2Generator, PRIOR_512),
                          ("clean", StyleGAN2GeneratorClean, dict(out_size=512, num_style_feat=512, num_mlp=8,
                                                                  channel_multiplier=1))):
        # (the original layout's FIR kernels are non-persistent buffers: no meta-device build)
        with torch.device("meta" if name == "clean" else "cpu"):
            net = cls(**kw)
        net.load_state_dict(ref[f"{name}/sd"], strict=True, assign=True)
        out = net.eval()([z])[0]
        diff = _close(out, ref[f"{name}/out"])
        print(f"{cls.__name__} 512 Cmul1: max abs diff vs reference {diff:.3g}")
        assert out.abs().max() > 0.1
    # the released layout (BasicSR's, which StyleGAN2Model trains) is not the clean one
    assert len(ref["orig/sd"]) == 139 and set(ref["orig/sd"]) != set(ref["clean/sd"])
    assert sum(v.numel() for v in ref["orig/sd"].values()) * 4 * 2 == 204_479_672  # + pickle framing
    # our file through the reference's own decoder_load_path: its params_ema, strictly
    ema = ema_small.state_dict()
    assert ref["gfpgan/decoder"].keys() == ema.keys()
    assert all(torch.equal(ref["gfpgan/decoder"][k], ema[k]) for k in ema)
