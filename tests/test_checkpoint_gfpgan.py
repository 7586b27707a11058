"""Checkpoints of the real generators: arch inference, official layouts, conversion, model cards."""

import hashlib
import itertools
import json

import pytest
import torch

from gfpgan.archs import GFPGANv1, GFPGANv1Clean
from gfpgan.checkpoint import read_config
from gfpgan.errors import UserError
from gfpgan.legacy import infer_arch, load_checkpoint
from gfpgan.networks import build_network
from gfpgan.tools import convert_checkpoint
from tests.oracle import run_oracle

TINY = dict(num_style_feat=32, narrow=0.125, num_mlp=2, input_is_latent=True)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny networks gain nothing from threads, and on a busy 2-core machine OpenMP's spinning
    threads made each forward pass ~14x slower (1.0 s vs 0.07 s measured)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _net(cls, seed=0, **kw):
    torch.manual_seed(seed)
    return cls(**dict(TINY, **kw)).eval()


def _restore(net, x):
    with torch.no_grad():
        return net(x, return_rgb=False)[0]


def _face(size, seed=1):
    return torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# --------------------------------------------------------------------------------- arch inference
@pytest.mark.parametrize("cls,out_size,cm,different_w,sft_half", [
    (cls, s, cm, dw, sh) for cls, s, cm, (dw, sh) in itertools.product(
        (GFPGANv1Clean, GFPGANv1), (32, 64), (1, 2), ((True, True), (False, False), (True, False)))])
def test_infer_arch_recovers_the_constructor(cls, out_size, cm, different_w, sft_half):
    kw = dict(out_size=out_size, channel_multiplier=cm, different_w=different_w, sft_half=sft_half)
    sd = _net(cls, **kw).state_dict()
    arch, kwargs = infer_arch(sd)
    assert arch == cls.__name__
    for k, v in dict(TINY, **kw).items():
        if k == "channel_multiplier" and out_size < 64:
            continue  # no shape depends on it below 64 px; the arch default is used
        assert kwargs[k] == v, k
    rebuilt = cls(**kwargs).state_dict()
    assert list(rebuilt) == list(sd) and all(rebuilt[k].shape == sd[k].shape for k in sd)


def test_infer_arch_rejects_other_networks():
    with pytest.raises(UserError, match="not a GFPGAN generator"):
        infer_arch({"conv1.weight": torch.zeros(1), "fc5.weight": torch.zeros(1)})


# ----------------------------------------------------------------------- official .pth layouts
@pytest.mark.parametrize("layout", ["params_ema", "params", "bare", "both"])
@pytest.mark.parametrize("cls,size", [(GFPGANv1Clean, 32), (GFPGANv1, 32)])
def test_official_layouts_build_identical_networks(tmp_path, layout, cls, size):
    net = _net(cls, out_size=size, channel_multiplier=2, different_w=True, sft_half=True)
    other = _net(cls, seed=5, out_size=size, channel_multiplier=2, different_w=True, sft_half=True)
    sd = net.state_dict()
    obj = {"params_ema": {"params_ema": sd}, "params": {"params": sd}, "bare": sd,
           "both": {"params": other.state_dict(), "params_ema": sd}}[layout]
    path = tmp_path / "official.pth"
    torch.save(obj, path)
    back = build_network(path)
    assert type(back) is cls and not back.training
    x = _face(size)
    y = _restore(net, x)
    assert torch.equal(_restore(back, x), y)
    assert not torch.equal(_restore(other, x), y)  # the comparison can tell networks apart
    if layout == "both":
        assert torch.equal(_restore(build_network(path, key="params"), x), _restore(other, x))


