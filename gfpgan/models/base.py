"""The setup every training model shares: options, networks on the device, EMA, DDP, optimizers.

A training model (GFP-GAN, the temporal adapter, a StyleGAN2 prior ...) differs in what it
builds and in its step; everything around that is the same and lives here, once:

* its options validated against its ``option_schema`` (:data:`BASE_SCHEMA` extended with
  :func:`extend_schema`), so a model is built from a partial tree as from a validated one;
* the speed options (autocast dtype, fp16 grad scaler, ``channels_last`` weights and inputs);
* the EMA of ``net_g``, one DDP wrapper (and torch.compile call) per trainable network, the
  optimizers, schedulers and the linear warm-up;
* the trainer's protocol (:class:`gfpgan.engine.train_model.TrainModel`) besides ``train_step``:
  learning rates, state dicts, self-describing checkpoints, visuals, restoring with the EMA.

A subclass implements :meth:`TrainingModel.build` (its networks, with ``self.net_g``, and its
losses) and ``train_step``; it overrides :meth:`~TrainingModel.trainable_nets`,
:meth:`~TrainingModel.build_optimizers` or :meth:`~TrainingModel.init_ema` only where it differs.
"""

import contextlib
import logging
import warnings
from typing import Dict, Optional

import torch
from torch import nn

from gfpgan.dist import DistInfo, get_dist_info
from gfpgan.engine.ema import DEFAULT_EMA_DECAY, ModelEMA
from gfpgan.errors import UserError
from gfpgan.losses import build_loss, r1_penalty
from gfpgan.models.components import (
    TrainedNet,
    build_identity_loss,
    build_optimizer,
    build_scheduler,
    load_weights,
)
from gfpgan.registry import ARCH_REGISTRY
from gfpgan.schema import LOSS_BLOCK, OPTIM_BLOCK, SCHED_BLOCK, Block, Field, Section, validate_part

logger = logging.getLogger("gfpgan")

_AMP = {"bf16": torch.bfloat16, "fp16": torch.float16, None: None}


def weight_field(default: float = 0.0, help: str = "") -> Field:
    """A loss weight: a number >= 0."""
    return Field(float, default=default, min=0.0, nullable=False, help=help)


def weights_file(key: str, param_key: Optional[str] = None) -> Dict[str, Field]:
    """``pretrain_<key>`` (a file), ``param_key_<suffix>``, ``strict_load_<suffix>``, as BasicSR reads them.

    ``strict_load_*: ~`` is a non-strict load (BasicSR passes the None on to
    ``load_state_dict(strict=None)``); ``param_key_*: ~`` reads a bare state dict (and, where
    BasicSR would fail, a file's ``params_ema`` or ``params``).
    """
    suffix = key.replace("network_", "")
    return {f"pretrain_{key}": Field(str, default=None, path="file"),
            f"param_key_{suffix}": Field(str, default=param_key),
            f"strict_load_{suffix}": Field(bool, default=True, null=False,
                                           help="~: non-strict, as BasicSR reads it")}


