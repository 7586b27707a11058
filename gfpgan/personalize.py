"""Personalize a restorer on one person's faces: ``python -m gfpgan.personalize SRC --model BASE -o F``.

The source paper keeps the faces met during inference "to train the model again". Here the faces
of one person that are good enough to be targets (sharp, and at least as large in their source as
the model's crop, so nothing was upsampled: a collected ``faces.lmdb``, a folder of photos, or the
near frames of the video itself with ``infer_video --personalize``) teach the base what this face
looks like when it is degraded the way the video degrades it.

* **What is tuned**: the ``adapter`` scope (CS-SFT conditions and the decoder's style modulations;
  :func:`gfpgan.personal_file.tuned_names`), the modulations alone (``style``) or the ``full``
  generator.
* **Inputs**: each target degraded by the data pipeline (:mod:`gfpgan.data.degradations`: blur,
  downsampling, noise, JPEG), with ranges scaled to the model's size or matched to the faces a
  video will restore (:func:`matched_degradation`). Every draw is a pure function of (seed,
  iteration), so a resumed run is the uninterrupted one.
* **Loss and stop**: L1 to the target with the generator in eval mode (fixed noise), Adam, an EMA of
  the tuned tensors, and an early stop on a held-out part of the targets (PSNR of their degraded
  versions restored by the EMA); the best EMA is written.
* **Output**: one personal file (:mod:`gfpgan.personal_file`) naming its base by sha256, used with
  ``--personal FILE`` by ``infer_image`` and ``infer_video``. A state file beside it makes an
  interrupted run resumable.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import math
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from gfpgan.cli import add_common_arguments
from gfpgan.errors import UserError, command
from gfpgan.personal_file import SCOPES

__all__ = ["Tuning", "default_degradation", "matched_degradation", "tune", "load_targets",
           "personalize_on", "personalize"]


@dataclasses.dataclass(frozen=True)
class Tuning:
    """One personalization run's settings (the command line's defaults).

    Attributes:
        scope: "adapter" or "full" (see :data:`gfpgan.personal_file.SCOPES`).
        iters: the most iterations (an early stop may end sooner).
        batch: targets per iteration.
        lr: Adam's learning rate.
        ema: decay of the tuned tensors' moving average (what is evaluated and written).
        seed: every random draw derives from it.
        holdout: fraction of the targets held out for the early stop (none with one target).
        eval_every: iterations between held-out evaluations (and resume states).
        patience: evaluations without improvement before stopping.
        degradation: keyword ranges for :func:`gfpgan.data.degradations.sample_degradation`.
        jitter: the largest (shift as a fraction of the side, zoom fraction, rotation in degrees)
            of a random similarity transform applied to each target before it is degraded (the
            faces to restore are aligned from landmarks found on degraded faces, which err by a
            few pixels and degrees; (0, 0, 0) turns it off).
    """

    scope: str = "adapter"
    iters: int = 300
    batch: int = 4
    lr: float = 2e-3
    ema: float = 0.9
    seed: int = 0
    holdout: float = 0.25
    eval_every: int = 25
    patience: int = 4
    degradation: Dict = dataclasses.field(default_factory=dict)
    jitter: Tuple[float, float, float] = (0.04, 0.06, 5.0)


def default_degradation(size: int) -> Dict:
    """The training recipe's degradation ranges, scaled to a ``size`` px model (41 px blur kernels
    and 8x downsampling at 512, 11 px and 4x at 64)."""
    return dict(blur_kernel_size=41 if size >= 256 else 11, blur_sigma=[0.1, max(2.0, 10.0 * size / 512)],
                downsample_range=[0.8, max(4.0, 8.0 * size / 512)], noise_range=[0, 15],
                jpeg_range=[60, 100])


def matched_degradation(size: int, face_scales: Sequence[float]) -> Dict:
    """:func:`default_degradation` with the downsampling of the faces a video will restore.

    Args:
        size: the model's crop side.
        face_scales: source pixels per crop pixel of the faces to restore (< 1: smaller than the
            crop); their spread, widened a little, is the downsampling range.
    """
    d = default_degradation(size)
    down = [1.0 / max(s, 1e-3) for s in face_scales if s < 1.0]
    if down:
        d["downsample_range"] = [max(0.8, min(down) * 0.8), max(1.2, max(down) * 1.25)]
    return d


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, *keys])


def _degrade(target: np.ndarray, rng: np.random.Generator, ranges: Dict) -> np.ndarray:
    from gfpgan.data.degradations import apply_degradation, sample_degradation

    params = sample_degradation(rng, **ranges)
    return apply_degradation(target.astype(np.float32) / 255.0, params)


def _jitter(target: np.ndarray, rng: np.random.Generator, jitter: Sequence[float]) -> np.ndarray:
    """``target`` under a random similarity transform within ``jitter`` (see :class:`Tuning`)."""
    import cv2

    shift, zoom, rotate = jitter
    size = target.shape[0]
    m = cv2.getRotationMatrix2D((size / 2, size / 2), rotate * rng.uniform(-1, 1),
                                1 + zoom * rng.uniform(-1, 1))
    m[:, 2] += shift * size * rng.uniform(-1, 1, 2)
    return cv2.warpAffine(target, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)


def _batch(targets: List[np.ndarray], idx: Sequence[int], tuning: Tuning, keys: Tuple[int, ...],
           device, jitter: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
    """Degraded inputs and their targets, (B, 3, S, S) in [-1, 1]; a pure function of ``keys``
    (``jitter``: move each target first, as :attr:`Tuning.jitter` says)."""
    move = jitter and any(tuning.jitter)
    picked = [_jitter(targets[i], _rng(tuning.seed, 4, *keys, j), tuning.jitter) if move else targets[i]
              for j, i in enumerate(idx)]
    lq = [_degrade(t, _rng(tuning.seed, *keys, j), tuning.degradation) for j, t in enumerate(picked)]
    gt = [t.astype(np.float32) / 255.0 for t in picked]

    def t(images):
        return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).to(device).mul(2).sub(1)
    return t(lq), t(gt)


def _targets_digest(targets: List[np.ndarray]) -> str:
    h = hashlib.sha256()
    for t in targets:
        h.update(np.ascontiguousarray(t).tobytes())
    return h.hexdigest()


def _psnr(out: torch.Tensor, gt: torch.Tensor) -> float:
    mse = ((out.clamp(-1, 1) - gt) / 2).pow(2).mean().item()
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def tune(net: nn.Module, targets: List[np.ndarray], tuning: Tuning, device="cpu",
         state_path: Optional[Path] = None, progress: bool = True) -> Tuple[List[str], Dict]:
    """Tune ``net`` in place on ``targets``; returns the tuned names and what was measured.

    Args:
        net: the base generator (its tuned tensors end as the best EMA's).
        targets: aligned RGB uint8 (S, S, 3) faces at the model's size.
        tuning: the settings.
        state_path: where to keep a resume state (None: no resume).
        progress: a progress bar.
    """
    from gfpgan.files import atomic_path
    from gfpgan.personal_file import tuned_names

    if not targets:
        raise UserError("no face qualifies as a personalization target; nothing tuned.")
    names = tuned_names(net, tuning.scope)
    net.to(device).eval()
    params = dict(net.named_parameters())
    for n, p in params.items():
        p.requires_grad_(n in names)
    tuned = [params[n] for n in names]
    ema = [p.detach().clone() for p in tuned]
    opt = torch.optim.Adam(tuned, lr=tuning.lr)
    order = _rng(tuning.seed, 0).permutation(len(targets))
    n_held = int(round(tuning.holdout * len(targets))) if len(targets) > 1 else 0
    held, train = sorted(order[:n_held]), sorted(order[n_held:])
    eval_in, eval_gt = _batch(targets, held, tuning, (1,), device, jitter=False) if held else (None, None)
    digest = _targets_digest(targets)

    def evaluate() -> float:
        if eval_in is None:
            return float("nan")
        live = [p.detach().clone() for p in tuned]
        with torch.no_grad():
            for p, e in zip(tuned, ema):
                p.copy_(e)
            score = _psnr(net(eval_in)[0], eval_gt)
            for p, v in zip(tuned, live):
                p.copy_(v)
        return score

    start, best, history, bad = 0, None, [], 0
    if state_path is not None and state_path.is_file():
        st = torch.load(state_path, map_location="cpu", weights_only=True)
        if st["digest"] != digest or st["tuning"] != repr(tuning) or st["names"] != names:
            raise UserError(f"{state_path} is the state of another personalization (other targets or "
                            f"settings); delete it or rerun with --restart.")
        with torch.no_grad():
            for p, v, e, ev in zip(tuned, st["params"], ema, st["ema"]):
                p.copy_(v)
                e.copy_(ev)
        opt.load_state_dict(st["opt"])
        start, history, bad = st["it"], st["history"], st["bad"]
        best = (st["best_psnr"], st["best_it"], st["best"]) if st["best"] else None
    base_psnr = history[0][1] if history else evaluate()
    if not history:
        history.append((0, base_psnr))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=tuning.iters, initial=start, desc="personalize", unit="it", leave=False)
    it = start
    while it < tuning.iters and bad < tuning.patience:
        pick = _rng(tuning.seed, 2, it).choice(train, size=tuning.batch, replace=len(train) < tuning.batch)
        x, gt = _batch(targets, pick, tuning, (3, it), device)
        loss = (net(x)[0] - gt).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            for e, p in zip(ema, tuned):
                e.lerp_(p, 1.0 - tuning.ema)
        it += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if it % tuning.eval_every == 0 or it == tuning.iters:
            score = evaluate()
            history.append((it, score))
            if best is None or not score <= best[0]:  # NaN (no held-out part): the last EMA
                best, bad = (score, it, [e.clone() for e in ema]), 0
            else:
                bad += 1
            if state_path is not None:
                state = {"digest": digest, "tuning": repr(tuning), "names": names, "it": it,
                         "params": [p.detach().clone() for p in tuned], "ema": ema,
                         "opt": opt.state_dict(), "history": history, "bad": bad,
                         "best_psnr": best[0], "best_it": best[1], "best": best[2]}
                with atomic_path(state_path, fsync=True) as tmp:
                    torch.save(state, tmp)
    if bar is not None:
        bar.close()
    with torch.no_grad():
        for p, v in zip(tuned, best[2] if best else ema):
            p.copy_(v)
    for p in params.values():
        p.requires_grad_(False)
    info = {"targets": len(targets), "held_out": len(held), "iterations": it,
            "best_iteration": best[1] if best else it, "held_out_psnr_base": base_psnr,
            "held_out_psnr": best[0] if best else float("nan"), "history": history,
            "tuning": dataclasses.asdict(tuning)}
    return names, info


def load_targets(sources: Sequence[str], size: int, device="cpu", min_scale: float = 1.0) -> List[np.ndarray]:
    """Aligned faces at ``size`` from LMDBs of ``--collect``, folders of images, or image files.

    An image that is already ``size`` x ``size`` is taken as aligned; any other is searched for its
    largest face, which qualifies only when it spans at least ``min_scale`` source pixels per crop
    pixel (it was not upsampled to make the target).
    """
    from gfpgan.images import decode_image, list_images, read_image

    faces: List[np.ndarray] = []
    photos = []
    for src in sources:
        p = Path(src)
        if (p / "data.mdb").is_file() or (p / "faces.lmdb" / "data.mdb").is_file():
            from gfpgan.data.file_backends import LmdbBackend, read_meta_info
            from gfpgan.inference.tracks.face_database import METADATA_FILE

            root = p if (p / "data.mdb").is_file() else p / "faces.lmdb"
            backend = LmdbBackend(root)
            keys = read_meta_info(root)
            if (root / METADATA_FILE).is_file():  # a face database: its training targets only
                with open(root / METADATA_FILE, newline="") as f:
                    rows = {r["key"]: r for r in csv.DictReader(f)}
                keys = [k for k in keys if rows.get(k, {}).get("target", "1") == "1"]
            photos += [decode_image(backend.get(k), f"{root}:{k}") for k in keys]
        elif p.is_dir():
            photos += [read_image(f) for f in list_images(p)]
        elif p.is_file():
            photos.append(read_image(p))
        else:
            raise UserError(f"{src} is neither an image, a folder of images nor a faces.lmdb; "
                            f"check the path.")
    detector = None
    for img in photos:
        if img.shape[:2] == (size, size):
            faces.append(img)
            continue
        if detector is None:
            from gfpgan.inference.faces.detection import build_detector

            detector = build_detector("mtcnn", device=device)
        det = detector.detect([img])[0]
        if len(det) == 0:
            continue
        from gfpgan.inference.faces.alignment import estimate_affine, warp_face

        k = int(np.argmax((det.boxes[:, 2:] - det.boxes[:, :2]).prod(1)))
        m = estimate_affine(det.landmarks[k], size)
        if 1.0 / math.sqrt(abs(np.linalg.det(m[:, :2]))) >= min_scale:
            faces.append(warp_face(img, m, size))
    return faces


def personalize_on(targets: List[np.ndarray], model: str, out: str, tuning: Tuning, device="cpu",
                   restart: bool = False, progress: bool = True) -> Dict:
    """Tune ``model`` on aligned ``targets`` and write the personal file ``out``; returns what was
    measured. A state file beside ``out`` resumes an interrupted run (``restart`` discards it)."""
    from gfpgan.checkpoint import state_dict_sha256
    from gfpgan.networks import load_network
    from gfpgan.personal_file import save_personal

    net, arch, kwargs, _ = load_network(model)
    if not tuning.degradation:
        tuning = dataclasses.replace(tuning, degradation=default_degradation(model_size(kwargs)))
    base_sha = state_dict_sha256(net)
    state = Path(out).with_name(f".{Path(out).name}.state.pt")
    if restart and state.exists():
        state.unlink()
    names, info = tune(net, targets, tuning, device, state, progress)
    save_personal(out, net.cpu(), names, base_sha, arch, kwargs, base_name=Path(str(model)).name,
                  scope=tuning.scope, info=info)
    state.unlink(missing_ok=True)
    return info


def model_size(kwargs: Dict) -> int:
    """The crop side of a generator built with ``kwargs``."""
    return int(kwargs.get("out_size", 512))


def personalize(sources: Sequence[str], model: str, out: str, tuning: Tuning, device="cpu",
                restart: bool = False, progress: bool = True) -> Dict:
    """Load the targets of ``sources``, then :func:`personalize_on`."""
    from gfpgan.checkpoint import read_config
    from gfpgan.inference.faces.model import resolve_device
    from gfpgan.networks import load_network

    dev = resolve_device(device)
    try:
        size = model_size(read_config(model)["kwargs"])
    except UserError:  # a card or an official file: build it to learn its size
        size = model_size(load_network(model)[2])
    targets = load_targets(sources, size, dev)
    if not targets:
        raise UserError(f"no face in {', '.join(sources)} qualifies as a target (an aligned {size} px "
                        f"face, or a photo whose face spans at least {size} px); nothing written.")
    return personalize_on(targets, model, out, tuning, dev, restart, progress)


def build_parser() -> argparse.ArgumentParser:
    d = Tuning()
    p = argparse.ArgumentParser(prog="gfpgan-personalize", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("source", nargs="+",
                   help="a faces.lmdb from --collect, folders of photos or image files")
    p.add_argument("--model", required=True, help="the base: a model card name or a generator file")
    p.add_argument("-o", "--output", required=True, help="the personal file to write (.safetensors)")
    p.add_argument("--scope", default=d.scope, choices=SCOPES, help="what is tuned (gfpgan.personal_file)")
    p.add_argument("--iters", type=int, default=d.iters, help="the most iterations")
    p.add_argument("--batch", type=int, default=d.batch, help="targets per iteration")
    p.add_argument("--lr", type=float, default=d.lr, help="learning rate")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of every random draw")
    add_common_arguments(p, device=True, quiet=True, resumable=True)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if Path(args.output).exists() and not args.overwrite:
        raise UserError(f"{args.output} exists; pass --overwrite to replace it.")
    if args.iters < 1 or args.batch < 1 or args.lr <= 0:
        raise UserError("--iters and --batch must be >= 1 and --lr positive.")
    tuning = Tuning(scope=args.scope, iters=args.iters, batch=args.batch, lr=args.lr, seed=args.seed)
    info = personalize(args.source, args.model, args.output, tuning, args.device, args.restart,
                       not args.quiet)
    print(f"wrote {args.output}: {info['targets']} targets ({info['held_out']} held out), "
          f"{info['iterations']} iterations; held-out PSNR {info['held_out_psnr_base']:.2f} -> "
          f"{info['held_out_psnr']:.2f} dB (best at {info['best_iteration']})", file=sys.stderr)
    return 0


cli = command(main)  # the console script

if __name__ == "__main__":
    cli()
