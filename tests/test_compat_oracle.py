"""Parity of the architectures new in this project's reference-named modules with gfpgan==1.3.8:
GFPGANBilinear (and its bilinear StyleGAN2) and RestoreFormer. The reference's randomly initialised
networks' state dicts load into ours with strict=True and give the same outputs (fp32, CPU,
max abs diff <= 1e-4); the released RestoreFormer layout has the reference's keys and shapes."""

import pytest
import torch

from gfpgan.archs.gfpgan_bilinear_arch import GFPGANBilinear
from gfpgan.archs.restoreformer_arch import RestoreFormer
from gfpgan.archs.stylegan2_bilinear_arch import StyleGAN2GeneratorBilinear
from tests.oracle import require_oracle, run_oracle

pytestmark = pytest.mark.oracle
TOL = 1e-4

BILINEAR_KW = dict(out_size=64, num_style_feat=64, channel_multiplier=2, narrow=0.5, fix_decoder=False,
                   input_is_latent=True, different_w=True, sft_half=True)
# ch_mult of length 3 at 64 px: latent 16x16, the resolution with (cross) attention
RF_KW = dict(n_embed=64, embed_dim=32, ch=32, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(16,),
             resolution=64, z_channels=32, head_size=4)

SNIPPET = """
from gfpgan.archs.gfpgan_bilinear_arch import GFPGANBilinear
from gfpgan.archs.stylegan2_bilinear_arch import StyleGAN2GeneratorBilinear
from gfpgan.archs.restoreformer_arch import RestoreFormer
x = IN["x"]
with torch.no_grad():
    torch.manual_seed(0)
    g = GFPGANBilinear(**IN["bilinear_kw"]).eval()
    image, rgbs = g(x, return_rgb=True, randomize_noise=False)
    OUT["bil/sd"], OUT["bil/out"], OUT["bil/rgb"] = g.state_dict(), image, rgbs[-1]
    torch.manual_seed(1)
    g = GFPGANBilinear(out_size=32, num_style_feat=32, narrow=0.25).eval()  # single w, full SFT
    OUT["bil1/sd"], OUT["bil1/out"] = g.state_dict(), g(x[:, :, ::2, ::2], randomize_noise=False)[0]
    torch.manual_seed(2)
    s = StyleGAN2GeneratorBilinear(32, num_style_feat=32, narrow=0.25).eval()
    OUT["sg/sd"], OUT["sg/out"] = s.state_dict(), s([IN["z"]], randomize_noise=False)[0]
    torch.manual_seed(3)
    r = RestoreFormer(**IN["rf_kw"]).eval()
    # codebook entries drawn from the latent itself, so the quantiser's choices are really tested
    h = r.quant_conv(r.encoder(x)["out"]).permute(0, 2, 3, 1).reshape(-1, IN["rf_kw"]["embed_dim"])
    r.quantize.embedding.weight.copy_(h[torch.randperm(len(h))[:IN["rf_kw"]["n_embed"]]])
    OUT["rf/sd"], OUT["rf/out"] = r.state_dict(), r(x)[0]
    OUT["rf/idx"] = r.quantize(r.quant_conv(r.encoder(x)["out"]))[2][2]
    r = RestoreFormer()
    OUT["rf512/shapes"] = {k: torch.tensor(v.shape) for k, v in r.state_dict().items()}
"""


@pytest.fixture(scope="module")
def ref():
    require_oracle()
    g = torch.Generator().manual_seed(321)
    inputs = {"x": torch.rand(2, 3, 64, 64, generator=g) * 2 - 1, "z": torch.randn(2, 32, generator=g),
              "bilinear_kw": BILINEAR_KW, "rf_kw": RF_KW}
    out = run_oracle(SNIPPET, inputs, fused_act_standin=True)
    out["IN"] = inputs
    return out


def _load(net, sd):
    net.load_state_dict(sd, strict=True)
    return net.eval()


def test_gfpgan_bilinear_matches_reference(ref):
    x = ref["IN"]["x"]
    net = _load(GFPGANBilinear(**BILINEAR_KW), ref["bil/sd"])
    with torch.no_grad():
        image, rgbs = net(x, return_rgb=True, randomize_noise=False)
    assert (image - ref["bil/out"]).abs().max() <= TOL
    assert (rgbs[-1] - ref["bil/rgb"]).abs().max() <= TOL
    assert image.abs().mean() > 0.05  # not a degenerate all-zero comparison


def test_gfpgan_bilinear_single_w_full_sft_matches_reference(ref):
    net = _load(GFPGANBilinear(out_size=32, num_style_feat=32, narrow=0.25), ref["bil1/sd"])
    with torch.no_grad():
        image = net(ref["IN"]["x"][:, :, ::2, ::2], randomize_noise=False)[0]
    assert (image - ref["bil1/out"]).abs().max() <= TOL


def test_bilinear_stylegan2_matches_reference(ref):
    net = _load(StyleGAN2GeneratorBilinear(32, num_style_feat=32, narrow=0.25), ref["sg/sd"])
    with torch.no_grad():
        out = net([ref["IN"]["z"]], randomize_noise=False)[0]
    assert (out - ref["sg/out"]).abs().max() <= TOL


def test_restoreformer_matches_reference(ref):
    x = ref["IN"]["x"]
    net = _load(RestoreFormer(**RF_KW), ref["rf/sd"])
    with torch.no_grad():
        z, _ = net.encoder(x)
        idx = net.quantize.indices(net.quant_conv(z))
        out, none = net(x)
    assert none is None
    assert torch.equal(idx, ref["rf/idx"].flatten())
    assert len(idx.unique()) > 16  # several codebook entries are in play
    assert (out - ref["rf/out"]).abs().max() <= TOL


def test_restoreformer_released_layout_has_reference_keys_and_shapes(ref):
    with torch.device("meta"):
        ours = {k: tuple(v.shape) for k, v in RestoreFormer().state_dict().items()}
    theirs = {k: tuple(v.tolist()) for k, v in ref["rf512/shapes"].items()}
    assert ours == theirs
    # one fp32 state dict of these tensors is the released file's size (290,785,322 B) less the
    # pickle's overhead (< 0.05%): the card's file holds one copy of this network
    nbytes = 4 * sum(torch.Size(s).numel() for s in ours.values())
    assert 0 < 290_785_322 - nbytes < 0.0005 * nbytes
