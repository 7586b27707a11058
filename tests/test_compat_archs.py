"""The reference's module paths and classes: its own architecture tests' expectations (run on CPU
here, the reference gates them on CUDA), ComfyUI-style construction and calls, the meaning of
``randomize_noise`` and ``weight``, and the cheap top-level imports."""

import subprocess
import sys

import pytest
import torch

from gfpgan.archs import gfpgan_arch
from gfpgan.archs.arcface_arch import BasicBlock, Bottleneck, IRBlock, ResNetArcFace  # noqa: F401
from gfpgan.archs.gfpgan_bilinear_arch import GFPGANBilinear
from gfpgan.archs.gfpganv1_arch import FacialComponentDiscriminator, GFPGANv1, StyleGAN2GeneratorSFT
from gfpgan.archs.gfpganv1_clean_arch import GFPGANv1Clean, StyleGAN2GeneratorCSFT
from gfpgan.archs.restoreformer_arch import RestoreFormer
from gfpgan.archs.stylegan2_arch import _StyleGAN2Base
from gfpgan.archs.stylegan2_clean_arch import StyleGAN2GeneratorClean
from gfpgan.compat.archs import weight_to_strength
from gfpgan.errors import UserError

# what GFPGANer passes (the reference's utils.py)
GFPGANER_KW = dict(out_size=512, num_style_feat=512, channel_multiplier=2, decoder_load_path=None,
                   fix_decoder=False, num_mlp=8, input_is_latent=True, different_w=True, narrow=1,
                   sft_half=True)
TINY = dict(GFPGANER_KW, out_size=32, num_style_feat=32, channel_multiplier=1, narrow=0.25)


def _conditions(c=512):
    g = torch.Generator().manual_seed(0)
    c8, c16, c32 = (torch.rand(1, c, s, s, generator=g) for s in (8, 16, 32))
    return [c8, c8, c16, c16, c32, c32]


@pytest.mark.parametrize("cls,extra", [
    (StyleGAN2GeneratorSFT, dict(resample_kernel=(1, 3, 3, 1), lr_mlp=0.01)),
    (StyleGAN2GeneratorCSFT, {})])
def test_sft_generators_as_the_reference_tests_them(cls, extra):
    net = cls(out_size=32, num_style_feat=512, num_mlp=8, channel_multiplier=1, narrow=1, sft_half=False,
              **extra).eval()
    style = torch.rand(1, 512, generator=torch.Generator().manual_seed(1))
    conditions = _conditions()
    out = net([style], conditions)
    assert out[0].shape == (1, 3, 32, 32) and out[1] is None
    out = net([style], conditions, return_latents=True)
    assert len(out[1]) == 1 and out[1][0].shape == (8, 512)
    a = net([style], conditions, randomize_noise=False)[0]
    assert out[0].shape == a.shape and torch.equal(a, net([style], conditions, randomize_noise=False)[0])
    out = net([style, style], conditions, truncation=0.5, truncation_latent=style)
    assert out[0].shape == (1, 3, 32, 32) and out[1] is None
    # the flat [scale, shift, ...] list is the pairs of this project's generator
    pairs = list(zip(conditions[0::2], conditions[1::2]))
    ours = _StyleGAN2Base.forward(net, [style], conditions=pairs, randomize_noise=False)[0]
    assert torch.equal(a, ours)


def test_stylegan2_clean_as_the_reference_tests_it():
    net = StyleGAN2GeneratorClean(out_size=32, num_style_feat=512, num_mlp=8, channel_multiplier=1,
                                  narrow=0.5).eval()
    style = torch.rand(1, 512, generator=torch.Generator().manual_seed(2))
    out = net([style], input_is_latent=False)
    assert out[0].shape == (1, 3, 32, 32) and out[1] is None
    out = net([style], input_is_latent=True, return_latents=True)
    assert len(out[1]) == 1 and out[1][0].shape == (8, 512)
    assert net([style], randomize_noise=False)[0].shape == (1, 3, 32, 32)
    assert net([style, style], truncation=0.5, truncation_latent=style)[1] is None
    noise = net.make_noise()
    assert [tuple(n.shape) for n in noise] == [(1, 1, 4, 4)] + [(1, 1, s, s) for s in (8, 8, 16, 16, 32, 32)]
    assert net.get_latent(style).shape == (1, 512) and net.mean_latent(2).shape == (1, 512)


@pytest.mark.parametrize("cls,extra", [(GFPGANv1, dict(resample_kernel=(1, 3, 3, 1), lr_mlp=0.01)),
                                       (GFPGANv1Clean, {}), (GFPGANBilinear, dict(lr_mlp=0.01))])
