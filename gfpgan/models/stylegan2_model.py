"""StyleGAN2 training model: the generative facial prior that GFP-GAN's decoder starts from.

Karras et al., CVPR 2020, "Analyzing and Improving the Image Quality of StyleGAN", trained as
BasicSR's ``StyleGAN2Model`` trained the released prior ``StyleGAN2_512_Cmul1_FFHQ_B12G4_
scratch_800k.pth``. One ``train_step``:

1. Discriminator: non-saturating logistic loss (``gan_opt``, softplus) on real images and on
   samples of the current generator; every ``net_d_reg_every`` iterations lazy R1 on the reals
   (``r1_reg_weight / 2 * R1 * net_d_reg_every``), sharing the real pass and the optimizer step.
2. Generator: the logistic loss of fresh samples; every ``net_g_reg_every`` iterations
   path-length regularisation on ``batch / path_batch_shrink`` more samples
   (``path_reg_weight * net_g_reg_every * penalty``), summed into the same optimizer step.
3. EMA of the generator (``params_ema`` of the released file).

Latents: ``z ~ N(0, I)``; with probability ``mixing_prob`` a batch uses two codes that cross
over at a random layer (style mixing). Optionally every image the discriminator sees is
augmented, DiffAugment-style or with ADA's adaptive probability
(:mod:`gfpgan.models.stylegan2_augment`), for small face sets.

Lazy regularisation: an optimizer whose network is regularised every k iterations runs at
``lr * c`` with betas ``** c``, ``c = k / (k + 1)`` (StyleGAN2's rule). BasicSR's code sets both
groups' lr back to the unscaled lr (only the betas are scaled): the 512 recipe therefore writes
the lr that gives BasicSR's effective rate (see its header).

Output: besides the self-describing ``models/net_g_<iter>.safetensors`` files, every save writes
``models/stylegan2_prior.pth``: ``{'params': G, 'params_ema': EMA}`` with the released prior's
key names (the ``StyleGAN2Generator`` layout, BasicSR's), which GFP-GAN's
``network_g.decoder_load_path`` reads unchanged (its ``params_ema`` into ``stylegan_decoder``).

Validation: FID of ``val.fid_images`` samples of the EMA generator against ``val.fid_stats`` or
the first training images, every ``val.val_freq`` iterations, when the FID Inception weights
exist (else skipped, with one sentence). It is returned with the losses (``losses/fid``).
The sample grid (``images/lq_output_gt``) shows G(z) | G_ema(z) | real for fixed latents.
"""

import logging
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch
from torch import nn

from gfpgan.checkpoint import atomic_save_torch
from gfpgan.dist import all_ranks, broadcast_object, mean_over_ranks, sum_over_ranks
from gfpgan.errors import UserError
from gfpgan.losses.stylegan2 import PathLengthPenalty
from gfpgan.models.base import BASE_SCHEMA, TrainingModel, extend_schema, weight_field, weights_file
from gfpgan.models.components import build_optimizer
from gfpgan.models.stylegan2_augment import POLICIES, DiscriminatorAugment
from gfpgan.registry import MODEL_REGISTRY
from gfpgan.schema import OPTIM_BLOCK, Block, Field, ListOf, Section

logger = logging.getLogger("gfpgan")

GENERATORS = ("StyleGAN2Generator", "StyleGAN2GeneratorClean")
PRIOR_FILE = "stylegan2_prior.pth"  # under <run>/models/: what decoder_load_path reads
BETAS = (0.0, 0.99)
NUM_SAMPLES = 4  # fixed latents of the sample grid (the logger shows 4 rows)
FID_SEED = 20_240_527  # the FID samples' latents and noise: the same at every validation

