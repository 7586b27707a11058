"""Discriminators, ArcFace and the VGG feature extractor: shapes, values and weight loading."""

import pytest
import torch
from torch.nn import functional as F

from gfpgan.archs import (
    FacialComponentDiscriminator,
    ResNetArcFace,
    StyleGAN2Discriminator,
    VGGFeatureExtractor,
)
from gfpgan.archs.stylegan2_ops import make_resample_kernel, upfirdn2d
from gfpgan.archs.vgg_arch import vgg_layer_names
from gfpgan.errors import UserError
from gfpgan.tools.bench_train import count_ops


@pytest.mark.parametrize("size", [32, 64, 128])
def test_stylegan2_discriminator_shapes_and_minibatch_stddev(size):
    d = StyleGAN2Discriminator(size, channel_multiplier=1, narrow=0.125)
    x = torch.rand(4, 3, size, size) * 2 - 1
    out = d(x)
    assert out.shape == (4, 1) and torch.isfinite(out).all()
    # the stddev feature couples the samples of a group: changing one sample moves the others' scores
    x2 = x.clone()
    x2[0] = -x2[0]
    assert (d(x2)[1:] - out[1:]).abs().max() > 0
    with pytest.raises(ValueError, match="divisible"):
        d(torch.rand(6, 3, size, size))


def test_discriminator_r1_double_backward():
    d = StyleGAN2Discriminator(32, channel_multiplier=1, narrow=0.125)
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    (g,) = torch.autograd.grad(d(x).sum(), x, create_graph=True)
    g.square().sum().backward()
    assert d.conv_body[0][0].weight.grad.abs().sum() > 0


def test_component_discriminator_logits_and_features():
    d = FacialComponentDiscriminator()
    x = torch.rand(2, 3, 80, 80) * 2 - 1
    out, feats = d(x, return_feats=True)
    assert out.shape == (2, 1, 20, 20)
    assert [f.shape for f in feats] == [(2, 128, 40, 40), (2, 256, 20, 20)]
    out2, none = d(x)
    assert none is None and torch.equal(out, out2)
    assert d(torch.rand(1, 3, 120, 120))[0].shape == (1, 1, 30, 30)


def test_arcface_embedding_shape_eval_and_blocks():
    net = ResNetArcFace("IRBlock", (2, 2, 2, 2), use_se=False).eval()
    x = torch.rand(3, 1, 128, 128) * 2 - 1
    with torch.no_grad():
        emb = net(x)
        assert emb.shape == (3, 512)
        assert torch.allclose(net(x[:1]), emb[:1], atol=1e-4)  # eval: per-sample, no batch statistics
        assert (emb[0] - emb[1]).abs().max() > 1e-3
    assert ResNetArcFace("BasicBlock", (1, 1, 1, 1)).eval()(x[:1]).shape == (1, 512)
    with pytest.raises(ValueError, match="unknown ArcFace block"):
        ResNetArcFace("ResBlock", (2, 2, 2, 2))


def test_upfirdn2d_matches_scipy_style_reference():
    # upsample x2 with the (1,3,3,1) kernel keeps a constant image constant (away from the borders)
    k = make_resample_kernel((1, 3, 3, 1)) * 4
    x = torch.ones(1, 2, 8, 8)
    up = upfirdn2d(x, k, up=2, pad=(2, 1))
    assert up.shape == (1, 2, 16, 16)
    assert torch.allclose(up[..., 2:-2, 2:-2], torch.ones(1, 2, 12, 12))
    # a plain blur equals a depthwise conv with the flipped kernel
    x = torch.randn(1, 3, 9, 9)
    kk = torch.arange(16.0).view(4, 4)
    ref = F.conv2d(F.pad(x, [2, 1, 2, 1]), kk.flip(0, 1).expand(3, 1, 4, 4), groups=3)
    assert torch.allclose(upfirdn2d(x, kk, pad=(2, 1)), ref)


@pytest.mark.parametrize("up, down, pad", [(1, 2, (1, 1)), (2, 1, (2, 1)), (1, 1, (2, 1)),
                                           (1, 2, (2, 2)), (1, 2, (-1, 0))])
def test_upfirdn2d_first_and_second_derivatives_are_exact(up, down, pad):
    k = make_resample_kernel((1, 3, 3, 1)).double()
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64, requires_grad=True)
    f = lambda t: upfirdn2d(t, k, up=up, down=down, pad=pad)  # noqa: E731
    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))


