"""The training loop, top to bottom.

``train(opt)`` is everything between a validated options dict and a finished run:

1. process group from torchrun's environment (nccl on CUDA, gloo on CPU; device from LOCAL_RANK);
2. the run folder ``<experiments_root>/<name>`` (checked writable before anything else);
3. the state to resume (``path.resume_state``, or the newest complete one with ``--auto-resume``),
   checked to belong to this experiment;
4. seeds (``manual_seed + rank``), the train loader (resumable distributed sampler) and val loader;
5. the model (``MODEL_REGISTRY[model_type](opt, dist_info)``, driven only through the
   :class:`~gfpgan.engine.train_model.TrainModel` protocol: networks, DDP, losses, optimizers);
6. the loop: learning rate -> ``model.train_step(batch, it)`` -> skip/stop on non-finite losses ->
   logs -> validation every ``val.val_freq`` (best checkpoint kept) -> training state every
   ``logger.save_checkpoint_freq`` -> stop cleanly on SIGTERM/SIGINT after saving a state.

Resuming on the world size a state was saved with reproduces an uninterrupted run exactly, with
any number of DataLoader workers: the state holds the model (networks, EMA, optimizers,
schedulers, grad scaler), the iteration, every rank's RNG states and the sampler position (epoch,
next batch). Every other draw is a pure function of the seed: the data order of
``(seed, epoch)``, each sample (flip, degradations, crops) of ``(seed, epoch, index)`` whichever
worker or rank makes it (:class:`~gfpgan.engine.sampler.SeededSamples`), the DataLoader's worker
seeds of ``(seed, rank, epoch)`` on a generator of their own. The RNG states are restored last,
right before the first iteration, so that nothing set up before the loop (loaders, logger, the
validation metrics' networks) can shift them; validation and the model's probes fork the RNG.
"""

import inspect
import signal
from pathlib import Path
from typing import Dict, Iterator, Optional, Sequence

from torch.utils.data import DataLoader

from gfpgan.dist import DistInfo, any_rank, barrier, broadcast_object, cleanup, gather_objects, init_dist
from gfpgan.engine.checkpoint_manager import CheckpointManager, get_rng_state, set_rng_state
from gfpgan.engine.logger import Timer, TrainLogger
from gfpgan.engine.run_info import write_run_info
from gfpgan.engine.sampler import (
    ResumableDistributedSampler,
    SeededSamples,
    loader_generator,
    make_worker_init_fn,
    seed_everything,
    seed_loader,
)
from gfpgan.engine.train_model import TrainModel
from gfpgan.errors import UserError
from gfpgan.options import LOADER_KEYS
from gfpgan.registry import DATASET_REGISTRY, MODEL_REGISTRY


class TrainingStopped(UserError):
    """Too many non-finite losses in a row: the run stops, the last good checkpoint stays."""


# ------------------------------------------------------------------------- setup steps
def _raise_agreed(message: Optional[str], dist_info: DistInfo) -> None:
    """Raise rank 0's error (if any) on every rank, so all ranks stop with the same sentence."""
    message = broadcast_object(message, dist_info)
    if message:
        raise UserError(message)


def prepare_run_dir(opt: dict, dist_info: DistInfo) -> Path:
    """Create ``<experiments_root>/<name>`` on rank 0 and check that it is writable."""
    run_dir = Path(opt["path"]["experiments_root"]) / opt["name"]
    error = None
    if dist_info.is_main:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            probe = run_dir / ".write_test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            error = (f"the run folder '{run_dir}' is not writable ({exc.strerror}); set "
                     f"path.experiments_root to a writable folder")
    _raise_agreed(error, dist_info)
    return run_dir


