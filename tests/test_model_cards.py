"""Model cards: the shipped cards' facts, lookup by name/alias/path, weights resolution and hashes."""

import hashlib
import inspect

import pytest
import torch

from gfpgan.checkpoint import save_network
from gfpgan.errors import UserError
from gfpgan.model_cards import (
    REPO_ROOT,
    ModelCard,
    list_cards,
    load_card,
    resolve_weights,
    sha256_file,
    verify_sha256,
)
from gfpgan.registry import ARCH_REGISTRY

# name -> (arch, sha256 prefix, bytes, release) as published (the publishers' release pages)
RELEASES = {
    "GFPGANv1": ("GFPGANv1", "6db3a33d", 615_378_983, "v0.1.0"),
    "GFPGANCleanv1-NoCE-C2": ("GFPGANv1Clean", "29e25ee9", 348_632_874, "v0.2.0"),
    "GFPGANv1.2": ("GFPGANv1Clean", "29e25ee9", 348_632_874, "v1.3.0"),
    "GFPGANv1.3": ("GFPGANv1Clean", "c953a88f", 348_632_874, "v1.3.0"),
    "GFPGANv1.4": ("GFPGANv1Clean", "e2cd4703", 348_632_874, "v1.3.0"),
}
# restorers of other architectures: name -> (arch, sha256 prefix, bytes, release)
OTHER_RESTORERS = {"RestoreFormer": ("RestoreFormer", "07404d44", 290_785_322, "v1.3.4")}
AUXILIARY = {
    "StyleGAN2_512_Cmul1_FFHQ_B12G4_scratch_800k": ("prior", "05f5d33d", 204_535_545),
    "arcface_resnet18": ("identity", "69554b31", None),
    "detection_Resnet50_Final": ("detector", "6d1de9c2", 109_497_761),
    "parsing_parsenet": ("parser", None, None),
    "FFHQ_eye_mouth_landmarks_512": ("landmarks", "80c0c1a7", 37_260_585),
    "vgg19-dcbb9e9d": ("vgg", "dcbb9e9d", None),
    "alexnet-owt-7be5be79": ("lpips", "7be5be79", None),
    "pt_inception-2015-12-05-6726825d": ("inception", "6726825d", None),
    "RealESRGAN_x2plus": ("upsampler", None, None),
}


@pytest.fixture(autouse=True)
def _only_shipped_cards(monkeypatch):
    monkeypatch.delenv("GFPGAN_CONFIGS", raising=False)
    monkeypatch.chdir(REPO_ROOT)


def test_shipped_cards_are_exactly_the_releases():
    cards = {c.name: c for c in list_cards()}
    assert set(cards) == set(RELEASES) | set(OTHER_RESTORERS) | set(AUXILIARY)
    for name, (arch, sha, size, release) in OTHER_RESTORERS.items():
        c = cards[name]
        assert (c.arch, c.sha256, c.size_bytes, c.release, c.kind) == (arch, sha, size, release, "restorer")
        assert c.url == f"https://github.com/TencentARC/GFPGAN/releases/download/{release}/{name}.pth"
    for name, (arch, sha, size, release) in RELEASES.items():
        c = cards[name]
        assert (c.arch, c.sha256, c.size_bytes, c.release, c.kind) == (arch, sha, size, release, "restorer")
        assert c.url == f"https://github.com/TencentARC/GFPGAN/releases/download/{release}/{name}.pth"
        assert c.weights == f"{name}.pth" and c.param_key == "params_ema"
        assert c.kwargs["out_size"] == 512 and c.kwargs["input_is_latent"] and c.kwargs["different_w"]
        assert c.kwargs["channel_multiplier"] == (1 if arch == "GFPGANv1" else 2)
    for name, (kind, sha, size) in AUXILIARY.items():
        c = cards[name]
        assert (c.kind, c.sha256, c.size_bytes) == (kind, sha, size)
        assert c.url.startswith("https://") and c.url.endswith("/" + c.weights)
        assert c.arch in (None, "ResNetArcFace")
    for c in cards.values():
        assert c.description and c.license and c.source.parent == REPO_ROOT / "configs"


