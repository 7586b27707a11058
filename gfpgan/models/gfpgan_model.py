"""GFP-GAN training model: networks, losses, optimizers and one generator/discriminator step.

Wang et al., CVPR 2021, "Towards Real-World Blind Face Restoration with Generative Facial Prior".
One ``train_step`` is the paper's recipe (reference v1.3.8 ``optimize_parameters``):

1. Generator: pixel L1, image-pyramid L1 on the intermediate RGB outputs (until
   ``remove_pyramid_loss``), VGG perceptual + style, global GAN (softplus), for each facial
   component (left eye, right eye, mouth) a GAN loss and a Gram-matrix style loss on its
   discriminator's features, and the ArcFace identity loss.
2. EMA of the generator.
3. Global discriminator: logistic loss, plus lazy R1 every ``net_d_reg_every`` iterations.
4. Component discriminators: GAN loss each (no R1).

Deliberate differences from the reference, all numerically neutral for the recipe:

* The pyramid loss is *removed* after ``remove_pyramid_loss`` (``return_rgb=False``), not kept
  with a 1e-12 weight. Under DDP the pyramid-only parameters are then frozen and the generator
  re-wrapped once (see ``_set_pyramid``), so no ``find_unused_parameters`` is needed.
* The generator step scores its output with the *unwrapped* discriminators (their parameters
  are frozen there, so nothing of theirs needs a gradient all-reduce); only their own steps go
  through their DDP wrappers.
* R1 shares the real forward of the D loss (one forward, one backward) instead of a second
  forward with a ``0 * real_pred`` term; gradients are the same sum.
* Both terms of a component-D loss use the component GAN loss; the reference uses the global
  softplus loss for the fake term, which equals vanilla BCE with fake label 0 (the recipe's).
* Optimizer betas come from the options (the reference hard-codes them); the recipe files spell
  the reference's values. Component crops scale with ``out_size / 512`` (see components.py).
* Optimizer steps wait until G's and D's losses are known to be finite on every rank, so a
  non-finite step skips every update and the EMA (the G step does not change D's losses).
"""

import contextlib
import logging
import math
import warnings
from typing import Dict, Optional

import torch
from torch import nn

from gfpgan.dist import DistInfo, all_ranks, get_dist_info, mean_over_ranks
from gfpgan.engine.ema import DEFAULT_EMA_DECAY, ModelEMA
from gfpgan.errors import UserError
from gfpgan.losses import build_loss, gram_matrix, r1_penalty
from gfpgan.models.components import (
    COMPONENTS,
    TrainedNet,
    build_identity_loss,
    build_optimizer,
    build_scheduler,
    crop_components,
    image_pyramid,
    load_weights,
    unused_without_pyramid,
)
from gfpgan.registry import ARCH_REGISTRY, MODEL_REGISTRY
from gfpgan.schema import LOSS_BLOCK, OPTIM_BLOCK, SCHED_BLOCK, Block, Field, Section, validate_part

logger = logging.getLogger("gfpgan")


def _weight(default=0.0, help=""):
    return Field(float, default=default, min=0.0, nullable=False, help=help)


def _weights_file(key: str, strict: bool = True) -> Dict[str, Field]:
    """``pretrain_<key>`` (a file), ``param_key_<suffix>`` and ``strict_load_<suffix>``."""
    suffix = key.replace("network_", "")
    return {f"pretrain_{key}": Field(str, default=None, path="file"),
            f"param_key_{suffix}": Field(str, default={"g": "params_ema", "d": "params"}.get(suffix)),
            f"strict_load_{suffix}": Field(bool, default=True, nullable=False)}