def find_resume_state(opt: dict, ckpt: CheckpointManager, auto_resume: bool,
                      dist_info: DistInfo, warn) -> Optional[dict]:
    """The training state to start from, or None for a fresh run (same on every rank).

    Rank 0 picks and checks it (a foreign or corrupt state is an error for every rank); the
    other ranks then read the same file (multi-node: experiments/ on a shared file system).
    """
    path, state, error = None, None, None
    if dist_info.is_main:
        explicit = opt["path"]["resume_state"]
        try:
            if explicit:
                path, state = str(explicit), ckpt.load(explicit)
            elif auto_resume:
                found = ckpt.load_newest(warn=warn)
                path, state = (str(found[0]), found[1]) if found else (None, None)
            elif ckpt.state_iters():
                error = (f"the run folder '{ckpt.run_dir}' already holds training states; pass "
                         f"--auto-resume to continue it, or change 'name' to start a new run")
        except UserError as exc:
            error = str(exc)
    _raise_agreed(error, dist_info)
    path = broadcast_object(path, dist_info)
    if path and state is None:
        state = ckpt.load(path)
    return state


def build_dataset(block: dict, seed: Optional[int] = None):
    """Build a dataset from its options block (loader keys removed; ``seed`` if it takes one)."""
    import gfpgan.data  # noqa: F401  (fills DATASET_REGISTRY)

    kwargs = {k: v for k, v in block.items() if k not in LOADER_KEYS}
    if seed is not None and "seed" not in kwargs and "seed" in _params(DATASET_REGISTRY.get(kwargs["type"])):
        kwargs["seed"] = seed  # the dataset's own sample randomness follows manual_seed
    return DATASET_REGISTRY.build(kwargs)


def _params(cls) -> set:
    try:
        return set(inspect.signature(cls).parameters)
    except (TypeError, ValueError):
        return set()


def build_train_loader(opt: dict, dataset, dist_info: DistInfo):
    """The train DataLoader and its resumable sampler.

    The loader's dataset is ``dataset`` wrapped in :class:`SeededSamples` (samples of
    ``(manual_seed, epoch, index)``); its generator is a private one that :func:`batches` reseeds
    every epoch, so creating an iterator never draws from the global torch stream.
    """
    block = opt["datasets"]["train"]
    batch = block["batch_size_per_gpu"]
    sampler = ResumableDistributedSampler(
        len(dataset), dist_info.world_size, dist_info.rank, shuffle=block["use_shuffle"],
        seed=opt["manual_seed"], enlarge_ratio=block["dataset_enlarge_ratio"])
    if sampler.num_samples < batch:
        raise UserError(f"the training set '{block['name']}' has {len(dataset)} items, fewer than "
                        f"one batch per rank ({batch} x {dist_info.world_size} ranks); add images "
                        f"or lower datasets.train.batch_size_per_gpu")
    workers = block["num_worker_per_gpu"]
    loader = DataLoader(
        SeededSamples(dataset, opt["manual_seed"]), batch_size=batch, sampler=sampler,
        num_workers=workers, drop_last=True,
        pin_memory=block["pin_memory"] and dist_info.device.type == "cuda",
        worker_init_fn=make_worker_init_fn(opt["manual_seed"], dist_info.rank),
        generator=loader_generator(),
        # samples depend on the epoch (set_epoch), which persistent workers would not see
        persistent_workers=False)
    return loader, sampler


def sampler_position(done_iters: int, loader: DataLoader, sampler: ResumableDistributedSampler,
                     dist_info: DistInfo) -> Dict[str, int]:
    """Where the data stream stands after ``done_iters`` iterations (epoch, next batch in it)."""
    per_epoch = sampler.num_samples // loader.batch_size
    epoch, next_batch = divmod(done_iters, per_epoch)
    return {"epoch": epoch, "next_batch": next_batch, "iters_per_epoch": per_epoch,
            "batch_size": loader.batch_size, "world_size": dist_info.world_size}


def batches(loader: DataLoader, sampler: ResumableDistributedSampler, epoch: int, k: int,
            seed: int = 0, rank: int = 0) -> Iterator:
    """Endless ``(epoch, batch)`` pairs, starting at batch ``k`` of ``epoch``.

    Each epoch sets the sampler's permutation, the dataset's epoch and the loader generator's
    seed before its iterator is created, so a run resumed at batch ``k`` gets the batches the
    uninterrupted run got, whichever worker makes them, without drawing from the global RNG.
    """
    while True:
        sampler.set_epoch(epoch)
        sampler.set_start(k * loader.batch_size)
        if hasattr(loader.dataset, "set_epoch"):
            loader.dataset.set_epoch(epoch)
        seed_loader(loader.generator, seed, rank, epoch)
        for batch in loader:
            yield epoch, batch
        epoch, k = epoch + 1, 0


