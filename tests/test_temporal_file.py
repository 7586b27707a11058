"""Temporal files: adapter-only or with the base, the base checked by its weights' sha256."""

import pytest
import torch

from gfpgan.archs.gfpgan_arch import GFPGANv1Clean
from gfpgan.archs.temporal_arch import TemporalGFPGAN
from gfpgan.checkpoint import save_network
from gfpgan.errors import UserError
from gfpgan.temporal_file import load_temporal, read_temporal_config, save_temporal

KW = dict(out_size=32, num_style_feat=16, channel_multiplier=1, narrow=0.125, num_mlp=2)


def trained(seed=0):
    torch.manual_seed(seed)
    net = TemporalGFPGAN(GFPGANv1Clean(**KW).eval(), num_scales=2, hidden_channels=8)
    with torch.no_grad():
        for p in net.proj.parameters():  # as after training: the adapter is not zero any more
            p.normal_(0, 0.05)
    return net.eval()


def run_clip(net, x, rel):
    with torch.no_grad():
        return net.forward_clip(x, rel)[0]


def test_adapter_only_file_round_trips_on_its_base_and_refuses_another(tmp_path):
    net = trained()
    path = tmp_path / "temporal.safetensors"
    save_temporal(path, net, base_name="tiny.safetensors")
    cfg = read_temporal_config(path)
    assert cfg["kwargs"] == {"num_scales": 2, "hidden_channels": 8, "gate_sharpness": 50.0}
    assert not any(k.startswith("base.") for k in
                   __import__("gfpgan.checkpoint", fromlist=["x"]).load_safetensors(path))
    torch.manual_seed(0)
    same_base = GFPGANv1Clean(**KW).eval()  # the same weights, built again
    back = load_temporal(path, same_base)
    x = torch.rand(1, 3, 3, 32, 32) * 2 - 1
    rel = torch.eye(2, 3).expand(1, 3, 2, 3).clone()
    assert torch.equal(run_clip(back, x, rel), run_clip(net, x, rel))
    fresh = TemporalGFPGAN(same_base, num_scales=2, hidden_channels=8).eval()
    assert not torch.equal(run_clip(fresh, x, rel), run_clip(back, x, rel))  # the adapter loaded
    torch.manual_seed(1)
    with pytest.raises(UserError, match=r"was trained on tiny.safetensors .*give that base"):
        load_temporal(path, GFPGANv1Clean(**KW))
    with pytest.raises(UserError, match="holds only the temporal module"):
        load_temporal(path)


def test_a_file_with_its_base_loads_alone_and_other_files_are_refused(tmp_path):
    net = trained()
    path = tmp_path / "both.safetensors"
    save_temporal(path, net, base_name="tiny", include_base=True, base_arch="GFPGANv1Clean",
                  base_kwargs=KW)
    back = load_temporal(path)
    x = torch.rand(1, 2, 3, 32, 32) * 2 - 1
    rel = torch.eye(2, 3).expand(1, 2, 2, 3).clone()
    assert torch.equal(run_clip(back, x, rel), run_clip(net, x, rel))
    plain = tmp_path / "plain.safetensors"
    save_network(plain, net.base, "GFPGANv1Clean", KW)
    with pytest.raises(UserError, match="is not a temporal file .*GFPGANv1Clean"):
        load_temporal(plain)
