"""The setup every training model shares (gfpgan.models.base): one ``__init__``, the same
``channels_last`` conversion, EMA and optimizers for GFPGANModel and TemporalGFPGANModel.

The temporal model copied GFPGANModel's ``__init__`` once and the copy drifted: it accepted
``train.channels_last`` and never converted the weights. These tests hold both models to the one
setup: a model that re-types it, or skips the conversion, fails here.
"""

import pytest
import torch

from gfpgan.archs.gfpgan_arch import GFPGANv1Clean
from gfpgan.checkpoint import save_network
from gfpgan.models import GFPGANModel, TemporalGFPGANModel, TrainingModel
from gfpgan.models.base import BASE_SCHEMA, extend_schema
from gfpgan.registry import MODEL_REGISTRY
from gfpgan.schema import Field, Section
from tests.helpers import CPU, TINY_GFPGAN, S, one_thread, tiny_batch, tiny_opt  # noqa: F401

T = 3


@pytest.fixture(scope="module")
def base_file(tmp_path_factory):
    """A random 32 px GFPGANv1Clean checkpoint: the temporal adapter's base."""
    path = tmp_path_factory.mktemp("base") / "base.safetensors"
    torch.manual_seed(0)
    save_network(path, GFPGANv1Clean(**TINY_GFPGAN), "GFPGANv1Clean", TINY_GFPGAN)
    return path


def _gfpgan(channels_last: bool):
    opt = tiny_opt(identity=False, perceptual=False)
    opt["train"]["channels_last"] = channels_last
    return GFPGANModel(opt, CPU), tiny_batch()


def _temporal(channels_last: bool, base_file):
    opt = {"network_g": {"type": "TemporalGFPGAN", "num_scales": 2, "hidden_channels": 8},
           "path": {"pretrain_network_g": str(base_file)},
           "train": {"optim_g": {"type": "Adam", "lr": 2e-3}, "channels_last": channels_last,
                     "pixel_opt": {"type": "L1Loss", "loss_weight": 1.0},
                     "temporal_opt": {"type": "TemporalLoss", "loss_weight": 10.0}, "tbptt": 2}}
    g = torch.Generator().manual_seed(1)
    clips = {"lq": torch.rand(2, T, 3, S, S, generator=g) * 2 - 1,
             "gt": torch.rand(2, T, 3, S, S, generator=g) * 2 - 1,
             "rel_affine": torch.eye(2, 3).expand(2, T, 2, 3).clone()}
    return TemporalGFPGANModel(opt, CPU), clips


def _build(kind, channels_last, base_file):
    torch.manual_seed(0)
    return _gfpgan(channels_last) if kind == "gfpgan" else _temporal(channels_last, base_file)


def test_every_model_shares_the_one_setup():
    for name in ("GFPGANModel", "TemporalGFPGANModel"):
        cls = MODEL_REGISTRY.get(name)
        assert issubclass(cls, TrainingModel), name
        assert "__init__" not in vars(cls), f"{name} re-types the shared __init__"
    assert not issubclass(TemporalGFPGANModel, GFPGANModel)  # it shares the setup, not the recipe


@pytest.mark.parametrize("kind", ["gfpgan", "temporal"])
def test_channels_last_converts_every_trainable_weight_and_trains_the_same(kind, base_file):
    plain, batch = _build(kind, False, base_file)
    model, _ = _build(kind, True, base_file)
    assert model.memory_format == torch.channels_last
    nets = {**model.trainable_nets(), "net_g_ema": model.ema.module}
    for name, net in nets.items():
        four_d = {n: p for n, p in net.named_parameters() if p.dim() == 4}
        assert any(p.shape[-1] > 1 for p in four_d.values()), name  # real convolutions among them
        for n, p in four_d.items():
            assert p.is_contiguous(memory_format=torch.channels_last), f"{name}.{n}"
        # 5-D modulated-conv weights keep their layout (channels_last is undefined for them)
        assert all(p.is_contiguous() for p in net.parameters() if p.dim() != 4), name
    if kind == "temporal":  # the base inside the adapter is converted too, not only the adapter
        names = [n for n, p in model.net_g.named_parameters() if p.dim() == 4 and p.shape[-1] > 1]
        assert any(n.startswith("base.") for n in names) and any(not n.startswith("base.") for n in names)
    # the same values as the contiguous model: one step, then the EMA restores the same faces
    assert all(torch.equal(a, b) for a, b in zip(plain.net_g.state_dict().values(),
                                                 model.net_g.state_dict().values()))
    logs_plain, logs = plain.train_step(batch, 1), model.train_step(batch, 1)
    assert logs.keys() == logs_plain.keys() and logs["skipped"] == 0.0
    for k in logs:
        assert logs[k] == pytest.approx(logs_plain[k], rel=1e-4, abs=1e-6), k
    lq = batch["lq"][:, 0] if kind == "temporal" else batch["lq"]
    torch.testing.assert_close(model.restore(lq), plain.restore(lq), rtol=1e-4, atol=1e-5)
    for name, net in model.trainable_nets().items():  # the optimizer step keeps the layout
        assert all(p.is_contiguous(memory_format=torch.channels_last)
                   for p in net.parameters() if p.dim() == 4), name


def test_extend_schema_adds_to_sections_and_keeps_the_base():
    schema = extend_schema(BASE_SCHEMA, train={"my_weight": Field(float, default=2.0)},
                           path={"pretrain_network_g": Field(str, required=True)},
                           network_x=Field(dict, default=None))
    assert isinstance(schema["train"], Section) and schema["train"].required
    assert set(schema["train"].fields) == set(BASE_SCHEMA["train"].fields) | {"my_weight"}
    assert schema["path"].fields["pretrain_network_g"].required
    assert not BASE_SCHEMA["path"].fields["pretrain_network_g"].required  # the base is not changed
    assert list(schema["path"].fields) == list(BASE_SCHEMA["path"].fields)  # replaced in place
    assert schema["network_x"].type is dict and "network_x" not in BASE_SCHEMA