# What every training model reads: the generator's optimizer, schedule, EMA and speed options.
BASE_SCHEMA = {
    "find_unused_parameters": Field(bool, default=False, help="DDP flag for every trainable network"),
    "path": Section({**weights_file("network_g", "params_ema")}),
    "train": Section({
        "optim_g": Block(None, OPTIM_BLOCK.fields, required=True, nullable=False),
        "scheduler": SCHED_BLOCK,
        "warmup_iter": Field(int, default=-1, min=-1, help="linear LR warm-up; -1: none"),
        "ema_decay": Field(float, default=DEFAULT_EMA_DECAY, min=0.0, max=1.0, nullable=False),
        "amp": Field(str, default=None, choices=[None, "bf16", "fp16"], help="autocast dtype"),
        "channels_last": Field(bool, default=False, nullable=False),
        "compile": Field((bool, str), default=False, nullable=False, choices=[
            False, True, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"],
            help="torch.compile every trainable network (true, or a torch.compile mode)"),
    }, required=True),
}


# What the face-restoration recipes (GFP-GAN, the temporal adapter) read for their per-frame losses.
RESTORATION_FIELDS = {
    "path": {
        **weights_file("network_identity"),
        "pretrain_network_vgg": Field(str, default=None, path="file",
                                      help="VGG19 weights for the perceptual loss"),
    },
    "train": {
        "pixel_opt": LOSS_BLOCK,
        "perceptual_opt": LOSS_BLOCK,
        "identity_opt": LOSS_BLOCK,
        "identity_weight": weight_field(0.0, "ArcFace identity weight"),
    },
}


def extend_schema(base: Dict[str, Field], **more: Dict[str, Field]) -> Dict[str, Field]:
    """``base`` with more fields: ``path={...}`` / ``train={...}`` add to (or replace fields of)
    those sections; any other key is a top-level field of its own."""
    out = dict(base)
    for key, fields in more.items():
        mine = out.get(key)
        if isinstance(mine, Section) and not isinstance(fields, Field):
            out[key] = Section({**mine.fields, **fields}, allow_extra=mine.allow_extra,
                               required=mine.required, nullable=mine.nullable, help=mine.help)
        else:
            out[key] = fields
    return out


class TrainingModel:
    """The shared setup; subclasses build their networks and losses and implement ``train_step``.

    Args:
        opt: Options tree (BasicSR's layout). The keys of ``option_schema`` are validated here
            (defaults filled in), so a partial tree works.
        dist_info: Rank, world size and device (``gfpgan.dist.init_dist()``); None: this process.
    """

    option_schema = BASE_SCHEMA
    net_g: nn.Module

    def __init__(self, opt: dict, dist_info: Optional[DistInfo] = None):
        import gfpgan.archs  # noqa: F401  (registers the architectures)

        self.opt = opt
        self.dist = dist_info or get_dist_info()
        self.device = self.dist.device
        own = validate_part(opt, self.option_schema, "the model options")
        self.train_opt, self.path_opt = own["train"], own.get("path") or {}
        self.find_unused = own["find_unused_parameters"]
        train = self.train_opt
        self.amp_dtype = _AMP[train["amp"]]
        self.scaler = torch.amp.GradScaler(self.device.type) if self.amp_dtype == torch.float16 else None
        self.memory_format = torch.channels_last if train["channels_last"] else torch.contiguous_format
        self._visuals: Dict[str, torch.Tensor] = {}

        self.build(own)
        self._convert_memory_format()  # before the EMA copies net_g: the copy keeps the layout
        self.ema = ModelEMA(self.net_g, decay=train["ema_decay"])
        self.init_ema()
        # one record per trainable network: plain, DDP-wrapped, compiled training call, frozen call
        self.nets = {name: self._record(net) for name, net in self.trainable_nets().items()}
        self.optimizers = self.build_optimizers()
        self.schedulers = {k: build_scheduler(o, train["scheduler"]) for k, o in self.optimizers.items()}
        self._base_lrs = {k: [g["lr"] for g in o.param_groups] for k, o in self.optimizers.items()}

    # ------------------------------------------------------------------ what a model builds
    def build(self, own: dict) -> None:
        """Build ``self.net_g`` (and any other network) and the losses from the validated ``own``."""
        raise NotImplementedError

    def trainable_nets(self) -> Dict[str, nn.Module]:
        """The plain trainable networks by save name (``net_<x>``, built from ``network_<x>``)."""
        return {"net_g": self.net_g}

    def init_ema(self) -> None:
        """Start the EMA from somewhere else than ``net_g`` (by default it is ``net_g``'s copy)."""

    def with_r1(self, l_d: torch.Tensor, real_pred: torch.Tensor, real_in: torch.Tensor, reg: bool,
                logs: Dict[str, torch.Tensor]) -> torch.Tensor:
        """``l_d`` plus, on a lazy regularisation step, the R1 penalty on the real inputs (scaled by
        ``r1_reg_weight / 2`` and by ``net_d_reg_every``, logged as ``l_d_r1``)."""
        if not reg:
            return l_d
        to = self.train_opt
        l_d_r1 = to["r1_reg_weight"] / 2 * r1_penalty(real_pred, real_in) * to["net_d_reg_every"]
        logs["l_d_r1"] = l_d_r1.detach()
        return l_d + l_d_r1

    def ema_from_pretrained(self) -> None:
        """As the reference and BasicSR: the EMA starts from the pretrained file's ``params_ema``
        when it has one (a model's :meth:`init_ema` calls this)."""
        path = self.path_opt
        if path["pretrain_network_g"] and path["param_key_g"] != "params_ema":
            try:
                load_weights(self.ema.module, path["pretrain_network_g"], "params_ema", path["strict_load_g"],
                             "path.pretrain_network_g")
            except UserError:
                logger.info("%s has no params_ema: the EMA starts from net_g", path["pretrain_network_g"])

    def build_optimizers(self) -> Dict[str, torch.optim.Optimizer]:
        """One optimizer per trainable network by save name; by default ``net_g``'s."""
        return {"net_g": build_optimizer(self._trainable(self.net_g), self.train_opt["optim_g"])}

    # ------------------------------------------------------------------ construction helpers
    def _build_net(self, key: str) -> nn.Module:
        return ARCH_REGISTRY.build(self.opt[key]).to(self.device).train()

    def _loss(self, cfg: Optional[dict]):
        return build_loss(cfg).to(self.device) if cfg else None

    def build_restoration_losses(self) -> None:
        """``cri_pix``, ``cri_perceptual`` (VGG19 from ``path.pretrain_network_vgg`` when set) and
        ``cri_identity`` (ArcFace of ``network_identity``), from :data:`RESTORATION_FIELDS`."""
        train, path = self.train_opt, self.path_opt
        self.cri_pix = self._loss(train["pixel_opt"])
        perceptual_opt = train["perceptual_opt"]
        if perceptual_opt and path["pretrain_network_vgg"] and "vgg_weights" not in perceptual_opt:
            perceptual_opt = dict(perceptual_opt, vgg_weights=path["pretrain_network_vgg"])
        self.cri_perceptual = self._loss(perceptual_opt)
        self.cri_identity = build_identity_loss(self.opt.get("network_identity"), train, path, self.device)

    def load_pretrained(self, net: nn.Module, key: str) -> None:
        """Load ``path.pretrain_<key>`` into ``net`` with its ``param_key_*`` / ``strict_load_*``."""
        suffix = key.replace("network_", "")
        path = self.path_opt
        if path.get(f"pretrain_{key}"):
            load_weights(net, path[f"pretrain_{key}"], path.get(f"param_key_{suffix}"),
                         path.get(f"strict_load_{suffix}", True), f"path.pretrain_{key}")

    @staticmethod
    def _trainable(net: nn.Module):
        # Frozen parameters (a fixed StyleGAN2 decoder) get no optimizer state at all.
        return [p for p in net.parameters() if p.requires_grad]

    def _record(self, net: nn.Module) -> TrainedNet:
        return TrainedNet.build(net, self.dist, self.find_unused, self.train_opt["compile"])

    def _convert_memory_format(self) -> None:
        if self.memory_format != torch.channels_last:
            return
        for net in self.trainable_nets().values():
            # Only 4-D weights: Module.to(memory_format=...) also hits the 5-D modulated-conv
            # weights, for which channels_last is undefined.
            for p in net.parameters():
                if p.dim() == 4:
                    p.data = p.data.contiguous(memory_format=torch.channels_last)

    # ------------------------------------------------------------------ step helpers
    def _autocast(self, enabled: bool = True):
        if self.amp_dtype is None or not enabled:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def _step(self, name: str) -> None:
        if self.scaler is not None:
            self.scaler.step(self.optimizers[name])
        else:
            self.optimizers[name].step()

    # ------------------------------------------------------------------ engine interface
    def update_learning_rate(self, it: int) -> None:
        """Step the schedulers (once per iteration); linear warm-up for ``it < warmup_iter``."""
        with warnings.catch_warnings():
            # BasicSR's order (schedule, then step) is kept on purpose; torch warns about it once.
            warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*before.*optimizer.step")
            for sched in self.schedulers.values():
                if sched is not None:
                    sched.step()
        if 0 < it < self.train_opt["warmup_iter"]:
            for name, opt in self.optimizers.items():
                for group, base in zip(opt.param_groups, self._base_lrs[name]):
                    group["lr"] = base * it / self.train_opt["warmup_iter"]

    def current_learning_rates(self) -> Dict[str, float]:
        """{optimizer name: lr of its first group}, for logging."""
        return {name: opt.param_groups[0]["lr"] for name, opt in self.optimizers.items()}

    def state_dict(self) -> dict:
        """Unwrapped networks, EMA, optimizers, schedulers and grad scaler."""
        return {
            "networks": {k: n.state_dict() for k, n in self.trainable_nets().items()},
            "net_g_ema": self.ema.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items() if s is not None},
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` saved (strict: the recipe must be the same)."""
        nets = self.trainable_nets()
        if set(state["networks"]) != set(nets):
            raise UserError(f"the training state holds networks {sorted(state['networks'])} but the "
                            f"options build {sorted(nets)}; resume with the options it was saved with.")
        for k, net in nets.items():
            net.load_state_dict(state["networks"][k])
        self.ema.load_state_dict(state["net_g_ema"])
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        for k, s in self.schedulers.items():
            if s is not None and k in state.get("schedulers", {}):
                s.load_state_dict(state["schedulers"][k])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])

    def networks_to_save(self) -> Dict[str, tuple]:
        """{name: (plain module, arch name, constructor kwargs)} for self-describing checkpoints.

        ``net_<x>`` is built from the options block ``network_<x>``; ``net_g_ema`` from ``network_g``.
        """
        def spec(key):
            kwargs = {k: v for k, v in self.opt[key].items() if k != "type"}
            kwargs.pop("decoder_load_path", None)  # the weights are in the checkpoint itself
            return self.opt[key]["type"], kwargs

        out = {"net_g": (self.net_g, *spec("network_g")), "net_g_ema": (self.ema.module, *spec("network_g"))}
        for name, net in self.trainable_nets().items():
            if name != "net_g":
                out[name] = (net, *spec("network" + name[len("net"):]))
        return out

    def generator_for_eval(self) -> nn.Module:
        """The EMA generator (eval mode, frozen), as the reference validates and releases."""
        return self.ema.module.eval()

    def eval_forward(self, net: nn.Module, lq: torch.Tensor) -> torch.Tensor:
        """The restored image of ``net`` (the evaluation generator) for the input ``lq``."""
        return net(lq)[0]

    @torch.no_grad()
    def restore(self, lq: torch.Tensor) -> torch.Tensor:
        """Restore a batch with the EMA generator.

        Args:
            lq: (B, 3, S, S) degraded faces in [-1, 1], any device.
        Returns:
            (B, 3, S, S) restored faces in [-1, 1] (float32, on the model's device).
        """
        lq = lq.to(self.device).contiguous(memory_format=self.memory_format)
        with self._autocast():
            return self.eval_forward(self.generator_for_eval(), lq).float()

    def last_visuals(self) -> Dict[str, torch.Tensor]:
        """{'lq', 'output', 'gt'}: up to 4 samples of the last step, float32 on the CPU."""
        return {k: v.float().cpu() for k, v in self._visuals.items()}
