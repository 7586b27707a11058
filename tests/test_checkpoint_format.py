"""Our checkpoint format and every bad-file case, on a tiny network registered by this test."""

import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from gfpgan import legacy
from gfpgan.checkpoint import atomic_save_safetensors, atomic_save_torch, read_config, save_network
from gfpgan.errors import UserError
from gfpgan.legacy import check_state_dict, load_state_dict
from gfpgan.networks import build_network
from gfpgan.registry import ARCH_REGISTRY

ARCH = "_CheckpointTestNet"


class TinyNet(nn.Module):
    """Conv + BN (buffers, int counter) + a head whose weight is tied to a second Linear."""

    def __init__(self, channels: int = 4, hidden: int = 6):
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(channels)
        self.head = nn.Linear(channels, hidden)
        self.tied = nn.Linear(channels, hidden)
        self.tied.weight = self.head.weight  # shared storage: safetensors refuses it unless copied
        self.register_buffer("table", torch.arange(12.0).view(3, 4).t())  # non-contiguous buffer

    def forward(self, x):
        f = self.bn(self.conv(x)).mean((2, 3))
        return self.head(f) + self.tied(f) + self.table.sum()


if ARCH not in ARCH_REGISTRY:
    ARCH_REGISTRY.register(TinyNet, name=ARCH)


def _trained_net(seed=0, **kwargs):
    torch.manual_seed(seed)
    net = TinyNet(**kwargs)
    with torch.no_grad():  # non-default BN statistics, so buffers matter in the comparison
        net.bn.running_mean.uniform_(-1, 1)
        net.bn.running_var.uniform_(0.5, 2)
        net.bn.num_batches_tracked.fill_(7)
    return net.eval()


def _one_sentence(exc: UserError, path) -> str:
    msg = str(exc)
    assert str(path) in msg, msg
    assert "\n" not in msg and "Traceback" not in msg
    return msg


# ------------------------------------------------------------------------------------ round trip
def test_round_trip_rebuilds_identical_network(tmp_path):
    net = _trained_net(channels=5, hidden=3)
    path = tmp_path / "net.safetensors"
    save_network(path, net, ARCH, {"channels": 5, "hidden": 3}, extra={"iter": 42})
    config = read_config(path)
    assert config == {"format": "gfpgan-video/1", "arch": ARCH, "kwargs": {"channels": 5, "hidden": 3},
                      "extra": {"iter": 42}}
    back = build_network(path)
    assert isinstance(back, TinyNet) and not back.training
    assert back.head.weight is back.tied.weight  # the tie survives: both keys load into one tensor
    for k, v in net.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(back(x), net(x))
    assert back.bn.num_batches_tracked.item() == 7


def test_fp16_file_is_smaller_and_loads_back_in_float32(tmp_path):
    net = _trained_net(channels=64, hidden=64)
    full, half = tmp_path / "full.safetensors", tmp_path / "half.safetensors"
    save_network(full, net, ARCH, {"channels": 64, "hidden": 64})
    save_network(half, net, ARCH, {"channels": 64, "hidden": 64}, dtype=torch.float16)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    assert read_config(half)["extra"]["dtype"] == "float16"
    sd = load_state_dict(half)
    assert sd["conv.weight"].dtype == torch.float16 and sd["bn.num_batches_tracked"].dtype == torch.int64
    back = build_network(half)
    assert back.conv.weight.dtype == torch.float32
    assert torch.equal(back.conv.weight, net.conv.weight.half().float())
    assert not torch.equal(back.conv.weight, net.conv.weight)  # really rounded, not a copy


