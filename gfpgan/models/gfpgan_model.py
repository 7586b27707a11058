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
* Optimizer betas come from the options (the reference hard-codes them and ignores the block's);
  a block without betas gets the reference's, so the reference's option files mean the same.
* Component crops scale with ``out_size / 512`` (see components.py).
* Optimizer steps wait until G's and D's losses are known to be finite on every rank, so a
  non-finite step skips every update and the EMA (the G step does not change D's losses).
"""

import logging
import math
from typing import Dict

import torch
from torch import nn

from gfpgan.dist import all_ranks, mean_over_ranks
from gfpgan.errors import UserError
from gfpgan.losses import gram_matrix
from gfpgan.models.base import (
    BASE_SCHEMA,
    RESTORATION_FIELDS,
    TrainingModel,
    extend_schema,
    weight_field,
    weights_file,
)
from gfpgan.models.components import (
    COMPONENTS,
    build_optimizer,
    crop_components,
    image_pyramid,
    load_weights,
    unused_without_pyramid,
)
from gfpgan.registry import MODEL_REGISTRY
from gfpgan.schema import LOSS_BLOCK, OPTIM_BLOCK, Block, Field

logger = logging.getLogger("gfpgan")

# Adam's betas where an optimizer block spells none: the reference hard-codes them (and ignores
# the block's), so its option files, which spell none, mean these.
BETAS_G_D = (0.0, 0.99)
BETAS_COMPONENT = (0.9, 0.99)

# The options this model reads (joined with the trainer's by gfpgan.options.train_schema).
OPTION_SCHEMA = extend_schema(
    BASE_SCHEMA,
    path={
        **RESTORATION_FIELDS["path"],
        **weights_file("network_d", "params"),
        **{f"pretrain_network_d_{c}": Field(str, default=None, path="file") for c in COMPONENTS},
    },
    train={
        **RESTORATION_FIELDS["train"],
        "optim_d": OPTIM_BLOCK,
        "optim_component": OPTIM_BLOCK,
        "L1_opt": Block("loss", default={"type": "L1Loss", "loss_weight": 1.0}, help="pyramid L1"),
        "gan_opt": LOSS_BLOCK,
        "gan_component_opt": LOSS_BLOCK,
        "pyramid_loss_weight": weight_field(0.0, "image-pyramid L1 weight"),
        "remove_pyramid_loss": Field(int, default=None, min=0, help="drop the pyramid after it"),
        "comp_style_weight": weight_field(0.0, "component Gram-style weight"),
        "r1_reg_weight": weight_field(10.0, "R1 penalty weight"),
        "net_d_iters": Field(int, default=1, min=1, nullable=False),
        "net_d_init_iters": Field(int, default=0, min=0, nullable=False),
        "net_d_reg_every": Field(int, default=16, min=1, nullable=False, help="lazy R1 interval"),
    },
)


def _set_requires_grad(nets, flag: bool) -> None:
    for net in nets:
        if net is not None:
            net.requires_grad_(flag)


@MODEL_REGISTRY.register()
class GFPGANModel(TrainingModel):
    """Builds the recipe from the options tree and runs its training steps.

    Implements :class:`gfpgan.engine.train_model.TrainModel`, the contract the trainer calls; the
    setup around the recipe (EMA, DDP, optimizers, speed options) is :class:`TrainingModel`'s.

    Args:
        opt: Options tree (``network_*``, ``path``, ``train`` sections, BasicSR schema). The keys of
            :data:`OPTION_SCHEMA` are validated here (defaults filled), so a partial tree works.
        dist_info: Rank, world size and device (``gfpgan.dist.init_dist()``); None: this process.
    """

    option_schema = OPTION_SCHEMA

    def build(self, own: dict) -> None:
        """The generator, the global and component discriminators and every loss of the recipe."""
        opt, train = self.opt, self.train_opt
        self.out_size = int(opt["network_g"]["out_size"])
        self.log_size = int(math.log2(self.out_size))

        # ---------------- networks ----------------
        self.net_g = self._build_net("network_g")
        self.load_pretrained(self.net_g, "network_g")
        self.net_d = self._build_net("network_d") if opt.get("network_d") else None
        if self.net_d is not None:
            self.load_pretrained(self.net_d, "network_d")
        present = [c for c in COMPONENTS if opt.get(f"network_d_{c}")]
        if present and len(present) != len(COMPONENTS):
            raise UserError(f"options name component discriminators {present} but the recipe needs all of "
                            f"network_d_left_eye, network_d_right_eye and network_d_mouth (or none).")
        self.net_d_comp = nn.ModuleDict({c: self._build_net(f"network_d_{c}") for c in present})
        for c, net in self.net_d_comp.items():
            if self.path_opt[f"pretrain_network_d_{c}"]:  # as the reference: 'params', strictly
                load_weights(net, self.path_opt[f"pretrain_network_d_{c}"], "params", True,
                             f"path.pretrain_network_d_{c}")
        if self.net_d_comp and not train["gan_component_opt"]:
            raise UserError("component discriminators are configured but train.gan_component_opt is missing.")

        # ---------------- losses ----------------
        self.build_restoration_losses()
        self.cri_l1 = self._loss(train["L1_opt"])
        self.cri_gan = self._loss(train["gan_opt"])
        if self.net_d is not None and self.cri_gan is None:
            raise UserError("network_d is configured but train.gan_opt is missing.")
        self.cri_component = self._loss(train["gan_component_opt"]) if self.net_d_comp else None
        self._pyramid_active = True  # the generator is built with every parameter trainable
        self._pyramid_unused = None

    def init_ema(self) -> None:
        self.ema_from_pretrained()

    def trainable_nets(self) -> Dict[str, nn.Module]:
        """The plain trainable networks by save name: net_g, net_d, net_d_left_eye ..."""
        nets = {"net_g": self.net_g}
        if self.net_d is not None:
            nets["net_d"] = self.net_d
        nets.update({f"net_d_{c}": n for c, n in self.net_d_comp.items()})
        return nets

    def build_optimizers(self) -> Dict[str, torch.optim.Optimizer]:
        """G's, D's (lazy-R1 ratio on lr and betas) and one per component D (their own block)."""
        train = self.train_opt
        optimizers = {"net_g": build_optimizer(self._trainable(self.net_g), train["optim_g"],
                                               betas=BETAS_G_D)}
        if self.net_d is not None:
            ratio = train["net_d_reg_every"] / (train["net_d_reg_every"] + 1)
            block = train["optim_d"] or train["optim_g"]
            optimizers["net_d"] = build_optimizer(self._trainable(self.net_d), block, ratio, BETAS_G_D)
        for c, net in self.net_d_comp.items():
            optimizers[f"net_d_{c}"] = build_optimizer(
                self._trainable(net), train["optim_component"] or train["optim_g"], betas=BETAS_COMPONENT)
        return optimizers

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
            self._backward(self.with_r1(l_d, real_pred, real_in, reg, logs))

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

    def eval_forward(self, net: nn.Module, lq: torch.Tensor) -> torch.Tensor:
        """The EMA generator's image without its pyramid outputs."""
        return net(lq, return_rgb=False)[0]