OPTION_SCHEMA = extend_schema(
    BASE_SCHEMA,
    path=weights_file("network_d", "params"),
    train={
        "optim_d": OPTIM_BLOCK,
        "gan_opt": Block("loss", default={"type": "GANLoss", "gan_type": "wgan_softplus", "loss_weight": 1.0},
                         help="the non-saturating logistic loss (softplus)"),
        "r1_reg_weight": weight_field(10.0, "R1 gamma; 0: no R1"),
        "net_d_reg_every": Field(int, default=16, min=1, nullable=False, help="lazy R1 interval"),
        "path_reg_weight": weight_field(2.0, "path-length weight; 0: none"),
        "net_g_reg_every": Field(int, default=4, min=1, nullable=False, help="lazy path-length interval"),
        "path_batch_shrink": Field(int, default=2, min=1, nullable=False,
                                   help="path-length batch = batch / this"),
        "path_length_decay": Field(float, default=0.01, min=1e-6, max=1.0, nullable=False),
        "mixing_prob": Field(float, default=0.9, min=0.0, max=1.0, nullable=False, help="style mixing"),
        "augment": Field(str, default=None, choices=[None, "diffaugment", "ada"],
                         help="augment D's inputs: always (diffaugment) or adaptively (ada)"),
        "augment_policy": ListOf(Field(str, choices=list(POLICIES), nullable=False),
                                 default=list(POLICIES)),
        "augment_p": Field(float, default=None, min=0.0, max=1.0,
                           help="per-operation probability (~: 1 for diffaugment, 0 to start ada)"),
        "ada_target": Field(float, default=0.6, min=0.0, max=1.0, nullable=False),
        "ada_interval": Field(int, default=4, min=1, nullable=False),
        "ada_kimg": Field(float, default=500.0, min=1e-3, nullable=False,
                          help="thousands of images for p to go from 0 to 1"),
    },
    val=Section({
        "val_freq": Field(int, default=5000, min=1),
        "fid_images": Field(int, default=1000, min=2, nullable=False, help="samples per FID"),
        "fid_batch": Field(int, default=16, min=1, nullable=False),
        "fid_stats": Field(str, default=None, path="file",
                           help="reference .npz (gfpgan.tools.fid_stats); ~: the first training images"),
        "fid_inception": Field(str, default=None, help="pt_inception-2015-12-05-6726825d.pth; ~: search"),
    }, nullable=True),
)


def save_prior(path, net_g: nn.Module, net_g_ema: nn.Module) -> None:
    """Write ``{'params', 'params_ema'}`` (fp32, contiguous) atomically: the released prior's layout."""
    def plain(net):
        return {k: v.detach().float().cpu().contiguous() for k, v in net.state_dict().items()}

    atomic_save_torch({"params": plain(net_g), "params_ema": plain(net_g_ema)}, path)


