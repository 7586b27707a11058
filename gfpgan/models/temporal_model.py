"""Temporal GFP-GAN training model: a recurrent adapter learned on clips around a fixed base.

The temporal recipe: a :class:`TemporalGFPGAN`
adapter (ConvGRU on the decoder features, warped state, confidence gate) is trained on clips
(:class:`gfpgan.data.FFHQClipDataset` batches: 'lq', 'gt' (B, T, 3, S, S), 'rel_affine' (B, T, 2, 3))
around a base generator loaded from ``path.pretrain_network_g`` (an official release or one of
our checkpoints, through :func:`gfpgan.networks.load_network`). One ``train_step``:

1. the clip runs frame by frame through the adapter, the state carried from frame to frame (the
   base with its fixed noise buffers, as at inference);
   each clip's state is reset before frame t with probability ``train.state_reset_prob`` (the
   adapter must restore a track's first frame, a cut, as well as the base);
2. truncated back-propagation: every ``train.tbptt`` frames the chunk's losses are
   back-propagated and the state is detached; the gradients of all chunks add up (one
   optimizer step per clip). Each chunk's loss is scaled by its share of the clip's frames (and
   frame pairs), so the chunks together give the loss of the whole clip (the temporal loss up
   to its per-pair coverage masks: a mean of the chunks' masked means);
3. losses: the per-frame recipe on every frame (pixel L1, VGG perceptual + style, ArcFace
   identity, each when configured), ``TemporalLoss`` on consecutive frames (the pair that spans
   a chunk boundary included, its earlier frame detached) and optionally
   ``TemporalIdentityLoss`` (ArcFace of ``network_identity``). No GAN losses: the base keeps its
   adversarial prior and the adapter only fixes frame-to-frame consistency;
4. one optimizer step, EMA of the adapter (the base is frozen, so its EMA stays the same).

The base is frozen (``train.base_lr_scale: 0``, the default) or trained jointly at
``base_lr_scale`` times the adapter's rate. Checkpoints hold the whole TemporalGFPGAN (with
the base's architecture in its kwargs, so it rebuilds from the file alone); each save also
writes ``models/temporal.safetensors``: the EMA adapter as a temporal file
(:func:`gfpgan.temporal_file.save_temporal`) naming its base, for ``--temporal`` at inference.

Everything of the trainer's protocol besides the step (learning rates, state dicts, AMP,
channels_last, EMA, DDP, schedulers) is the shared setup of :class:`~gfpgan.models.base.TrainingModel`.
"""

import contextlib
import logging
from pathlib import Path
from typing import Dict

import numpy as np
import torch

from gfpgan.dist import all_ranks, mean_over_ranks
from gfpgan.errors import UserError
from gfpgan.models.base import (
    BASE_SCHEMA,
    RESTORATION_FIELDS,
    TrainingModel,
    extend_schema,
    weight_field,
)
from gfpgan.models.components import build_identity_loss, build_optimizer, unused_without_pyramid
from gfpgan.registry import MODEL_REGISTRY
from gfpgan.schema import LOSS_BLOCK, Field

logger = logging.getLogger("gfpgan")

# The options this model reads: the shared setup's and the per-frame losses', plus its own.
OPTION_SCHEMA = extend_schema(
    BASE_SCHEMA,
    path={
        "pretrain_network_g": Field(str, required=True, nullable=False, path="file",
                                    help="the base generator: one of our .safetensors or an official .pth"),
        **RESTORATION_FIELDS["path"],
    },
    train={
        **RESTORATION_FIELDS["train"],
        "temporal_opt": LOSS_BLOCK,
        "temporal_identity_weight": weight_field(0.0, "TemporalIdentityLoss weight (needs network_identity)"),
        "base_lr_scale": weight_field(0.0, "base learning rate / adapter learning rate; 0: base frozen"),
        "tbptt": Field(int, default=None, min=1, help="frames per backward (state detached between); "
                                                        "~: the whole clip"),
        "state_reset_prob": Field(float, default=0.0, min=0.0, max=1.0,
                                  help="per clip and frame: probability of a state reset (a cut)"),
    },
)


def _detached(state):
    return type(state)(tuple(h.detach() for h in state.hidden), *(v.detach() for v in state[1:]))


