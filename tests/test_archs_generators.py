"""GFP-GAN and StyleGAN2 generators: shapes across sizes, fixed-noise determinism, SFT, the prior
loading and freezing, gradients, and agreement of the batch-1 and batched modulation paths."""

import pytest
import torch

from gfpgan.archs import GFPGANv1, GFPGANv1Clean, StyleGAN2Generator, StyleGAN2GeneratorClean
from gfpgan.archs.stylegan2_arch import modulated_conv
from gfpgan.errors import UserError
from gfpgan.registry import ARCH_REGISTRY

KW = dict(
    num_style_feat=64,
    channel_multiplier=1,
    narrow=0.125,
    input_is_latent=True,
    different_w=True,
    sft_half=True,
    fix_decoder=False,
)


def _x(b, s, seed=0):
    return torch.rand(b, 3, s, s, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("cls", [GFPGANv1Clean, GFPGANv1])
@pytest.mark.parametrize("size", [32, 64, 128])
def test_gfpgan_shapes_and_pyramid(cls, size):
    net = cls(out_size=size, **KW).eval()
    with torch.no_grad():
        image, rgbs = net(_x(2, size))
        fast, none = net(_x(2, size), return_rgb=False)
    assert image.shape == (2, 3, size, size)
    assert [r.shape[-1] for r in rgbs] == [2**i for i in range(3, size.bit_length())]
    assert all(r.shape[:2] == (2, 3) for r in rgbs)
    assert none == []
    assert torch.equal(fast, image)  # skipping the pyramid does not change the image
    assert torch.isfinite(image).all() and image.std() > 1e-3


@pytest.mark.parametrize("cls", [GFPGANv1Clean, GFPGANv1])
def test_fixed_noise_in_eval_random_in_train(cls):
    net = cls(out_size=32, **KW)
    # give the noise a real effect (its strength starts at 0 in a fresh network)
    for name, p in net.stylegan_decoder.named_parameters():
        if name.endswith("weight") and p.numel() == 1:
            p.data.fill_(0.5)
    x = _x(1, 32)
    with torch.no_grad():
        net.eval()
        a, b = net(x)[0], net(x)[0]
        assert torch.equal(a, b)  # eval default: the stored noise buffers
        c = net(x, randomize_noise=True)[0]
        assert (c - a).abs().max() > 1e-3
        net.train()
        d, e = net(x)[0], net(x)[0]  # train default: fresh noise every call
        assert (d - e).abs().max() > 1e-3
        assert torch.equal(net(x, randomize_noise=False)[0], a)


@pytest.mark.parametrize("cls", [GFPGANv1Clean, GFPGANv1])
def test_batched_path_matches_single_samples(cls):
    net = cls(out_size=64, **KW).eval()
    x = _x(3, 64, seed=1)
    with torch.no_grad():
        batched = net(x)[0]
        single = torch.cat([net(x[i : i + 1])[0] for i in range(3)])
    assert (batched - single).abs().max() < 1e-4


@pytest.mark.parametrize("transpose", [False, True])
def test_modulated_conv_fused_equals_input_scaling(transpose):
    g = torch.Generator().manual_seed(0)
    x, w, s = (
        torch.randn(3, 8, 6, 6, generator=g),
        torch.randn(5, 8, 3, 3, generator=g),
        torch.rand(3, 8, generator=g),
    )
    bias = torch.randn(5, generator=g)
    for demod in (True, False):
        a = modulated_conv(
            x,
            w,
            s,
            demod,
            1e-8,
            gain=1.5,
            bias=None if transpose else bias,
            padding=1,
            transpose=transpose,
            fused=True,
        )
        b = modulated_conv(
            x,
            w,
            s,
            demod,
            1e-8,
            gain=1.5,
            bias=None if transpose else bias,
            padding=1,
            transpose=transpose,
            fused=False,
        )
        assert (a - b).abs().max() < 1e-4


def test_sft_changes_only_the_second_half_with_sft_half():
    gen = StyleGAN2GeneratorClean(32, num_style_feat=32, narrow=0.125, sft_half=True).eval()
    captured = []
    gen.style_convs[1].register_forward_pre_hook(lambda m, args: captured.append(args[0].clone()))
    w = torch.randn(1, 32)
    c = gen.channels["8"]
    ones = (torch.ones(1, c // 2, 8, 8), torch.zeros(1, c // 2, 8, 8))
    twos = (torch.full((1, c // 2, 8, 8), 2.0), torch.ones(1, c // 2, 8, 8))
    with torch.no_grad():
        ident = gen([w], conditions=[ones])[0]
        plain = gen([w])[0]
        gen([w], conditions=[twos])
    assert torch.allclose(ident, plain, atol=1e-6)  # scale 1 / shift 0 is the identity
    before, after = captured[1], captured[2]
    assert torch.equal(before[:, : c // 2], after[:, : c // 2])
    assert torch.allclose(after[:, c // 2 :], before[:, c // 2 :] * 2 + 1, atol=1e-5)


@pytest.mark.parametrize("cls", [StyleGAN2GeneratorClean, StyleGAN2Generator])
def test_stylegan2_latents_truncation_and_mixing(cls):
    gen = cls(64, num_style_feat=32, narrow=0.125).eval()
    z = torch.randn(2, 32)
    with torch.no_grad():
        img, lat = gen([z], return_latents=True)
        assert img.shape == (2, 3, 64, 64) and lat.shape == (2, gen.num_latent, 32)
        mean = gen.mean_latent(64)
        trunc = gen([z], truncation=0.0, truncation_latent=mean)[0]
        assert torch.allclose(trunc[0], trunc[1], atol=1e-5)  # psi=0 collapses to the mean face
        mixed, lat2 = gen([z[:1], z[1:]], inject_index=3, return_latents=True)
        assert torch.allclose(lat2[0, :3], lat[0, :3], atol=1e-5)
        assert torch.allclose(lat2[0, 3:], lat[1, 3:], atol=1e-5)
        assert (mixed - img[:1]).abs().max() > 1e-3
    assert len(gen.make_noise()) == gen.num_layers


def test_prior_loading_and_fix_decoder(tmp_path):
    prior = StyleGAN2GeneratorClean(32, num_style_feat=64, channel_multiplier=1, narrow=0.125)
    path = tmp_path / "prior.pth"
    torch.save({"params_ema": prior.state_dict()}, path)
    net = GFPGANv1Clean(
        out_size=32,
        num_style_feat=64,
        channel_multiplier=1,
        narrow=0.125,
        decoder_load_path=str(path),
        fix_decoder=True,
    )
    for k, v in prior.state_dict().items():
        assert torch.equal(net.stylegan_decoder.state_dict()[k], v)
    assert not any(p.requires_grad for p in net.stylegan_decoder.parameters())
    assert all(p.requires_grad for n, p in net.named_parameters() if not n.startswith("stylegan_decoder."))
    # the frozen decoder still passes gradients through to the encoder
    net.train()
    image, rgbs = net(_x(1, 32))
    (image.mean() + sum(r.mean() for r in rgbs)).backward()
    assert net.conv_body_first.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.stylegan_decoder.parameters())


def test_prior_loading_errors(tmp_path):
    with pytest.raises(UserError, match="missing.pth"):
        GFPGANv1Clean(
            out_size=32, num_style_feat=32, narrow=0.125, decoder_load_path=str(tmp_path / "missing.pth")
        )
    wrong = StyleGAN2Generator(32, num_style_feat=32, narrow=0.125)  # original layout into a clean decoder
    torch.save({"params_ema": wrong.state_dict()}, tmp_path / "wrong.pth")
    with pytest.raises(UserError, match="does not fit"):
        GFPGANv1Clean(
            out_size=32, num_style_feat=32, narrow=0.125, decoder_load_path=str(tmp_path / "wrong.pth")
        )


def test_original_arch_trains_with_r1_style_double_backward():
    net = GFPGANv1(out_size=32, **KW).train()
    x = _x(2, 32).requires_grad_(True)
    image, _ = net(x)
    (grad,) = torch.autograd.grad(image.square().sum(), x, create_graph=True)
    grad.square().sum().backward()
    assert net.conv_body_first[0].weight.grad.abs().sum() > 0


def test_registry_builds_official_yaml_block_and_rejects_bad_sizes():
    cfg = dict(
        type="GFPGANv1",
        out_size=32,
        num_style_feat=64,
        channel_multiplier=1,
        resample_kernel=[1, 3, 3, 1],
        decoder_load_path=None,
        fix_decoder=True,
        num_mlp=8,
        lr_mlp=0.01,
        input_is_latent=True,
        different_w=True,
        narrow=0.125,
        sft_half=True,
    )
    net = ARCH_REGISTRY.build(cfg)
    assert isinstance(net, GFPGANv1) and cfg["type"] == "GFPGANv1"
    assert net.final_linear.weight.shape[0] == (2 * 5 - 2) * 64
    for bad in (48, 4, 2048):
        with pytest.raises(ValueError, match="power of two"):
            GFPGANv1Clean(out_size=bad, num_style_feat=32, narrow=0.125)


def test_channels_last_conversion_keeps_checkpoint_layout():
    net = GFPGANv1Clean(out_size=32, **KW).eval()
    ref = {k: v.clone() for k, v in net.state_dict().items()}
    assert ref["stylegan_decoder.style_conv1.modulated_conv.weight"].ndim == 5  # the released layout
    x = _x(2, 32)
    with torch.no_grad():
        before = net(x)[0]
        net.to(memory_format=torch.channels_last)  # must not trip over the modulated weights
        after = net(x.contiguous(memory_format=torch.channels_last))[0]
    assert (after - before).abs().max() < 1e-4
    assert all(torch.equal(v, ref[k]) for k, v in net.state_dict().items())