def to_uint8(images: torch.Tensor):
    """(B, 3, H, W) in [-1, 1] -> list of (H, W, 3) RGB uint8 arrays."""
    arr = images.float().clamp(-1, 1).add(1).mul(127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return list(arr)


@MODEL_REGISTRY.register()
class StyleGAN2Model(TrainingModel):
    """Trains a StyleGAN2 generator (``network_g``) against ``network_d``; see the module docstring.

    Args:
        opt: Options tree (BasicSR's layout); the keys of :data:`OPTION_SCHEMA` are validated here.
        dist_info: Rank, world size and device; None: this process.
    """

    option_schema = OPTION_SCHEMA

    def build(self, own: dict) -> None:
        """The generator, the discriminator, the losses, the augmentation and the FID set-up."""
        opt, train = self.opt, self.train_opt
        if opt["network_g"]["type"] not in GENERATORS or not opt.get("network_d"):
            raise UserError(f"StyleGAN2Model trains network_g of type {' or '.join(GENERATORS)} against "
                            f"network_d (a StyleGAN2Discriminator); set both.")
        if (opt.get("datasets") or {}).get("val"):
            raise UserError("StyleGAN2Model generates faces and is validated by FID (val.fid_*), not on "
                            "datasets.val; remove datasets.val.")
        self.net_g = self._build_net("network_g")
        self.load_pretrained(self.net_g, "network_g")
        self.net_d = self._build_net("network_d")
        self.load_pretrained(self.net_d, "network_d")
        self.cri_gan = self._loss(train["gan_opt"])
        self.cri_path = PathLengthPenalty(train["path_length_decay"]).to(self.device)
        self.num_style_feat, self.num_latent = self.net_g.num_style_feat, self.net_g.num_latent
        # the sample grid's latents: the same on every rank and run, outside the training stream
        gen = torch.Generator().manual_seed(int(opt.get("manual_seed") or 0))
        self.sample_z = torch.randn(NUM_SAMPLES, self.num_style_feat, generator=gen)
        self.augment = None
        if train["augment"]:
            adaptive = train["augment"] == "ada"
            p = train["augment_p"] if train["augment_p"] is not None else (0.0 if adaptive else 1.0)
            self.augment = DiscriminatorAugment(train["augment_policy"], p, adaptive, train["ada_target"],
                                                train["ada_interval"], train["ada_kimg"])
        self._setup_fid(own.get("val"))
        root = (opt.get("path") or {}).get("experiments_root")  # None: a model built outside a run
        self.models_dir = Path(root) / opt["name"] / "models" if root and opt.get("name") else None

    def init_ema(self) -> None:
        self.ema_from_pretrained()

    def trainable_nets(self) -> Dict[str, nn.Module]:
        return {"net_g": self.net_g, "net_d": self.net_d}

    def build_optimizers(self) -> Dict[str, torch.optim.Optimizer]:
        """G and D with StyleGAN2's lazy-regularisation ratio on lr and betas."""
        train = self.train_opt

        def ratio(weight, every):
            return every / (every + 1) if weight > 0 else 1.0

        block_d = train["optim_d"] or train["optim_g"]
        return {
            "net_g": build_optimizer(self._trainable(self.net_g), train["optim_g"],
                                     ratio(train["path_reg_weight"], train["net_g_reg_every"]), BETAS),
            "net_d": build_optimizer(self._trainable(self.net_d), block_d,
                                     ratio(train["r1_reg_weight"], train["net_d_reg_every"]), BETAS),
        }

    # ------------------------------------------------------------------ one iteration
    def _styles(self, n: int):
        """Latents of ``n`` samples: ``([z], None)`` or, style mixing, ``([z1, z2], crossover)``."""
        train, dev = self.train_opt, self.device
        # the coin and the crossover come from the CPU stream: no device sync
        if train["mixing_prob"] > 0 and float(torch.rand(())) < train["mixing_prob"]:
            z = list(torch.randn(2, n, self.num_style_feat, device=dev).unbind(0))
            return z, int(torch.randint(1, self.num_latent, ()))
        return [torch.randn(n, self.num_style_feat, device=dev)], None

    def _aug(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.augment is None else self.augment(x)

    def _reduce_mean(self, t: torch.Tensor) -> torch.Tensor:
        return sum_over_ranks(t, self.dist) / self.dist.world_size

    def train_step(self, batch: Dict[str, torch.Tensor], it: int) -> Dict[str, float]:
        """One discriminator step (+ lazy R1), one generator step (+ lazy path length), the EMA.

        Every random draw of the step (latents, mixing, the generator's noise, augmentations, the
        path-length directions) comes from a stream of its own, seeded by (manual_seed, rank,
        iteration): the same after a resume whatever else drew from torch's global generator in
        between (a DataLoader draws its base seed there whenever an iterator starts, which a
        run resumed in the middle of an epoch does once more than the uninterrupted one).

        Args:
            batch: {'gt': (B, 3, S, S) real faces in [-1, 1]}; any device.
            it: Current iteration, 1-based.
        Returns:
            {log key: value averaged over ranks}; 'skipped' is 1.0 when a non-finite loss skipped
            an update (the other network's finite step stands; the EMA moves only with G).
        """
        seed = np.random.SeedSequence([int(self.opt.get("manual_seed") or 0), self.dist.rank, it])
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(int(seed.generate_state(1)[0]))
            return self._train_step(batch, it)

    def _train_step(self, batch: Dict[str, torch.Tensor], it: int) -> Dict[str, float]:
        to, g_net, d_net = self.train_opt, self.nets["net_g"], self.nets["net_d"]
        real = batch["gt"].to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        b = real.shape[0]
        logs: Dict[str, torch.Tensor] = {}
        fp16 = self.amp_dtype == torch.float16

        # ---------------- discriminator: logistic loss + lazy R1 on the same real pass ----------------
        self.net_d.requires_grad_(True)
        self.optimizers["net_d"].zero_grad(set_to_none=True)
        styles, cross = self._styles(b)
        with torch.no_grad(), self._autocast():
            fake = g_net.frozen_call(styles, inject_index=cross)[0]
        d_reg = to["r1_reg_weight"] > 0 and it % to["net_d_reg_every"] == 0
        real_in = real.detach().requires_grad_(d_reg)
        with self._autocast():
            fake_pred = d_net.call(self._aug(fake))
        # R1 differentiates D twice: eager (not compiled) and, under fp16, in fp32
        with self._autocast(enabled=not (d_reg and fp16)):
            real_pred = (d_net.wrapped if d_reg else d_net.call)(self._aug(real_in))
        l_d = self.cri_gan(real_pred, True, is_disc=True) + self.cri_gan(fake_pred, False, is_disc=True)
        logs["l_d"] = l_d.detach()
        logs["real_score"] = real_pred.detach().float().mean()
        logs["fake_score"] = fake_pred.detach().float().mean()
        if self.augment is not None:
            logs["real_sign"] = real_pred.detach().float().sign().mean()  # ADA's r_t of this batch
        l_d_total = self.with_r1(l_d, real_pred, real_in, d_reg, logs)
        self._backward(l_d_total)
        d_ok = all_ranks(l_d_total.detach().isfinite(), self.dist)
        if d_ok:
            self._step("net_d")
        self.optimizers["net_d"].zero_grad(set_to_none=True)

        # ---------------- generator: logistic loss + lazy path length ----------------
        self.net_d.requires_grad_(False)  # scored by the plain D: nothing of it to all-reduce
        self.optimizers["net_g"].zero_grad(set_to_none=True)
        styles, cross = self._styles(b)
        with self._autocast():
            fake = g_net.call(styles, inject_index=cross)[0]
            l_g = self.cri_gan(d_net.frozen_call(self._aug(fake)), True, is_disc=False)
        logs["l_g_gan"] = l_g.detach()
        self._backward(l_g)
        g_losses = [l_g.detach()]
        if to["path_reg_weight"] > 0 and it % to["net_g_reg_every"] == 0:
            styles, cross = self._styles(max(1, b // to["path_batch_shrink"]))
            # a double backward through G: eager, and in fp32 under fp16
            with self._autocast(enabled=not fp16):
                fake, latents = g_net.wrapped(styles, inject_index=cross, return_latents=True)
                penalty, lengths = self.cri_path(fake, latents, reduce=self._reduce_mean)
            # + 0 * a pixel: every parameter of G (the style MLP too) is in the graph, as DDP wants
            l_g_path = to["path_reg_weight"] * to["net_g_reg_every"] * penalty + 0 * fake[0, 0, 0, 0].float()
            logs["l_g_path"] = l_g_path.detach()
            logs["path_length"] = lengths.mean()
            self._backward(l_g_path)
            g_losses.append(l_g_path.detach())
        self.net_d.requires_grad_(True)
        g_ok = all_ranks(torch.stack(g_losses).isfinite().all(), self.dist)
        if g_ok:
            self._step("net_g")
            self.ema.update(self.net_g)
        self.optimizers["net_g"].zero_grad(set_to_none=True)
        if self.scaler is not None and (d_ok or g_ok):
            self.scaler.update()

        self._visuals = {"gt": real.detach()[:NUM_SAMPLES]}
        out = mean_over_ranks(logs, self.dist)
        if self.augment is not None:
            out["aug_p"] = self.augment.p  # the p of this iteration's augmentation
            self.augment.observe(out["real_sign"], b * self.dist.world_size)
        if self._fid_due(it):
            out["fid"] = self.fid()
        out["skipped"] = float(not (d_ok and g_ok))
        return out

    # ------------------------------------------------------------------ FID validation
    def _setup_fid(self, val: Optional[dict]) -> None:
        """FID every ``val.val_freq`` iterations when ``val`` is set and the Inception weights exist."""
        from gfpgan.metrics.common import MissingWeightsError, find_weights
        from gfpgan.metrics.fid import INCEPTION_FILE, INCEPTION_URL

        self.fid_opt, self.fid_metric, self._fid_real = None, None, None
        if not val:
            return
        try:
            find_weights(val["fid_inception"], INCEPTION_FILE, "FID", INCEPTION_URL)  # every rank
        except MissingWeightsError as exc:
            if self.dist.is_main:
                logger.warning("%s", exc)
            return
        self.fid_opt = val

    def _fid_due(self, it: int) -> bool:
        if self.fid_opt is None:
            return False
        return it % self.fid_opt["val_freq"] == 0 or it == (self.opt.get("train") or {}).get("total_iter")

    def fid(self) -> float:
        """FID of the EMA generator (rank 0 computes, every rank returns it); forks the RNG."""
        value = None
        if self.dist.is_main:
            devices = [self.device] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                value = self._fid_main()
        return float(broadcast_object(value, self.dist))

    @torch.no_grad()
    def _fid_main(self) -> float:
        from gfpgan.metrics.fid import FIDMetric

        val = self.fid_opt
        if self.fid_metric is None:
            self.fid_metric = FIDMetric(val["fid_inception"], val["fid_stats"], device=str(self.device),
                                        batch_size=val["fid_batch"])
        torch.manual_seed(FID_SEED)
        net, images = self.generator_for_eval(), []
        for start in range(0, val["fid_images"], val["fid_batch"]):
            z = torch.randn(min(val["fid_batch"], val["fid_images"] - start), self.num_style_feat,
                            device=self.device)
            with self._autocast():
                images += to_uint8(net([z], randomize_noise=True)[0])
        feats = self.fid_metric.features(images)
        if val["fid_stats"]:
            return self.fid_metric.score(feats)
        if self._fid_real is None:
            self._fid_real = self.fid_metric.features(self._real_images(val["fid_images"]))
        return self.fid_metric.score(feats, self._fid_real)

    def _real_images(self, n: int):
        """The first ``n`` readable training images, resized to the generator's size (RGB uint8)."""
        import cv2

        from gfpgan.data.ffhq_degradation_dataset import ImageSource

        block = self.opt["datasets"]["train"]
        source = ImageSource(block["dataroot_gt"], block.get("io_backend"))
        size = 2 ** self.net_g.log_size
        out = []
        for i in range(min(n, len(source.keys))):
            img = source.read(i)
            if img is not None:
                if img.shape[:2] != (size, size):
                    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
                out.append(np.ascontiguousarray(img))
        return out

    # ------------------------------------------------------------------ engine interface
    def state_dict(self) -> dict:
        """The shared state plus the path-length mean and the augmentation probability."""
        state = super().state_dict()
        state["stylegan2"] = {"path_mean": self.cri_path.mean.detach().cpu(),
                              "augment": self.augment.state_dict() if self.augment is not None else None}
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        own = state.get("stylegan2") or {}
        if "path_mean" in own:
            self.cri_path.mean.copy_(own["path_mean"])
        if self.augment is not None and own.get("augment"):
            self.augment.load_state_dict(own["augment"])

    def networks_to_save(self) -> Dict[str, tuple]:
        """``net_g``, ``net_g_ema``, ``net_d``; also writes ``models/stylegan2_prior.pth`` (rank 0),
        the released prior's layout, for GFP-GAN's ``decoder_load_path``."""
        if self.models_dir is not None and self.dist.is_main:
            self.models_dir.mkdir(parents=True, exist_ok=True)
            save_prior(self.models_dir / PRIOR_FILE, self.net_g, self.ema.module)
        return super().networks_to_save()

    @torch.no_grad()
    def last_visuals(self) -> Dict[str, torch.Tensor]:
        """{'lq': G(z), 'output': G_ema(z), 'gt': real}: fixed latents and noise buffers (no RNG)."""
        real = self._visuals.get("gt")
        z = self.sample_z[:NUM_SAMPLES if real is None else real.shape[0]].to(self.device)
        live = self.net_g([z], randomize_noise=False)[0].float().cpu()
        ema = self.generator_for_eval()([z], randomize_noise=False)[0].float().cpu()
        real = torch.zeros_like(live) if real is None else real.float().cpu()
        return {"lq": live, "output": ema, "gt": real}

    def restore(self, lq: torch.Tensor) -> torch.Tensor:
        raise UserError("StyleGAN2Model generates faces from latents; it restores none (no datasets.val).")