def test_every_card_field_is_commented():
    for card in list_cards():
        for line in card.source.read_text().splitlines():
            if line and not line.startswith(("#", " ")) and not line.startswith("description"):
                assert "  # " in line, f"{card.source.name}: uncommented field {line!r}"


@pytest.mark.parametrize("name", list(RELEASES) + list(OTHER_RESTORERS) + ["arcface_resnet18"])
def test_card_kwargs_fit_the_registered_arch(name):
    import gfpgan.archs  # noqa: F401  (registers)

    card = load_card(name)
    cls = ARCH_REGISTRY.get(card.arch)
    inspect.signature(cls).bind(**card.kwargs)  # TypeError if a kwarg is unknown


@pytest.mark.parametrize("name,copies", [("GFPGANv1.4", 1), ("GFPGANv1", 2)])
def test_card_kwargs_reproduce_the_release_file_size(name, copies):
    """The clean files hold one fp32 state dict, the paper model two (params + params_ema): the
    cards' kwargs must rebuild networks of exactly that many floats (plus < 0.05% file overhead)."""
    import gfpgan.archs  # noqa: F401

    card = load_card(name)
    with torch.device("meta"):  # shapes only, no memory
        net = ARCH_REGISTRY.get(card.arch)(**card.kwargs)
    nbytes = copies * sum(t.numel() * t.element_size() for t in net.state_dict().values())
    assert 0 < card.size_bytes - nbytes < 0.0005 * nbytes


@pytest.mark.parametrize("query,name", [
    ("GFPGANv1.4", "GFPGANv1.4"), ("v1.4", "GFPGANv1.4"), ("1.4", "GFPGANv1.4"), ("gfpganv1.4", "GFPGANv1.4"),
    ("1.3", "GFPGANv1.3"), ("v1.2", "GFPGANv1.2"), ("1", "GFPGANv1"), ("GFPGANv1.pth", "GFPGANv1"),
    ("NoCE-C2", "GFPGANCleanv1-NoCE-C2"), ("retinaface", "detection_Resnet50_Final"),
    ("vgg19", "vgg19-dcbb9e9d"), ("arcface", "arcface_resnet18")])
def test_lookup_by_name_alias_and_file(query, name):
    assert load_card(query).name == name


def test_aliases_are_unambiguous():
    seen = {}
    for card in list_cards():
        for alias in (card.name, *card.aliases):
            assert alias.lower() not in seen, f"{alias} names both {seen[alias.lower()]} and {card.name}"
            seen[alias.lower()] = card.name


def test_unknown_name_suggests_close_ones():
    with pytest.raises(UserError) as info:
        load_card("GFPGANv1.5")
    msg = str(info.value)
    assert "unknown model card 'GFPGANv1.5'; did you mean 'GFPGANv1.4'" in msg and "\n" not in msg


def _write_card(path, **overrides):
    fields = dict(format="gfpgan-video/card-1", name="Mine", arch="GFPGANv1Clean", kwargs="{out_size: 32}",
                  weights="mine.pth", url="https://example.invalid/mine.pth", sha256="null",
                  size_bytes="null",
                  param_key="params_ema", license="MIT", description="mine", kind="restorer")
    fields.update(overrides)
    path.write_text("".join(f"{k}: {v}\n" for k, v in fields.items() if v is not None))
    return path


def test_card_from_yaml_path_and_config_dirs(tmp_path, monkeypatch):
    path = _write_card(tmp_path / "mine.yaml")
    card = load_card(path)
    assert (card.name, card.kwargs, card.source) == ("Mine", {"out_size": 32}, path)
    (tmp_path / "preset.yaml").write_text("detector: mtcnn\nupscale: 2\n")  # not a card: ignored
    (tmp_path / "broken.yaml").write_text("a: [unclosed\n")  # another tool's broken YAML: ignored
    monkeypatch.setenv("GFPGAN_CONFIGS", str(tmp_path))
    names = [c.name for c in list_cards()]
    assert "Mine" in names and "GFPGANv1.4" in names
    assert load_card("mine").source == path
    with pytest.raises(UserError, match="is not a model card"):
        load_card(tmp_path / "preset.yaml")