class _StopFlag:
    """SIGTERM/SIGINT set a flag; the loop saves a state and exits at the end of the iteration."""

    def __init__(self):
        self.signal = None
        self._old = {}

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._old[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.signal = signal.Signals(signum).name

    def restore(self) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


# ------------------------------------------------------------------------- the loop
def train(opt: dict, argv: Sequence[str] = (), auto_resume: bool = False, device: str = "auto",
          dist_info: Optional[DistInfo] = None) -> int:
    """Run (or resume) one training experiment.

    Args:
        opt: Options validated by :func:`gfpgan.options.load_train_options`.
        argv: The command line, recorded in the run folder.
        auto_resume: Continue from the newest complete training state when there is one.
        device: "auto", "cpu" or "cuda" (the rank's GPU is LOCAL_RANK).
        dist_info: An already initialised process (tests); default: from torchrun's environment.
    Returns:
        0 when the run finished or was stopped by a signal after saving its state.
    Raises:
        UserError: bad run folder/resume state/dataset, or too many non-finite losses.
    """
    dist_info = dist_info or init_dist(device)
    run_dir = prepare_run_dir(opt, dist_info)
    train_opt, log_opt, val_opt = opt["train"], opt["logger"], opt["val"]
    total_iter = train_opt["total_iter"]
    ckpt = CheckpointManager(run_dir, opt["name"], keep=log_opt["keep_checkpoints"],
                             is_main=dist_info.is_main)
    state = find_resume_state(opt, ckpt, auto_resume, dist_info, warn=print)
    start_iter = int(state["iter"]) if state else 0
    if dist_info.is_main:
        write_run_info(run_dir, opt, argv)

    # every rank builds identical networks (frozen ones and the EMA copy included, which DDP
    # does not broadcast), then draws its own random stream: seed + rank
    seed_everything(opt["manual_seed"])
    model: TrainModel = MODEL_REGISTRY.get(opt["model_type"])(opt, dist_info)
    seed_everything(opt["manual_seed"] + dist_info.rank)
    train_set = build_dataset(opt["datasets"]["train"], seed=opt["manual_seed"])
    loader, sampler = build_train_loader(opt, train_set, dist_info)
    val_block = opt["datasets"]["val"]
    val_set = build_dataset(val_block, seed=opt["manual_seed"]) if val_block and val_opt else None

    best = state.get("best") if state else None  # best validation score so far
    saved_position = state.get("sampler") if state else None
    saved_rng = None
    if state:
        model.load_state_dict(state["model"])
        if state.get("world_size") == dist_info.world_size:
            saved_rng = state["rng"][dist_info.rank]  # restored right before the loop
        elif dist_info.is_main:
            print(f"warning: resuming a {state.get('world_size')}-rank state on "
                  f"{dist_info.world_size} ranks: RNG streams restart (not bit-identical)")
        del state

    logger = TrainLogger(run_dir, total_iter, start_iter, dist_info.is_main,
                         log_opt["use_tb_logger"])
    logger.info(f"{'resuming' if start_iter else 'starting'} '{opt['name']}' at iteration "
                f"{start_iter} of {total_iter} on {dist_info.world_size} rank(s), device "
                f"{dist_info.device}; {len(train_set)} training items, "
                f"{sampler.num_samples // loader.batch_size} iterations per epoch")
    validator = None
    if val_set is not None:
        from gfpgan.engine.validation import Validator, val_loader

        validator = Validator(val_opt["metrics"], dist_info, val_opt["lpips_weights"],
                              warn=logger.warning)
        vloader = val_loader(val_set, dist_info, val_block["batch_size_per_gpu"],
                             val_block["num_worker_per_gpu"])

    def save_state(it: int, epoch: int) -> None:
        rngs = gather_objects(get_rng_state(dist_info.device), dist_info)
        if dist_info.is_main:
            path = ckpt.save(it, model.networks_to_save(), {
                "model": model.state_dict(), "rng": rngs, "world_size": dist_info.world_size,
                "sampler": sampler_position(it, loader, sampler, dist_info),
                "best": best, "options": opt})
            logger.info(f"saved training state {path}")
        barrier()

    stop = _StopFlag()
    stop.install()
    bad_steps, epoch = 0, 0
    position = sampler_position(start_iter, loader, sampler, dist_info)
    if saved_position and saved_position != position:
        logger.warning(f"the data stream was saved at {saved_position} but these options give "
                       f"{position} (batch size or world size changed): the sample order differs "
                       f"from an uninterrupted run")
    data = batches(loader, sampler, position["epoch"], position["next_batch"],
                   seed=opt["manual_seed"], rank=dist_info.rank)
    if saved_rng is not None:  # last: nothing between here and the first step draws
        set_rng_state(saved_rng, dist_info.device)
    failed = False
    try:
        for it in range(start_iter + 1, total_iter + 1):
            with Timer() as t_iter:
                with Timer() as t_data:
                    epoch, batch = next(data)
                model.update_learning_rate(it)
                logs = model.train_step(batch, it)

            # a non-finite loss: the model skipped the update on every rank; stop if it persists
            if logs.pop("skipped", 0.0):
                bad_steps += 1
                logger.warning(f"iteration {it}: non-finite loss, update skipped "
                               f"({bad_steps} in a row)")
                if bad_steps >= train_opt["max_nonfinite_steps"]:
                    last = ckpt.state_iters()
                    where = f"training_states/{max(last)}.state" if last else "no state yet"
                    raise TrainingStopped(
                        f"training stopped at iteration {it} after {bad_steps} non-finite losses "
                        f"in a row; the last good checkpoint in '{run_dir}' is {where}: lower the "
                        f"learning rate or check the data, then resume with --auto-resume")
            else:
                bad_steps = 0

            logger.record_times(t_iter.seconds, t_data.seconds)
            logger.log_iter(it, epoch, logs, model.current_learning_rates(),
                            print_line=it % log_opt["print_freq"] == 0 or it == start_iter + 1)
            if it % log_opt["image_freq"] == 0 and dist_info.is_main and log_opt["use_tb_logger"]:
                vis = model.last_visuals()
                logger.log_images(it, vis["lq"], vis["output"], vis["gt"])

            if validator is not None and (it % val_opt["val_freq"] == 0 or it == total_iter):
                metrics = validator.run(
                    model.restore, vloader, max_images=val_opt["max_images"],
                    save_dir=run_dir / "visualization" / str(it) if val_opt["save_img"] else None,
                    suffix=val_opt["suffix"])
                note = None
                name = validator.main_metric
                if name is not None and validator.is_better(name, metrics[name], best):
                    best = metrics[name]
                    note = f"best {name} so far"
                    if dist_info.is_main:
                        ckpt.save_best(it, model.networks_to_save(), name, best)
                logger.log_val(it, metrics, note)

            # after validation, so that the state carries this iteration's best score; not in
            # the middle of a non-finite streak, so the newest state stays the last good one
            if it == total_iter or (it % log_opt["save_checkpoint_freq"] == 0 and not bad_steps):
                save_state(it, epoch)

            if any_rank(stop.signal is not None, dist_info):
                if it % log_opt["save_checkpoint_freq"] != 0 and it != total_iter:
                    save_state(it, epoch)  # skipped steps changed nothing: safe to save
                logger.info(f"stopped by {stop.signal or 'a signal on another rank'} at iteration "
                            f"{it}; the state is saved: rerun with --auto-resume to continue")
                return 0
        logger.info(f"finished '{opt['name']}' at iteration {total_iter}; networks in "
                    f"{ckpt.models_dir}")
        return 0
    except BaseException:
        failed = True
        raise
    finally:
        stop.restore()
        logger.close()
        cleanup(synchronize=not failed)