@pytest.mark.parametrize("different_w", [False, True])
def test_restorers_as_the_reference_tests_them(cls, extra, different_w):
    net = cls(out_size=32, num_style_feat=512, channel_multiplier=1, decoder_load_path=None, fix_decoder=True,
              num_mlp=8, input_is_latent=False, different_w=different_w, narrow=1, sft_half=True,
              **extra).eval()
    out = net(torch.rand(1, 3, 32, 32))
    assert out[0].shape == (1, 3, 32, 32)
    assert [tuple(r.shape) for r in out[1]] == [(1, 3, 8, 8), (1, 3, 16, 16), (1, 3, 32, 32)]


def test_facial_component_discriminator_as_the_reference_tests_it():
    net = FacialComponentDiscriminator().eval()
    img = torch.rand(1, 3, 32, 32)
    out = net(img)
    assert len(out) == 2 and out[0].shape == (1, 1, 8, 8) and out[1] is None
    out = net(img, return_feats=True)
    assert [tuple(f.shape) for f in out[1]] == [(1, 128, 16, 16), (1, 256, 8, 8)]


@pytest.mark.parametrize("block,layers", [("IRBlock", (2, 2, 2, 2)), (BasicBlock, (1, 1, 1, 1))])
def test_arcface_as_the_reference_builds_it(block, layers):
    net = ResNetArcFace(block, layers, use_se=True).eval()
    assert net(torch.rand(1, 1, 128, 128)).shape == (1, 512)


@pytest.mark.parametrize("cls", [GFPGANv1Clean, GFPGANv1, GFPGANBilinear])
def test_gfpganer_config_has_the_state_dict_of_this_projects_network(cls):
    """The reference-named classes built as GFPGANer builds them have the released keys and shapes."""
    base = {GFPGANv1Clean: gfpgan_arch.GFPGANv1Clean}.get(cls, gfpgan_arch.GFPGANv1)
    kw = dict(GFPGANER_KW, channel_multiplier=2 if cls is not GFPGANv1 else 1)
    with torch.device("meta"):
        ours = {k: v.shape for k, v in cls(**kw).state_dict().items()}
        theirs = {k: v.shape for k, v in base(**kw).state_dict().items()}
    assert ours == theirs and len(ours) > 200


def test_comfyui_style_strict_load_and_weighted_call(tmp_path):
    """comfyui_gfpgan: build with GFPGANer's kwargs, load an official-layout file strictly, call
    ``net(t, return_rgb=False, weight=w)[0]``."""
    torch.manual_seed(0)
    src = GFPGANv1Clean(**TINY)
    with torch.no_grad():  # trained networks inject noise; fresh init has zero noise strengths
        for name, p in src.named_parameters():
            if name.endswith(".weight") and p.shape == (1,):
                p.fill_(0.3)
    torch.save({"params_ema": src.state_dict()}, tmp_path / "GFPGANv1.4.pth")
    net = GFPGANv1Clean(**TINY)
    net.load_state_dict(torch.load(tmp_path / "GFPGANv1.4.pth", weights_only=True)["params_ema"], strict=True)
    net.eval()
    t = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad():
        fixed = net(t, return_rgb=False, randomize_noise=False)[0]
        assert torch.equal(net(t, return_rgb=False, randomize_noise=False, weight=0.5)[0], fixed)
        assert torch.equal(net(t, return_rgb=False, randomize_noise=False, weight=0.2)[0], fixed)
        assert torch.allclose(net(t, return_rgb=False, randomize_noise=False, weight=1.0)[0], t)
        half = net(t, return_rgb=False, randomize_noise=False, weight=0.75)[0]
        assert torch.allclose(half, (t + fixed) / 2, atol=1e-6)
        # randomize_noise=True, the reference's default: fresh noise per call, in eval mode too
        a, b = net(t, return_rgb=False, weight=0.5)[0], net(t, return_rgb=False)[0]
        assert not torch.equal(a, b) and (a - fixed).abs().mean() < 0.5
        # this project's own default (None) is the fixed buffers in eval mode
        assert torch.equal(gfpgan_arch.GFPGANv1Clean.forward(net, t, return_rgb=False)[0], fixed)


def test_restoreformer_takes_the_reference_keywords():
    net = RestoreFormer(n_embed=16, embed_dim=32, ch=32, ch_mult=(1, 2), num_res_blocks=1,
                        attn_resolutions=(16,), resolution=32, z_channels=32, head_size=2).eval()
    t = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        out, none = net(t, return_rgb=False, weight=0.5)
        assert none is None and out.shape == t.shape
        assert torch.equal(out, net(t)[0])  # deterministic: no noise
        assert torch.allclose(net(t, weight=1.0)[0], t)
    with pytest.raises(ValueError, match="lowest resolution"):
        RestoreFormer(ch=32, ch_mult=(1, 2), resolution=32, attn_resolutions=(32,), z_channels=32)