def test_r1_through_the_discriminator_blur_costs_the_same_ops_at_any_width():
    """PyTorch's double backward of a grouped conv runs one conv per channel; ours does not."""
    k = make_resample_kernel((1, 3, 3, 1))

    def r1(channels, use_ours):
        x = torch.randn(2, channels, 16, 16, requires_grad=True)
        w = k.flip(0, 1).expand(channels, 1, 4, 4).contiguous()

        def step():
            y = upfirdn2d(x, k, down=2, pad=(1, 1)) if use_ours else F.conv2d(
                F.pad(x, [1, 1, 1, 1]), w, stride=2, groups=channels)
            (g,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
            g.square().sum().backward()
        return count_ops(step), x.grad

    torch.manual_seed(0)
    n64, g_ours = r1(64, True)
    torch.manual_seed(0)
    n_plain, g_plain = r1(64, False)
    n256, _ = r1(256, True)
    assert n64 == n256 < 60
    assert n_plain > 3 * 64  # the per-channel loop this avoids
    torch.testing.assert_close(g_ours, g_plain, rtol=1e-5, atol=1e-6)


def test_vgg_layer_taps_and_normalisation():
    torch.manual_seed(0)
    names = ["conv1_2", "relu3_4", "conv5_4"]
    vgg = VGGFeatureExtractor(names, pretrained=False, range_norm=True)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    feats = vgg(x)
    assert list(feats) == names
    assert feats["conv1_2"].shape == (1, 64, 64, 64)
    assert feats["relu3_4"].shape == (1, 256, 16, 16) and feats["relu3_4"].min() >= 0
    assert feats["conv5_4"].shape == (1, 512, 4, 4) and feats["conv5_4"].min() < 0  # before the ReLU
    assert not any(p.requires_grad for p in vgg.parameters())
    assert list(vgg.vgg_net._modules)[-1] == "conv5_4"  # cut after the deepest requested layer
    # range_norm maps [-1, 1] to [0, 1] before the ImageNet normalisation
    plain = VGGFeatureExtractor(names, pretrained=False)
    plain.load_state_dict(vgg.state_dict())
    assert torch.allclose(plain((x + 1) / 2)["conv1_2"], feats["conv1_2"], atol=1e-5)
    with pytest.raises(ValueError, match="unknown VGG layer"):
        VGGFeatureExtractor(["conv9_9"], pretrained=False)


def test_vgg_loads_torchvision_file_and_names_missing_one(tmp_path, monkeypatch):
    ref = VGGFeatureExtractor(["conv5_4"], pretrained=False)
    names = vgg_layer_names("vgg19")
    # a torchvision-style state dict: features.<index>.{weight,bias} (+ classifier keys, ignored)
    state = {
        f"features.{names.index(n)}.{k}": v.clone() + 1
        for n, layer in ref.vgg_net.named_children()
        for k, v in layer.state_dict().items()
    }
    state["classifier.0.weight"] = torch.zeros(2, 2)
    path = tmp_path / "vgg19-dcbb9e9d.pth"
    torch.save(state, path)
    vgg = VGGFeatureExtractor(["conv5_4"], weights_path=str(path))
    assert torch.equal(vgg.vgg_net.conv1_1.weight, ref.vgg_net.conv1_1.weight + 1)
    # the torch hub cache is the default location
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    with pytest.raises(UserError, match=r"vgg19-dcbb9e9d\.pth.*https://download\.pytorch\.org/models/vgg19"):
        VGGFeatureExtractor(["conv1_1"])
    (tmp_path / "home" / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "home" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth").write_bytes(path.read_bytes())
    assert torch.equal(VGGFeatureExtractor(["conv1_1"]).vgg_net.conv1_1.bias, ref.vgg_net.conv1_1.bias + 1)


def test_discriminator_accepts_channels_last_and_matches_contiguous():
    from gfpgan.archs.discriminator_arch import StyleGAN2Discriminator

    torch.manual_seed(0)
    d = StyleGAN2Discriminator(out_size=32, channel_multiplier=1, narrow=0.25).eval()
    x = torch.randn(4, 3, 32, 32)
    ref = d(x)
    d_cl = d.to(memory_format=torch.channels_last)
    out = d_cl(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ["GFPGANv1", "GFPGANv1Clean"])
def test_every_trainable_generator_parameter_gets_a_gradient(arch):
    """DDP without find_unused_parameters needs this: the style MLP is unused with input_is_latent."""
    from gfpgan.registry import ARCH_REGISTRY

    torch.manual_seed(0)
    g = ARCH_REGISTRY.build(dict(type=arch, out_size=32, num_style_feat=32, channel_multiplier=1,
                                 fix_decoder=False, input_is_latent=True, different_w=True,
                                 narrow=0.25, sft_half=True))
    out, rgbs = g(torch.randn(2, 3, 32, 32), return_rgb=True)
    (out.square().mean() + sum(r.square().mean() for r in rgbs)).backward()
    trainable = {n: p for n, p in g.named_parameters() if p.requires_grad}
    assert trainable and not any(n.startswith("stylegan_decoder.style_mlp") for n in trainable)
    assert [n for n, p in trainable.items() if p.grad is None] == []