def test_failed_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "net.safetensors"
    save_network(path, _trained_net(1), ARCH, {})
    before = path.read_bytes()

    def broken_save(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", broken_save)
    with pytest.raises(OSError):
        save_network(path, _trained_net(2), ARCH, {})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.safetensors"]


def test_atomic_writers_round_trip_and_permissions(tmp_path):
    state = {"iter": 3, "opt": {"lr": torch.tensor(0.5)}, "names": ["a", "b"]}
    atomic_save_torch(state, tmp_path / "s.state")
    back = torch.load(tmp_path / "s.state", weights_only=True)
    assert back["iter"] == 3 and back["names"] == ["a", "b"] and back["opt"]["lr"].item() == 0.5
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "s.state").stat().st_mode & 0o777 == 0o666 & ~umask
    base = torch.arange(6.0)
    atomic_save_safetensors({"a": base, "b": base.view(2, 3).t(), "c": base[2:4]}, tmp_path / "t.safetensors",
                            metadata={"k": "v"})
    sd = load_state_dict(tmp_path / "t.safetensors")
    assert torch.equal(sd["b"], base.view(2, 3).t()) and torch.equal(sd["c"], torch.tensor([2.0, 3.0]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.state", "t.safetensors"]


# ---------------------------------------------------------------------------------- .pth loading
def test_pth_key_preference_and_forcing(tmp_path):
    a, b = _trained_net(1).state_dict(), _trained_net(2).state_dict()
    torch.save({"params": a, "params_ema": b}, tmp_path / "both.pth")
    torch.save({"params": a}, tmp_path / "params.pth")
    torch.save(a, tmp_path / "bare.pth")
    w = "conv.weight"
    assert torch.equal(load_state_dict(tmp_path / "both.pth")[w], b[w])  # params_ema wins
    assert torch.equal(load_state_dict(tmp_path / "both.pth", key="params")[w], a[w])
    assert torch.equal(load_state_dict(tmp_path / "params.pth")[w], a[w])
    assert torch.equal(load_state_dict(tmp_path / "bare.pth")[w], a[w])
    assert legacy.load_checkpoint(tmp_path / "bare.pth")[1] is None
    assert legacy.load_checkpoint(tmp_path / "both.pth", prefer="params")[1] == "params"
    assert legacy.load_checkpoint(tmp_path / "params.pth", prefer="params_ema")[1] == "params"
    with pytest.raises(UserError, match="no key 'params_ema'"):
        load_state_dict(tmp_path / "params.pth", key="params_ema")
    with pytest.raises(UserError, match="bare state dict"):
        load_state_dict(tmp_path / "bare.pth", key="params")


def test_pth_ddp_prefix_and_legacy_format(tmp_path):
    net = _trained_net(3)
    sd = {f"module.{k}": v for k, v in net.state_dict().items()}
    torch.save({"params": sd}, tmp_path / "ddp.pth", _use_new_zipfile_serialization=False)
    assert tmp_path.joinpath("ddp.pth").read_bytes()[:1] == b"\x80"  # really the legacy format
    back = load_state_dict(tmp_path / "ddp.pth")
    assert set(back) == set(net.state_dict())
    model = TinyNet()
    check_state_dict(model, back, "ddp.pth")
    model.load_state_dict(back)
    assert torch.equal(model.conv.bias, net.conv.bias)


# ---------------------------------------------------------------------------------- bad files
class Opaque:
    """A class that a weights_only unpickler must refuse."""


def _bad_files(tmp_path):
    good = tmp_path / "good.pth"
    torch.save({"params": _trained_net().state_dict()}, good)
    ours = tmp_path / "ours.safetensors"
    save_network(ours, _trained_net(), ARCH, {})
    cases = {
        "missing": (tmp_path / "nope.pth", "not found"),
        "directory": (tmp_path, "not a file"),
        "empty": (tmp_path / "empty.pth", "empty"),
        "png": (tmp_path / "face.pth", "PNG image"),
        "text": (tmp_path / "notes.pth", "text file"),
        "truncated zip": (tmp_path / "cut.pth", "truncated"),
        "truncated safetensors": (tmp_path / "cut.safetensors", "truncated"),
        "unsafe pickle": (tmp_path / "unsafe.pth", "weights_only=True"),
        "not a dict": (tmp_path / "list.pth", "not a state dict"),
        "no state dict": (tmp_path / "meta.pth", "holds no state dict"),
    }
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "face.pth").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    (tmp_path / "notes.pth").write_text("these are not weights\n")
    (tmp_path / "cut.pth").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (tmp_path / "cut.safetensors").write_bytes(ours.read_bytes()[:-40])
    torch.save({"params": _trained_net().state_dict(), "opt": Opaque()}, tmp_path / "unsafe.pth")
    torch.save([torch.zeros(2)], tmp_path / "list.pth")
    torch.save({"iter": 5, "lr": 0.1}, tmp_path / "meta.pth")
    return cases


@pytest.mark.parametrize("case", ["missing", "directory", "empty", "png", "text", "truncated zip",
                                  "truncated safetensors", "unsafe pickle", "not a dict", "no state dict"])
def test_bad_file_gives_one_clear_sentence(tmp_path, case):
    path, words = _bad_files(tmp_path)[case]
    with pytest.raises(UserError) as info:
        load_state_dict(path)
    assert words in _one_sentence(info.value, path)
    with pytest.raises(UserError):  # the same through the network builder
        build_network(path)


def test_bad_safetensors_headers(tmp_path):
    header_only = tmp_path / "hdr.safetensors"
    header_only.write_bytes(struct.pack("<Q", 500) + b"{" + b" " * 20)
    with pytest.raises(UserError, match="truncated"):
        load_state_dict(header_only)
    foreign = tmp_path / "foreign.safetensors"
    atomic_save_safetensors({"w": torch.ones(2)}, foreign)
    assert torch.equal(load_state_dict(foreign)["w"], torch.ones(2))  # readable as weights ...
    with pytest.raises(UserError, match="without a gfpgan-video config"):
        read_config(foreign)  # ... but not self-describing
    pth = tmp_path / "x.pth"
    torch.save({"w": torch.ones(1)}, pth)
    with pytest.raises(UserError, match="no embedded config"):
        read_config(pth)


def test_unknown_arch_and_bad_kwargs(tmp_path):
    net = _trained_net()
    unknown = tmp_path / "unknown.safetensors"
    save_network(unknown, net, "_CheckpointTestNett", {})
    with pytest.raises(UserError) as info:
        build_network(unknown)
    msg = _one_sentence(info.value, unknown)
    assert "_CheckpointTestNett" in msg and "did you mean '_CheckpointTestNet'" in msg
    bad_kwargs = tmp_path / "kwargs.safetensors"
    save_network(bad_kwargs, net, ARCH, {"chanels": 4})
    with pytest.raises(UserError, match="kwargs it does not accept"):
        build_network(bad_kwargs)


def test_key_mismatch_lists_missing_unexpected_and_shapes(tmp_path):
    sd = _trained_net().state_dict()
    sd.pop("bn.running_var")
    sd["extra.weight"] = torch.zeros(1)
    sd["conv.weight"] = torch.zeros(4, 3, 5, 5)
    with pytest.raises(UserError) as info:
        check_state_dict(TinyNet(), sd, "weights.pth")
    msg = _one_sentence(info.value, "weights.pth")
    assert "does not match TinyNet" in msg
    assert "1 missing key(s) (bn.running_var)" in msg
    assert "1 unexpected key(s) (extra.weight)" in msg
    assert "conv.weight [4, 3, 5, 5] vs [4, 3, 3, 3]" in msg
    # a wrong-architecture file saved in our format fails the same way, naming the file
    path = tmp_path / "wide.safetensors"
    save_network(path, _trained_net(channels=8), ARCH, {"channels": 4})
    wrong = r"wide.safetensors does not match TinyNet: .*conv.weight \[8, 3, 3, 3\] vs \[4, 3, 3, 3\]"
    with pytest.raises(UserError, match=wrong):
        build_network(path)
    # non-strict: missing/unexpected allowed, shapes still checked
    sd["conv.weight"] = torch.zeros(4, 3, 3, 3)
    check_state_dict(TinyNet(), sd, "weights.pth", strict=False)


def test_many_missing_keys_are_counted_not_all_listed():
    with pytest.raises(UserError) as info:
        check_state_dict(TinyNet(), {"only.this": torch.zeros(1)}, "f.pth")
    msg = str(info.value)
    assert "12 missing key(s) (table, conv.weight, conv.bias and 9 more)" in msg


def test_convert_cli_rejects_a_bad_file_without_traceback(tmp_path):
    bad = tmp_path / "face.pth"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    out = tmp_path / "out.safetensors"
    proc = subprocess.run([sys.executable, "-m", "gfpgan.tools.convert_checkpoint", str(bad), str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1
    assert "PNG image" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["face.pth"]


def test_zip_without_torch_content_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "archive.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(UserError) as info:
        load_state_dict(path)
    _one_sentence(info.value, path)


def test_loading_path_stays_light():
    """Building a network from a checkpoint must not import training code, BasicSR, LMDB or TensorBoard."""
    code = ("import sys, gfpgan.checkpoint, gfpgan.model_cards; gfpgan.model_cards.list_cards(); "
            "gfpgan.checkpoint.instantiate('GFPGANv1Clean', {'out_size': 8, 'narrow': 0.0625}); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('basicsr', 'lmdb', 'tensorboard') "
            "or m.startswith(('gfpgan.engine', 'gfpgan.models', 'gfpgan.losses', 'gfpgan.data', "
            "'torch.utils.tensorboard'))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_safetensors_whose_header_length_starts_with_0x80_is_not_taken_for_a_pickle(tmp_path):
    """1 file in 256 has a header length whose low byte is 0x80, the pickle opcode."""
    from gfpgan.checkpoint import _sniff, read_config, save_network

    net = torch.nn.Linear(2, 2)
    for pad in range(300):  # grow the metadata until the header length's low byte is 0x80
        path = tmp_path / "net.safetensors"
        save_network(path, net, "Linear", {}, extra={"pad": "x" * pad})
        if path.read_bytes()[:1] == b"\x80":
            break
    else:
        raise AssertionError("no header length with low byte 0x80 was produced")
    assert _sniff(path) == "safetensors"
    assert read_config(path)["extra"]["pad"] == "x" * pad


def test_weights_digest_of_a_channels_last_bf16_network():
    """A channels_last 1x1 weight counts as contiguous with a last stride > 1: the digest flattens
    it first, and it is the layout's-independent digest of the values."""
    from gfpgan.checkpoint import state_dict_sha256

    plain = nn.Conv2d(8, 3, 1).to(torch.bfloat16)
    last = nn.Conv2d(8, 3, 1).to(torch.bfloat16).to(memory_format=torch.channels_last)
    last.load_state_dict(plain.state_dict())
    assert state_dict_sha256(last) == state_dict_sha256(plain)
    with torch.no_grad():
        last.weight[0, 0] += 1
    assert state_dict_sha256(last) != state_dict_sha256(plain)