@pytest.mark.parametrize("overrides,words", [
    ({"sha": "abc"}, "unknown field 'sha' (did you mean 'sha256'?)"),
    ({"license": None}, "lacks field(s) license"),
    ({"sha256": "xyz12345"}, "give 8 to 64 hex digits"),
    ({"kind": "restorerr"}, "has kind 'restorerr'"),
    ({"size_bytes": "big"}, "give an integer or null"),
    ({"kwargs": "[unclosed"}, "cannot be read"),
])
def test_bad_card_yaml_is_a_clear_error(tmp_path, overrides, words):
    path = _write_card(tmp_path / "bad.yaml", **overrides)
    with pytest.raises(UserError) as info:
        load_card(path)
    assert words in str(info.value) and str(path) in str(info.value)


def _tiny_card(tmp_path, data: bytes, full_hash=False, size=True, sha=None):
    digest = hashlib.sha256(data).hexdigest()
    return ModelCard(name="T", arch=None, kwargs={}, weights="t.pth", url="https://example.invalid/t.pth",
                     sha256=sha or (digest if full_hash else digest[:8]), param_key=None,
                     size_bytes=len(data) if size else None, description="", license="", kind="prior")


def test_resolve_weights_search_order_and_message(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    card = _tiny_card(tmp_path, b"x")
    with pytest.raises(UserError) as info:
        resolve_weights(card, search_dirs=("experiments/pretrained_models", tmp_path / "cache"))
    msg = str(info.value)
    assert msg.startswith(f"t.pth not found in {tmp_path}/experiments/pretrained_models, ")
    assert f"{tmp_path / 'cache'}; download it from https://example.invalid/t.pth (sha256 {card.sha256}) " \
           "into experiments/pretrained_models/" in msg
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "t.pth").write_bytes(b"x")
    dirs = ("experiments/pretrained_models", tmp_path / "cache")
    assert resolve_weights(card, search_dirs=dirs) == tmp_path / "cache" / "t.pth"
    (tmp_path / "experiments" / "pretrained_models").mkdir(parents=True)
    (tmp_path / "experiments" / "pretrained_models" / "t.pth").write_bytes(b"x")
    assert resolve_weights(card, search_dirs=dirs) == tmp_path / "experiments" / "pretrained_models" / "t.pth"
    (tmp_path / "cache" / "t.safetensors").write_bytes(b"x")  # a converted copy wins within its folder
    assert resolve_weights(card, search_dirs=dirs[1:]) == tmp_path / "cache" / "t.safetensors"
    assert resolve_weights(card, explicit=tmp_path / "cache" / "t.pth") == tmp_path / "cache" / "t.pth"
    with pytest.raises(UserError, match="nope.pth not found; download it from"):
        resolve_weights(card, explicit=tmp_path / "nope.pth")


def test_verify_sha256_prefix_full_and_size(tmp_path):
    data = bytes(range(256)) * 4096
    path = tmp_path / "t.pth"
    path.write_bytes(data)
    full = hashlib.sha256(data).hexdigest()
    assert sha256_file(path) == full
    assert verify_sha256(path, _tiny_card(tmp_path, data)) == full
    assert verify_sha256(path, _tiny_card(tmp_path, data, full_hash=True)) == full
    with pytest.raises(UserError) as info:
        verify_sha256(path, _tiny_card(tmp_path, data, sha="deadbeef"))
    assert f"has sha256 {full[:16]}... but T expects deadbeef" in str(info.value)
    with pytest.raises(UserError, match="is 1,048,576 bytes but T is 1,048,575 bytes"):
        verify_sha256(path, _tiny_card(tmp_path, data[:-1]))
    # a converted file is checked through the source hash recorded in its header
    conv = tmp_path / "t.safetensors"
    save_network(conv, torch.nn.Linear(2, 2), "Linear", {}, extra={"source_sha256": full})
    assert verify_sha256(conv, _tiny_card(tmp_path, data, size=False)) == full
    with pytest.raises(UserError, match="expects deadbeef"):
        verify_sha256(conv, _tiny_card(tmp_path, data, sha="deadbeef"))