@MODEL_REGISTRY.register()
class TemporalGFPGANModel(TrainingModel):
    """Trains a TemporalGFPGAN adapter on clips; implements :class:`~gfpgan.engine.train_model.TrainModel`.

    Args:
        opt: Options tree: ``network_g`` is the adapter (``type: TemporalGFPGAN`` and its kwargs
            besides ``base``), the base comes from ``path.pretrain_network_g``.
        dist_info: Rank, world size and device; None: this process.
    """

    option_schema = OPTION_SCHEMA

    def build(self, own: dict) -> None:
        """The base from its file, the adapter around it, and the per-frame and temporal losses."""
        from gfpgan.archs.temporal_arch import TemporalGFPGAN
        from gfpgan.losses import TemporalIdentityLoss
        from gfpgan.networks import load_network

        opt, train, path = self.opt, self.train_opt, self.path_opt
        adapter = {k: v for k, v in opt["network_g"].items() if k != "type"}
        if opt["network_g"]["type"] != "TemporalGFPGAN" or {"base", "freeze_base"} & set(adapter):
            raise UserError("TemporalGFPGANModel trains network_g of type TemporalGFPGAN; its base comes "
                            "from path.pretrain_network_g, its freezing from train.base_lr_scale.")

        # ---------------- networks: base from a file, adapter around it ----------------
        base, arch, kwargs, _ = load_network(path["pretrain_network_g"], key=path["param_key_g"],
                                             strict=path["strict_load_g"])
        self.base_spec = {"type": arch, **kwargs}
        self.base_name = Path(path["pretrain_network_g"]).name
        self.frozen_base = train["base_lr_scale"] == 0
        self.net_g = TemporalGFPGAN(base, **adapter, freeze_base=self.frozen_base).to(self.device).train()
        self.out_size = self.net_g.out_size
        if not self.frozen_base:  # the base's pyramid-only layers get no gradient: frozen (no DDP error)
            probe = torch.zeros(1, 3, self.out_size, self.out_size, device=self.device)
            for name in unused_without_pyramid(self.net_g.base, probe):
                self.net_g.base.get_parameter(name).requires_grad_(False)

        # ---------------- losses ----------------
        self.build_restoration_losses()
        self.cri_temporal = self._loss(train["temporal_opt"])
        self.cri_temporal_id = None
        if train["temporal_identity_weight"] > 0:
            if not opt.get("network_identity"):
                raise UserError("train.temporal_identity_weight needs network_identity (an ArcFace) and "
                                "path.pretrain_network_identity.")
            weight_one = {"identity_opt": None, "identity_weight": 1.0}  # just the loaded ArcFace
            arcface = build_identity_loss(opt["network_identity"], weight_one, path, self.device)
            self.cri_temporal_id = TemporalIdentityLoss(arcface.net, train["temporal_identity_weight"],
                                                        arcface.size).to(self.device)
        if not any((self.cri_pix, self.cri_perceptual, self.cri_temporal)):
            raise UserError("the temporal recipe has no loss: set train.pixel_opt, train.perceptual_opt "
                            "or train.temporal_opt.")
        root = (opt.get("path") or {}).get("experiments_root")  # None: a model built outside a run
        self.models_dir = Path(root) / opt["name"] / "models" if root and opt.get("name") else None

    def build_optimizers(self) -> Dict[str, torch.optim.Optimizer]:
        """The adapter at ``optim_g``'s rate; a jointly trained base in a second group, at
        ``base_lr_scale`` times that rate."""
        train = self.train_opt
        optimizer = build_optimizer([p for n, p in self.net_g.named_parameters()
                                     if p.requires_grad and not n.startswith("base.")], train["optim_g"])
        if not self.frozen_base:
            optimizer.add_param_group({"params": self._trainable(self.net_g.base),
                                       "lr": optimizer.param_groups[0]["lr"] * train["base_lr_scale"]})
        return {"net_g": optimizer}

    # ------------------------------------------------------------------ one iteration
    def train_step(self, batch: Dict[str, torch.Tensor], it: int) -> Dict[str, float]:
        """One clip step: frame-by-frame forward, truncated backward per chunk, optimizer step, EMA.

        Args:
            batch: {'lq', 'gt': (B, T, 3, S, S) in [-1, 1], 'rel_affine': (B, T, 2, 3)}, optionally
                'rel_input' (B, T, 2, 3): the motion the module is given (an estimate's error; the
                losses use the exact 'rel_affine'); any device.
            it: Current iteration, 1-based.
        Returns:
            {log key: value averaged over ranks}; 'skipped' 1.0 when a non-finite loss on any rank
            skipped the update (and the EMA).
        """
        from gfpgan.archs.temporal_arch import reset_state

        dev, to = self.device, self.train_opt
        lq, gt = batch["lq"].to(dev), batch["gt"].to(dev)
        rel = batch["rel_affine"].to(dev)
        rel_in = batch["rel_input"].to(dev) if "rel_input" in batch else rel
        b, t = lq.shape[:2]
        # a stream of its own per (seed, rank, iteration): the same on any device and after a
        # resume, whatever else drew from torch's global generator in between
        seed = np.random.SeedSequence([self.opt.get("manual_seed") or 0, self.dist.rank, it])
        gen = torch.Generator().manual_seed(int(seed.generate_state(1)[0]))
        resets = (torch.rand(b, t, generator=gen) < to["state_reset_prob"]).to(dev)
        chunk = to["tbptt"] or t
        opt = self.optimizers["net_g"]
        opt.zero_grad(set_to_none=True)
        state, prev, sums, outs, finite = None, None, {}, [], []
        for start in range(0, t, chunk):
            stop = min(t, start + chunk)
            last = stop == t
            frames = []
            # the gradients of all chunks are all-reduced once, with the last backward
            no_sync = self.dist.distributed and not last
            with self.nets["net_g"].wrapped.no_sync() if no_sync else contextlib.nullcontext():
                with self._autocast():
                    for i in range(start, stop):
                        if state is not None:
                            state = reset_state(state, resets[:, i])
                        # the base's fixed noise, as at inference: fresh noise per frame would be
                        # flicker that the adapter had to learn to cancel
                        out, _, state = self.nets["net_g"].call(
                            lq[:, i].contiguous(memory_format=self.memory_format), state, rel_in[:, i],
                            randomize_noise=False)
                        frames.append(out)
                    out = torch.stack(frames, 1)
                    loss = self._chunk_losses(out, gt, rel, start, prev, sums)
                finite.append(loss.detach().isfinite())
                self._backward(loss)
            state = _detached(state)
            prev = out[:, -1:].detach()
            outs.append(out.detach())
        skipped = not all_ranks(torch.stack(finite).all(), self.dist)
        if skipped:
            opt.zero_grad(set_to_none=True)
        else:
            self._step("net_g")
            self.ema.update(self.net_g)
            if self.scaler is not None:
                self.scaler.update()
        output = torch.cat(outs, 1)
        # strips of consecutive frames along the width: (N, 3, S, T * S)
        self._visuals = {k: v.detach()[:4].permute(0, 2, 3, 1, 4).flatten(3)
                         for k, v in (("lq", lq), ("output", output), ("gt", gt))}
        out = mean_over_ranks(sums, self.dist)
        out["skipped"] = float(skipped)
        return out

    def _chunk_losses(self, out, gt, rel, start, prev, sums) -> torch.Tensor:
        """The losses of frames ``start .. start + n`` of the clip, scaled to their share of it.

        Args:
            out: (B, n, 3, S, S) this chunk's outputs (gradients flow).
            gt, rel: the whole clip's ground truth and transforms.
            start: first frame of the chunk.
            prev: (B, 1, 3, S, S) detached output of frame ``start - 1``, None for the first chunk.
            sums: {log key: clip-level value so far}, updated.
        """
        n, t = out.shape[1], gt.shape[1]
        terms = []

        def add(key, value, share):
            value = value.float() * share
            sums[key] = sums.get(key, 0.0) + value.detach()
            terms.append(value)

        flat, gflat = out.flatten(0, 1), gt[:, start:start + n].flatten(0, 1)
        if self.cri_pix is not None:
            add("l_g_pix", self.cri_pix(flat, gflat), n / t)
        if self.cri_perceptual is not None:
            percep, style = self.cri_perceptual(flat, gflat)
            if percep is not None:
                add("l_g_percep", percep, n / t)
            if style is not None:
                add("l_g_style", style, n / t)
        if self.cri_identity is not None:
            add("l_identity", self.cri_identity(flat, gflat), n / t)
        first = start if prev is None else start - 1  # the pair across the chunk boundary counts
        pair_out = out if prev is None else torch.cat([prev, out], 1)
        pairs = pair_out.shape[1] - 1
        if pairs > 0:
            pair_gt, pair_rel = gt[:, first:start + n], rel[:, first:start + n]
            if self.cri_temporal is not None:
                add("l_temporal", self.cri_temporal(pair_out, pair_gt, pair_rel), pairs / (t - 1))
            if self.cri_temporal_id is not None:
                add("l_temporal_id", self.cri_temporal_id(pair_out, pair_gt), pairs / (t - 1))
        return sum(terms)

    # ------------------------------------------------------------------ engine interface
    def networks_to_save(self) -> Dict[str, tuple]:
        """``net_g`` and ``net_g_ema`` (whole TemporalGFPGANs); also writes ``models/temporal.safetensors``.

        The temporal file holds the EMA adapter only and names its base (weights sha256), as
        :func:`gfpgan.temporal_file.load_temporal` expects; the trainer calls this on rank 0 at
        every save, so the file always has the newest saved (finally: the last) iteration.
        """
        from gfpgan.temporal_file import adapter_kwargs, save_temporal

        kwargs = {"base": self.base_spec, **adapter_kwargs(self.net_g)}
        if self.models_dir is not None and self.dist.is_main:
            self.models_dir.mkdir(parents=True, exist_ok=True)
            save_temporal(self.models_dir / "temporal.safetensors", self.ema.module, self.base_name,
                          base_arch=self.base_spec["type"],
                          base_kwargs={k: v for k, v in self.base_spec.items() if k != "type"})
        return {"net_g": (self.net_g, "TemporalGFPGAN", kwargs),
                "net_g_ema": (self.ema.module, "TemporalGFPGAN", kwargs)}