@pytest.mark.parametrize("weight,strength", [(0.0, 1.0), (0.5, 1.0), (0.75, 0.5), (1.0, 0.0)])
def test_weight_to_strength(weight, strength):
    assert weight_to_strength(weight) == strength


@pytest.mark.parametrize("bad", [-0.1, 1.5, "strong", None])
def test_bad_weight_is_one_sentence(bad):
    with pytest.raises(UserError, match="weight .* between 0 and 1"):
        weight_to_strength(bad)


def test_top_level_names_resolve_lazily_and_import_stays_cheap():
    code = ("import sys, gfpgan; heavy = [m for m in ('torch', 'cv2', 'basicsr') if m in sys.modules]; "
            "from gfpgan import GFPGANer; from gfpgan.utils import GFPGANer as G, load_file_from_url; "
            "import gfpgan.archs.gfpganv1_clean_arch as m; "
            "print(heavy, GFPGANer is G is gfpgan.GFPGANer, gfpgan.GFPGANv1Clean is m.GFPGANv1Clean, "
            "callable(gfpgan.load_file_from_url))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[]", "True", "True", "True"]
    with pytest.raises(AttributeError):
        import gfpgan

        gfpgan.NoSuchName  # noqa: B018


REFERENCE_MODULES = ("gfpganv1_clean_arch", "gfpganv1_arch", "stylegan2_clean_arch", "gfpgan_bilinear_arch",
                     "stylegan2_bilinear_arch", "restoreformer_arch")


@pytest.mark.parametrize("module", REFERENCE_MODULES)
def test_reference_module_paths_define_nothing_and_name_one_class(module):
    """Each reference module path only re-exports gfpgan.compat.archs: its names are those classes."""
    import ast
    import importlib
    from pathlib import Path

    import gfpgan
    import gfpgan.archs
    from gfpgan.compat import archs as compat_archs

    m = importlib.import_module(f"gfpgan.archs.{module}")
    tree = ast.parse(Path(m.__file__).read_text(encoding="utf-8"))
    for node in tree.body:
        is_doc = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        is_all = isinstance(node, ast.Assign) and [t.id for t in node.targets] == ["__all__"]
        is_reexport = isinstance(node, ast.ImportFrom) and node.module == "gfpgan.compat.archs"
        assert is_doc or is_all or is_reexport, f"{module} line {node.lineno} defines something"
    assert m.__all__
    for name in m.__all__:
        obj = getattr(m, name)
        assert any(obj is v for v in vars(compat_archs).values()), f"{module}.{name}"
        if name in gfpgan.__all__:
            assert getattr(gfpgan, name) is obj  # gfpgan.GFPGANv1Clean ... the same class
    assert getattr(gfpgan.archs, module) is m  # the reference's path also as an attribute


def test_the_registry_and_gfpgan_archs_hold_the_projects_classes():
    """The names the option files build are this project's classes (its defaults, no reference
    mixin); each reference class is a subclass of the project's class of the same name."""
    import gfpgan.archs
    from gfpgan.compat import archs as compat_archs
    from gfpgan.registry import ARCH_REGISTRY

    mixins = (compat_archs.ReferenceRestorer, compat_archs.ReferenceGenerator)
    for name in ARCH_REGISTRY:
        cls = ARCH_REGISTRY.get(name)
        assert not issubclass(cls, mixins) and not cls.__module__.startswith("gfpgan.compat"), name
    for name in ("GFPGANv1Clean", "GFPGANv1", "GFPGANBilinear", "RestoreFormer", "StyleGAN2GeneratorClean",
                 "StyleGAN2GeneratorBilinear"):
        ours, theirs = getattr(gfpgan.archs, name), getattr(compat_archs, name)
        assert ARCH_REGISTRY.get(name) is ours and ours is not theirs
        assert issubclass(theirs, ours) and issubclass(theirs, mixins), name
    # the project's RestoreFormer has no fidelity weight: weight= is the reference's convention
    net = gfpgan.archs.RestoreFormer(n_embed=16, embed_dim=32, ch=32, ch_mult=(1, 2), num_res_blocks=1,
                                     attn_resolutions=(16,), resolution=32, z_channels=32, head_size=2).eval()
    t = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(net(t, weight=1.0)[0], net(t)[0])