# ---------------------------------------------------------------------------------- conversion
@pytest.mark.parametrize("cls,size", [(GFPGANv1Clean, 32), (GFPGANv1, 32)])
def test_conversion_round_trip_gives_identical_outputs(tmp_path, capsys, cls, size):
    net = _net(cls, out_size=size, channel_multiplier=2, different_w=True, sft_half=True)
    src, dst = tmp_path / "GFPGANtiny.pth", tmp_path / "tiny.safetensors"
    torch.save({"params_ema": net.state_dict()}, src)
    assert convert_checkpoint.main([str(src), str(dst)]) == 0
    printed = capsys.readouterr().out
    assert f"arch:   {cls.__name__} (inferred from keys and shapes)" in printed
    assert f"params: {sum(p.numel() for p in net.parameters()):,}" in printed
    config = read_config(dst)
    assert config["arch"] == cls.__name__ and config["kwargs"]["out_size"] == size
    assert config["extra"]["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert config["extra"]["source_key"] == "params_ema" and config["extra"]["source_file"] == src.name
    x = _face(size)
    assert torch.equal(_restore(build_network(dst), x), _restore(net, x))
    # refuses to overwrite, then --force replaces the file (here with an fp16 copy)
    before = dst.read_bytes()
    with pytest.raises(UserError, match="exists; pass --force"):
        convert_checkpoint.main([str(src), str(dst)])
    assert dst.read_bytes() == before
    assert convert_checkpoint.main([str(src), str(dst), "--force", "--fp16"]) == 0
    assert dst.stat().st_size < 0.6 * len(before)
    half = _restore(build_network(dst), x)
    assert not torch.equal(half, _restore(net, x)) and torch.allclose(half, _restore(net, x), atol=2e-2)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([src.name, dst.name])


def test_conversion_json_summary_and_default_output(tmp_path, capsys):
    net = _net(GFPGANv1Clean, out_size=32, different_w=True, sft_half=True)
    src = tmp_path / "model.pth"
    torch.save(net.state_dict(), src)
    assert convert_checkpoint.main([str(src), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["output"] == str(tmp_path / "model.safetensors") and summary["key"] is None
    assert summary["tensors"] == len(net.state_dict())


# ---------------------------------------------------------------------------------- model cards
def _card(tmp_path, monkeypatch, arch="GFPGANv1Clean", weights="tiny_release.pth", param_key="params_ema",
          sha256="null"):
    cards = tmp_path / "cards"
    cards.mkdir(exist_ok=True)
    (cards / "tiny.yaml").write_text(f"""
format: gfpgan-video/card-1
name: TinyGFPGAN
aliases: [tiny]
kind: restorer
arch: {arch}
kwargs: {{out_size: 32, num_style_feat: 32, channel_multiplier: 2, narrow: 0.125, num_mlp: 2,
          input_is_latent: true, different_w: true, sft_half: true}}
weights: {weights}
url: https://example.invalid/{weights}
sha256: {sha256}
size_bytes: null
param_key: {param_key}
license: test
description: a tiny card for tests
""")
    monkeypatch.setenv("GFPGAN_CONFIGS", str(cards))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "experiments" / "pretrained_models").mkdir(parents=True, exist_ok=True)
    return tmp_path / "experiments" / "pretrained_models" / weights


def test_card_builds_from_name_and_prefers_its_key(tmp_path, monkeypatch):
    weights = _card(tmp_path, monkeypatch, param_key="params")
    net, other = _net(GFPGANv1Clean, out_size=32, channel_multiplier=2, different_w=True, sft_half=True), \
        _net(GFPGANv1Clean, seed=3, out_size=32, channel_multiplier=2, different_w=True, sft_half=True)
    torch.save({"params": net.state_dict(), "params_ema": other.state_dict()}, weights)
    x = _face(32)
    assert torch.equal(_restore(build_network("tiny"), x), _restore(net, x))  # the card's key, not EMA
    assert torch.equal(_restore(build_network(str(weights), card="TinyGFPGAN", key="params_ema"), x),
                       _restore(other, x))
    # the converter finds the card by the weights file name, and resolve_weights then prefers ours
    assert convert_checkpoint.main([str(weights)]) == 0
    assert read_config(weights.with_suffix(".safetensors"))["extra"]["card"] == "TinyGFPGAN"
    assert load_checkpoint(weights.with_suffix(".safetensors"))[1] is None
    assert torch.equal(_restore(build_network("TinyGFPGAN"), x), _restore(net, x))


def test_wrong_card_names_the_real_architecture(tmp_path, monkeypatch):
    weights = _card(tmp_path, monkeypatch)
    orig = _net(GFPGANv1, out_size=32, different_w=True, sft_half=True)
    torch.save({"params_ema": orig.state_dict()}, weights)
    with pytest.raises(UserError) as info:
        build_network("tiny")
    msg = str(info.value)
    assert str(weights) in msg and "does not match GFPGANv1Clean" in msg
    assert "the file looks like a GFPGANv1 checkpoint" in msg
    with pytest.raises(UserError, match="looks like a GFPGANv1 checkpoint"):
        convert_checkpoint.main([str(weights), str(tmp_path / "out.safetensors")])
    assert not (tmp_path / "out.safetensors").exists()


def test_convert_verify_checks_the_card_hash(tmp_path, monkeypatch):
    weights = _card(tmp_path, monkeypatch, sha256='"deadbeef"')
    torch.save({"params_ema": _net(GFPGANv1Clean, out_size=32, channel_multiplier=2, different_w=True,
                                   sft_half=True).state_dict()}, weights)
    out = tmp_path / "out.safetensors"
    with pytest.raises(UserError, match="expects deadbeef"):
        convert_checkpoint.main([str(weights), str(out), "--verify"])
    assert not out.exists()
    assert convert_checkpoint.main([str(weights), str(out)]) == 0  # without --verify: hash only recorded
    other = tmp_path / "other.pth"
    other.write_bytes(weights.read_bytes())
    with pytest.raises(UserError, match="--verify needs a model card"):
        convert_checkpoint.main([str(other), str(tmp_path / "o.safetensors"), "--verify"])


def test_missing_weights_say_where_to_download(tmp_path, monkeypatch):
    _card(tmp_path, monkeypatch)
    with pytest.raises(UserError) as info:
        build_network("tiny")
    msg = str(info.value)
    assert "tiny_release.pth not found in" in msg and "https://example.invalid/tiny_release.pth" in msg


# ------------------------------------------------------------------------- reference checkpoints
@pytest.mark.oracle
def test_reference_networks_saved_as_official_files_load_and_match(tmp_path):
    """State dicts made by gfpgan==1.3.8 itself load by inference alone and give its outputs."""
    x = _face(32)
    ref = run_oracle("""
        from gfpgan.archs.gfpganv1_clean_arch import GFPGANv1Clean
        from gfpgan.archs.gfpganv1_arch import GFPGANv1
        kw = dict(num_style_feat=32, narrow=0.125, num_mlp=2, input_is_latent=True, different_w=True,
                  sft_half=True)
        torch.manual_seed(0)
        clean = GFPGANv1Clean(out_size=32, channel_multiplier=2, fix_decoder=False, **kw).eval()
        orig = GFPGANv1(out_size=32, channel_multiplier=1, **kw).eval()
        with torch.no_grad():
            OUT['clean_y'] = clean(IN['x'], return_rgb=False, randomize_noise=False)[0]
            OUT['orig_y'] = orig(IN['x'], return_rgb=False, randomize_noise=False)[0]
        OUT['clean'] = clean.state_dict()
        OUT['orig'] = orig.state_dict()
    """, {"x": x}, fused_act_standin=True)
    torch.save({"params_ema": ref["clean"]}, tmp_path / "clean.pth")
    torch.save({"params": ref["orig"], "params_ema": ref["orig"]}, tmp_path / "orig.pth")
    clean, orig = build_network(tmp_path / "clean.pth"), build_network(tmp_path / "orig.pth")
    assert type(clean) is GFPGANv1Clean and type(orig) is GFPGANv1
    torch.testing.assert_close(_restore(clean, x), ref["clean_y"], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(_restore(orig, x), ref["orig_y"], atol=1e-5, rtol=1e-4)