# The options this model reads (joined with the trainer's by gfpgan.options.train_schema).
OPTION_SCHEMA = {
    "find_unused_parameters": Field(bool, default=False, help="DDP flag for every trainable network"),
    "path": Section({
        **_weights_file("network_g"),
        **_weights_file("network_d"),
        **{f"pretrain_network_d_{c}": Field(str, default=None, path="file") for c in COMPONENTS},
        **_weights_file("network_identity"),
        "pretrain_network_vgg": Field(str, default=None, path="file",
                                      help="VGG19 weights for the perceptual loss"),
    }),
    "train": Section({
        "optim_g": Block(None, OPTIM_BLOCK.fields, required=True, nullable=False),
        "optim_d": OPTIM_BLOCK,
        "optim_component": OPTIM_BLOCK,
        "scheduler": SCHED_BLOCK,
        "warmup_iter": Field(int, default=-1, min=-1, help="linear LR warm-up; -1: none"),
        "pixel_opt": LOSS_BLOCK,
        "L1_opt": Block("loss", default={"type": "L1Loss", "loss_weight": 1.0}, help="pyramid L1"),
        "perceptual_opt": LOSS_BLOCK,
        "gan_opt": LOSS_BLOCK,
        "gan_component_opt": LOSS_BLOCK,
        "identity_opt": LOSS_BLOCK,
        "pyramid_loss_weight": _weight(0.0, "image-pyramid L1 weight"),
        "remove_pyramid_loss": Field(int, default=None, min=0, help="drop the pyramid after it"),
        "comp_style_weight": _weight(0.0, "component Gram-style weight"),
        "identity_weight": _weight(0.0, "ArcFace identity weight"),
        "r1_reg_weight": _weight(10.0, "R1 penalty weight"),
        "net_d_iters": Field(int, default=1, min=1, nullable=False),
        "net_d_init_iters": Field(int, default=0, min=0, nullable=False),
        "net_d_reg_every": Field(int, default=16, min=1, nullable=False, help="lazy R1 interval"),
        "ema_decay": Field(float, default=DEFAULT_EMA_DECAY, min=0.0, max=1.0, nullable=False),
        "amp": Field(str, default=None, choices=[None, "bf16", "fp16"], help="autocast dtype"),
        "channels_last": Field(bool, default=False, nullable=False),
        "compile": Field((bool, str), default=False, nullable=False, choices=[
            False, True, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"],
            help="torch.compile every trainable network (true, or a torch.compile mode)"),
    }, required=True),
}


def _set_requires_grad(nets, flag: bool) -> None:
    for net in nets:
        if net is not None:
            net.requires_grad_(flag)


@MODEL_REGISTRY.register()
class GFPGANModel:
    """Builds the recipe from the options tree and runs its training steps.

    Implements :class:`gfpgan.engine.train_model.TrainModel`, the contract the trainer calls.

    Args:
        opt: Options tree (``network_*``, ``path``, ``train`` sections, BasicSR schema). The keys of
            :data:`OPTION_SCHEMA` are validated here (defaults filled), so a partial tree works.
        dist_info: Rank, world size and device (``gfpgan.dist.init_dist()``); None: this process.
    """

    option_schema = OPTION_SCHEMA

    def __init__(self, opt: dict, dist_info: Optional[DistInfo] = None):
        import gfpgan.archs  # noqa: F401  (registers the architectures)

        self.opt = opt
        self.dist = dist_info or get_dist_info()
        self.device = self.dist.device
        own = validate_part(opt, self.option_schema, "the model options")
        train, path = own["train"], own["path"]
        self.train_opt = train
        self.out_size = int(opt["network_g"]["out_size"])
        self.log_size = int(math.log2(self.out_size))

        # ---------------- networks ----------------
        self.net_g = self._build_net("network_g")
        if path["pretrain_network_g"]:
            load_weights(self.net_g, path["pretrain_network_g"], path["param_key_g"], path["strict_load_g"],
                         "path.pretrain_network_g")
        self.net_d = self._build_net("network_d") if opt.get("network_d") else None
        if self.net_d is not None and path["pretrain_network_d"]:
            load_weights(self.net_d, path["pretrain_network_d"], path["param_key_d"], path["strict_load_d"],
                         "path.pretrain_network_d")
        present = [c for c in COMPONENTS if opt.get(f"network_d_{c}")]
        if present and len(present) != len(COMPONENTS):
            raise UserError(f"options name component discriminators {present} but the recipe needs all of "
                            f"network_d_left_eye, network_d_right_eye and network_d_mouth (or none).")
        self.net_d_comp = nn.ModuleDict({c: self._build_net(f"network_d_{c}") for c in present})
        for c, net in self.net_d_comp.items():
            if path[f"pretrain_network_d_{c}"]:
                load_weights(net, path[f"pretrain_network_d_{c}"], "params", True,
                             f"path.pretrain_network_d_{c}")
        if self.net_d_comp and not train["gan_component_opt"]:
            raise UserError("component discriminators are configured but train.gan_component_opt is missing.")

        # ---------------- losses ----------------
        self.cri_pix = self._loss(train["pixel_opt"])
        self.cri_l1 = self._loss(train["L1_opt"])
        perceptual_opt = train["perceptual_opt"]
        if perceptual_opt and path["pretrain_network_vgg"] and "vgg_weights" not in perceptual_opt:
            perceptual_opt = dict(perceptual_opt, vgg_weights=path["pretrain_network_vgg"])
        self.cri_perceptual = self._loss(perceptual_opt)
        self.cri_gan = self._loss(train["gan_opt"])
        if self.net_d is not None and self.cri_gan is None:
            raise UserError("network_d is configured but train.gan_opt is missing.")
        self.cri_component = self._loss(train["gan_component_opt"]) if self.net_d_comp else None
        self.cri_identity = build_identity_loss(opt.get("network_identity"), train, path, self.device)

        # ---------------- speed options ----------------
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, None: None}[train["amp"]]
        self.scaler = torch.amp.GradScaler(self.device.type) if self.amp_dtype == torch.float16 else None
        self.memory_format = torch.channels_last if train["channels_last"] else torch.contiguous_format
        if self.memory_format == torch.channels_last:
            for net in self.trainable_nets().values():
                # Only 4-D weights: Module.to(memory_format=...) also hits the 5-D modulated-conv
                # weights, for which channels_last is undefined.
                for p in net.parameters():
                    if p.dim() == 4:
                        p.data = p.data.contiguous(memory_format=torch.channels_last)

        # ---------------- EMA, DDP, optimizers, schedulers ----------------
        self.ema = ModelEMA(self.net_g, decay=train["ema_decay"])
        if path["pretrain_network_g"] and path["param_key_g"] != "params_ema":
            try:  # as the reference: the EMA starts from the file's params_ema when it has one
                load_weights(self.ema.module, path["pretrain_network_g"], "params_ema", path["strict_load_g"],
                             "path.pretrain_network_g")
            except UserError:
                logger.info("%s has no params_ema: the EMA starts from net_g", path["pretrain_network_g"])
        self.find_unused = own["find_unused_parameters"]
        # one record per trainable network: plain, DDP-wrapped, compiled training call, frozen call
        self.nets = {name: self._record(net) for name, net in self.trainable_nets().items()}
        self._pyramid_active = True  # the generator is built with every parameter trainable
        self._pyramid_unused = None

        self.optimizers = {"net_g": build_optimizer(self._trainable(self.net_g), train["optim_g"])}
        if self.net_d is not None:
            ratio = train["net_d_reg_every"] / (train["net_d_reg_every"] + 1)
            self.optimizers["net_d"] = build_optimizer(self._trainable(self.net_d),
                                                       train["optim_d"] or train["optim_g"], ratio)
        for c, net in self.net_d_comp.items():
            self.optimizers[f"net_d_{c}"] = build_optimizer(
                self._trainable(net), train["optim_component"] or train["optim_g"])
        self.schedulers = {k: build_scheduler(o, train["scheduler"]) for k, o in self.optimizers.items()}
        self._base_lrs = {k: [g["lr"] for g in o.param_groups] for k, o in self.optimizers.items()}
        self._visuals: Dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------ construction helpers
    def _build_net(self, key: str) -> nn.Module:
        return ARCH_REGISTRY.build(self.opt[key]).to(self.device).train()

    def _loss(self, cfg: Optional[dict]):
        return build_loss(cfg).to(self.device) if cfg else None

    @staticmethod
    def _trainable(net: nn.Module):
        # Frozen parameters (a fixed StyleGAN2 decoder) get no optimizer state at all.
        return [p for p in net.parameters() if p.requires_grad]

    def _record(self, net: nn.Module) -> TrainedNet:
        return TrainedNet.build(net, self.dist, self.find_unused, self.train_opt["compile"])

    def trainable_nets(self) -> Dict[str, nn.Module]:
        """The plain trainable networks by save name: net_g, net_d, net_d_left_eye ..."""
        nets = {"net_g": self.net_g}
        if self.net_d is not None:
            nets["net_d"] = self.net_d
        nets.update({f"net_d_{c}": n for c, n in self.net_d_comp.items()})
        return nets

    def _autocast(self, enabled: bool = True):
        if self.amp_dtype is None or not enabled:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    # ------------------------------------------------------------------ the pyramid switch
    def _set_pyramid(self, active: bool, lq: torch.Tensor) -> None:
        """Turn the image-pyramid branch on or off for the generator's training graph.

        Off, the generator runs with ``return_rgb=False`` and its pyramid-only parameters get no
        gradient. Rather than ``find_unused_parameters=True`` for the whole run (a graph walk
        every step) or ``static_graph`` (which assumes the graph never changes), those parameters
        are frozen and the generator's DDP wrapper is rebuilt once, so DDP keeps its fast static
        path before and after the switch. They stay in the optimizer (no gradient = no update),
        so optimizer states keep their layout across resumes.
        """
        if active == self._pyramid_active:
            return
        if self._pyramid_unused is None:
            devices = [self.device] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):  # the probe must not shift the noise RNG
                self._pyramid_unused = set(unused_without_pyramid(self.net_g, lq))
        for name, p in self.net_g.named_parameters():
            if name in self._pyramid_unused:
                p.requires_grad_(active)
        self._pyramid_active = active
        if self.dist.distributed and not self.find_unused:
            self.nets["net_g"] = self._record(self.net_g)
        logger.info("image-pyramid loss %s (%d generator parameters %s)", "on" if active else "off",
                    len(self._pyramid_unused), "trainable" if active else "frozen")

    # ------------------------------------------------------------------ one iteration
    def train_step(self, batch: Dict[str, torch.Tensor], it: int) -> Dict[str, float]:
        """One generator step, EMA update, global-D step and component-D steps.

        Args:
            batch: {'lq', 'gt': (B, 3, S, S) in [-1, 1], and with component Ds 'loc_left_eye',
                'loc_right_eye', 'loc_mouth': (B, 4) boxes x1, y1, x2, y2 in GT pixels}; any device.
            it: Current iteration, 1-based.
        Returns:
            {log key: value averaged over ranks}; 'skipped' is 1.0 when a non-finite loss on any
            rank skipped every update of this iteration (including the EMA), else 0.0.
        """
        dev, mf, to = self.device, self.memory_format, self.train_opt
        lq = batch["lq"].to(dev, non_blocking=True).contiguous(memory_format=mf)
        gt = batch["gt"].to(dev, non_blocking=True).contiguous(memory_format=mf)
        use_pyramid = to["pyramid_loss_weight"] > 0 and (
            to["remove_pyramid_loss"] is None or it <= to["remove_pyramid_loss"])
        self._set_pyramid(use_pyramid, lq)
        logs: Dict[str, torch.Tensor] = {}
        d_nets = [self.net_d, *self.net_d_comp.values()]

        # ---------------- generator ----------------
        _set_requires_grad(d_nets, False)
        self.optimizers["net_g"].zero_grad(set_to_none=True)
        g_step = it % to["net_d_iters"] == 0 and it > to["net_d_init_iters"]
        with self._autocast(), torch.set_grad_enabled(g_step):
            output, out_rgbs = self.nets["net_g"].call(lq, return_rgb=use_pyramid)
        fake_crops = real_crops = None
        if self.net_d_comp:
            locs = {c: batch[f"loc_{c}"] for c in COMPONENTS}
            fake_crops = crop_components(output, locs, self.out_size)
            real_crops = crop_components(gt, locs, self.out_size)
        l_g_total = None
        if g_step:
            with self._autocast():
                l_g_total = self._generator_losses(output, out_rgbs, gt, fake_crops, real_crops, logs)
            self._backward(l_g_total)

        # ---------------- global discriminator (+ lazy R1) ----------------
        _set_requires_grad(d_nets, True)
        l_d_total = l_comp_total = None
        if self.net_d is not None:
            self.optimizers["net_d"].zero_grad(set_to_none=True)
            reg = it % to["net_d_reg_every"] == 0
            real_in = gt.detach().requires_grad_(reg)
            with self._autocast():
                fake_pred = self.nets["net_d"].call(output.detach())
            # fp16 cannot hold R1's input gradients (they overflow or underflow), so on R1
            # iterations the real pass runs in fp32; bf16 has fp32's range and stays autocast.
            # R1 differentiates D twice, which compiled graphs cannot: that pass stays eager.
            with self._autocast(enabled=not (reg and self.amp_dtype == torch.float16)):
                real_pred = (self.nets["net_d"].wrapped if reg else self.nets["net_d"].call)(real_in)
            l_d = self.cri_gan(real_pred, True, is_disc=True) + self.cri_gan(fake_pred, False, is_disc=True)
            logs["l_d"] = l_d.detach()
            logs["real_score"] = real_pred.detach().float().mean()  # positive when D is right
            logs["fake_score"] = fake_pred.detach().float().mean()
            l_d_total = l_d
            if reg:
                l_d_r1 = to["r1_reg_weight"] / 2 * r1_penalty(real_pred, real_in) * to["net_d_reg_every"]
                logs["l_d_r1"] = l_d_r1.detach()
                l_d_total = l_d_total + l_d_r1
            self._backward(l_d_total)

        # ---------------- facial-component discriminators ----------------
        if self.net_d_comp:
            for c in COMPONENTS:
                self.optimizers[f"net_d_{c}"].zero_grad(set_to_none=True)
            with self._autocast():
                for c in COMPONENTS:
                    net = self.nets[f"net_d_{c}"].call
                    fake_pred, _ = net(fake_crops[c].detach())
                    real_pred, _ = net(real_crops[c])
                    l_c = (self.cri_component(real_pred, True, is_disc=True)
                           + self.cri_component(fake_pred, False, is_disc=True))
                    logs[f"l_d_{c}"] = l_c.detach()
                    l_comp_total = l_c if l_comp_total is None else l_comp_total + l_c
            self._backward(l_comp_total)

        # ---------------- updates, only if every rank's losses are finite ----------------
        finite = torch.stack([t.detach().float().isfinite().all()
                              for t in (l_g_total, l_d_total, l_comp_total) if t is not None]).all()
        skipped = not all_ranks(finite, self.dist)
        if skipped:
            for o in self.optimizers.values():
                o.zero_grad(set_to_none=True)
        else:
            if g_step:
                self._step("net_g")
                self.ema.update(self.net_g)
            for name in self.optimizers:
                if name != "net_g":
                    self._step(name)
            if self.scaler is not None:
                self.scaler.update()
        self._visuals = {"lq": lq.detach()[:4], "output": output.detach()[:4], "gt": gt.detach()[:4]}
        out = mean_over_ranks(logs, self.dist)
        out["skipped"] = float(skipped)
        return out

    def _generator_losses(self, output, out_rgbs, gt, fake_crops, real_crops, logs) -> torch.Tensor:
        """Every generator loss of the recipe, each logged under the reference's key."""
        terms = []

        def add(key, value):
            logs[key] = value.detach()
            terms.append(value)

        if self.cri_pix is not None:
            add("l_g_pix", self.cri_pix(output, gt))
        if out_rgbs:  # the pyramid is on: one L1 per level, coarsest (8 px) first
            for rgb, target in zip(out_rgbs, image_pyramid(gt, len(out_rgbs))):
                add(f"l_p_{rgb.shape[-1]}", self.cri_l1(rgb, target) * self.train_opt["pyramid_loss_weight"])
        if self.cri_perceptual is not None:
            percep, style = self.cri_perceptual(output, gt)
            if percep is not None:
                add("l_g_percep", percep)
            if style is not None:
                add("l_g_style", style)
        if self.net_d is not None:  # unwrapped D: frozen here, so nothing of it to all-reduce
            add("l_g_gan", self.cri_gan(self.nets["net_d"].frozen_call(output), True, is_disc=False))
        comp_style = []
        for c in self.net_d_comp:
            net = self.nets[f"net_d_{c}"].frozen_call
            fake_pred, fake_feats = net(fake_crops[c], return_feats=True)
            add(f"l_g_gan_{c}", self.cri_component(fake_pred, True, is_disc=False))
            if self.train_opt["comp_style_weight"] > 0:
                with torch.no_grad():
                    _, real_feats = net(real_crops[c], return_feats=True)
                # Gram matrices of the two feature maps, the shallower at half weight.
                comp_style.append(
                    0.5 * self.cri_l1(gram_matrix(fake_feats[0]), gram_matrix(real_feats[0]))
                    + self.cri_l1(gram_matrix(fake_feats[1]), gram_matrix(real_feats[1])))
        if comp_style:
            add("l_g_comp_style_loss", sum(comp_style) * self.train_opt["comp_style_weight"])
        if self.cri_identity is not None:
            add("l_identity", self.cri_identity(output, gt))
        return sum(t.float() for t in terms)

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
        """{name: (plain module, arch name, constructor kwargs)} for self-describing checkpoints."""
        def spec(key):
            kwargs = {k: v for k, v in self.opt[key].items() if k != "type"}
            kwargs.pop("decoder_load_path", None)  # the weights are in the checkpoint itself
            return self.opt[key]["type"], kwargs

        out = {"net_g": (self.net_g, *spec("network_g")), "net_g_ema": (self.ema.module, *spec("network_g"))}
        if self.net_d is not None:
            out["net_d"] = (self.net_d, *spec("network_d"))
        for c, net in self.net_d_comp.items():
            out[f"net_d_{c}"] = (net, *spec(f"network_d_{c}"))
        return out

    def generator_for_eval(self) -> nn.Module:
        """The EMA generator (eval mode, frozen), as the reference validates and releases."""
        return self.ema.module.eval()

    @torch.no_grad()
    def restore(self, lq: torch.Tensor) -> torch.Tensor:
        """Restore a batch with the EMA generator.

        Args:
            lq: (B, 3, S, S) degraded faces in [-1, 1], any device.
        Returns:
            (B, 3, S, S) restored faces in [-1, 1] (float32, on the model's device).
        """
        net = self.generator_for_eval()
        with self._autocast():
            out, _ = net(lq.to(self.device).contiguous(memory_format=self.memory_format), return_rgb=False)
        return out.float()

    def last_visuals(self) -> Dict[str, torch.Tensor]:
        """{'lq', 'output', 'gt'}: up to 4 samples of the last step, float32 on the CPU."""
        return {k: v.float().cpu() for k, v in self._visuals.items()}
