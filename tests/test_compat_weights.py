"""Weights by name for GFPGANer: a release URL resolves to a local file first (Real-ESRGAN passes the
URL), ``gfpgan.utils.load_file_from_url`` is looked up at call time (webui replaces it), downloads
are atomic and checked against the model card, and offline the error names the file. The network
is never reached: ``urllib.request.urlopen`` is replaced in every test."""

import hashlib
import io
import urllib.error
import urllib.request

import numpy as np
import pytest

import gfpgan.utils
from gfpgan import GFPGANer
from gfpgan.compat.weights import download_weights, resolve_model_path
from gfpgan.errors import UserError
from tests.test_compat_gfpganer import _narrow_net, narrow  # noqa: F401  (fixture)

URL13 = "https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.3.pth"


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No network, an empty home (~/.cache/gfpgan) and an empty working directory."""
    calls = []

    def urlopen(url, timeout=None):
        calls.append(url)
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return calls


def test_real_esrgan_style_url_resolves_to_the_local_file(narrow, offline, tmp_path):  # noqa: F811
    local = tmp_path / "work" / "experiments" / "pretrained_models" / "GFPGANv1.3.pth"
    local.parent.mkdir(parents=True)
    local.write_bytes(narrow.read_bytes())
    assert resolve_model_path(URL13) == local
    r = GFPGANer(model_path=URL13, upscale=4.0, arch="clean", channel_multiplier=2, bg_upsampler=None)
    assert offline == [] and r.enhance(np.zeros((64, 48, 3), np.uint8))[2].shape == (256, 192, 3)


def test_reference_weights_folder_and_card_names(narrow, tmp_path):  # noqa: F811
    folder = tmp_path / "work" / "gfpgan" / "weights"  # the reference CLI's second place
    folder.mkdir(parents=True)
    (folder / "GFPGANv1.4.pth").write_bytes(narrow.read_bytes())
    assert resolve_model_path("https://example.org/x/GFPGANv1.4.pth") == folder / "GFPGANv1.4.pth"
    assert resolve_model_path("GFPGANv1.4.pth") == folder / "GFPGANv1.4.pth"
    assert resolve_model_path("v1.4").resolve() == (folder / "GFPGANv1.4.pth").resolve()  # a card name


def test_webui_replaced_load_file_from_url_is_used(monkeypatch, narrow, tmp_path):  # noqa: F811
    """AUTOMATIC1111 webui swaps gfpgan.utils.load_file_from_url to redirect model_dir."""
    original = gfpgan.utils.load_file_from_url
    seen = []

    def my_load_file_from_url(**kwargs):
        seen.append(kwargs)
        return str(narrow)

    monkeypatch.setattr(gfpgan.utils, "load_file_from_url", my_load_file_from_url)
    r = GFPGANer(model_path="https://example.org/releases/GFPGANmine.pth", upscale=1)
    assert seen and seen[0]["url"].endswith("/GFPGANmine.pth") and seen[0]["file_name"] is None
    assert r.gfpgan is not None and original is not my_load_file_from_url


def test_offline_download_is_one_sentence_and_leaves_nothing(tmp_path):
    cache = tmp_path / "home" / ".cache" / "gfpgan"
    with pytest.raises(UserError) as info:
        GFPGANer(model_path=URL13)
    msg = str(info.value)
    assert "GFPGANv1.3.pth" in msg and URL13 in msg and "experiments/pretrained_models" in msg
    assert "\n" not in msg
    assert not cache.exists() or not any(cache.iterdir())


def _serve(monkeypatch, payload):
    class Response(io.BytesIO):
        def __enter__(self):
            return self

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: Response(payload))


def test_download_is_checked_against_the_card(monkeypatch, tmp_path):
    payload = b"weights" * 1000
    cards = tmp_path / "cards"
    cards.mkdir()
    sha = hashlib.sha256(payload).hexdigest()
    (cards / "tiny.yaml").write_text(
        "format: gfpgan-video/card-1\nname: tinynet\nkind: restorer\narch: null\nkwargs: {}\n"
        f"weights: tinynet.pth\nurl: https://example.org/tinynet.pth\nsha256: '{sha}'\n"
        f"size_bytes: {len(payload)}\nparam_key: null\nlicense: test\ndescription: test\n")
    monkeypatch.setenv("GFPGAN_CONFIGS", str(cards))
    dest = tmp_path / "dl"
    _serve(monkeypatch, payload)
    path = download_weights("https://example.org/tinynet.pth", model_dir=dest, progress=False)
    assert open(path, "rb").read() == payload and sorted(p.name for p in dest.iterdir()) == ["tinynet.pth"]
    (dest / "tinynet.pth").unlink()
    _serve(monkeypatch, payload[:-1] + b"X")  # corrupt, same size
    with pytest.raises(UserError, match="sha256"):
        download_weights("https://example.org/tinynet.pth", model_dir=dest, progress=False)
    assert list(dest.iterdir()) == []  # nothing half-written
    _serve(monkeypatch, b"no card for me")
    assert open(download_weights("https://example.org/other.bin", model_dir=dest, progress=False),
                "rb").read() == b"no card for me"


def test_missing_local_path_is_one_sentence():
    with pytest.raises(UserError, match="model_path nowhere/GFPGANv1.4.pth not found"):
        resolve_model_path("nowhere/GFPGANv1.4.pth")
