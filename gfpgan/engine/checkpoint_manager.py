"""Periodic checkpoints and resumable training states for one run folder.

Layout under ``experiments/<name>/``::

    models/<net>_<iter>.safetensors     self-describing networks (gfpgan.checkpoint.save_network)
    models/<net>_best.safetensors       best validation score so far (+ best.json)
    training_states/<iter>.state        optimizers, schedulers, EMA, iteration, RNG of every rank,
                                        sampler position (torch.save, loaded with weights_only)

Every file is written atomically (temp + rename) by rank 0, networks first and the state last,
so a state file that exists means its checkpoint is complete. Only the newest ``keep`` states
(and their network files) are kept. Auto-resume takes the newest state that loads; a truncated
or foreign file is skipped with a warning.
"""

import json
import random
import re
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from gfpgan.checkpoint import atomic_save_torch, save_network
from gfpgan.errors import UserError

STATE_FORMAT = "gfpgan-video-train-state/1"
_STATE_RE = re.compile(r"^(\d+)\.state$")


# ----------------------------------------------------------------------------- RNG states
def get_rng_state(device: Optional[torch.device] = None) -> Dict[str, Any]:
    """This process's RNG states as weights_only-loadable values (tensors, ints, lists)."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
    }
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: Dict[str, Any], device: Optional[torch.device] = None) -> None:
    """Restore what :func:`get_rng_state` returned."""
    torch.set_rng_state(state["torch"].cpu())
    npst = state["numpy"]
    np.random.set_state(("MT19937", npst["keys"].numpy().astype(np.uint32), npst["pos"],
                         npst["has_gauss"], npst["cached"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    if device is not None and device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


# ----------------------------------------------------------------------------- the manager
class CheckpointManager:
    """Saves networks + training states every N iterations and finds the newest complete one.

    Args:
        run_dir: The run folder (``experiments/<name>``).
        experiment: The experiment name, stored in every state and checked on resume.
        keep: How many training states (and their network files) to keep.
        is_main: Only the main rank writes files.
    """

    def __init__(self, run_dir, experiment: str, keep: int = 3, is_main: bool = True):
        self.run_dir = Path(run_dir)
        self.models_dir = self.run_dir / "models"
        self.states_dir = self.run_dir / "training_states"
        self.experiment = experiment
        self.keep = max(1, int(keep))
        self.is_main = is_main
        if is_main:
            self.models_dir.mkdir(parents=True, exist_ok=True)
            self.states_dir.mkdir(parents=True, exist_ok=True)

    # -- writing -------------------------------------------------------------------------
    def save_networks(self, networks: Dict[str, Tuple[torch.nn.Module, str, dict]], tag: str,
                      extra: Optional[dict] = None) -> List[Path]:
        """Write each ``name -> (net, arch, kwargs)`` as ``models/<name>_<tag>.safetensors``."""
        paths = []
        for name, (net, arch, kwargs) in networks.items():
            path = self.models_dir / f"{name}_{tag}.safetensors"
            save_network(path, net, arch, kwargs, extra=dict(extra or {}, network=name))
            paths.append(path)
        return paths

    def save(self, it: int, networks: Dict[str, Tuple[torch.nn.Module, str, dict]],
             state: Dict[str, Any]) -> Path:
        """Write the networks of iteration ``it``, then its training state, then prune.

        Args:
            it: The number of completed iterations.
            networks: ``model.networks_to_save()``.
            state: The training state (model state dict, RNG states, sampler position ...);
                ``format``, ``experiment`` and ``iter`` are added here.
        """
        extra = {"experiment": self.experiment, "iter": int(it)}
        self.save_networks(networks, str(it), extra)
        path = self.states_dir / f"{it}.state"
        atomic_save_torch(dict(state, format=STATE_FORMAT, experiment=self.experiment,
                               iter=int(it)), path)
        self.prune()
        return path

    def save_best(self, it: int, networks, metric: str, value: float) -> None:
        """Keep ``models/<net>_best.safetensors`` and ``models/best.json`` for the best score."""
        self.save_networks(networks, "best", {"experiment": self.experiment, "iter": int(it),
                                              metric: float(value)})
        tmp = self.models_dir / ".best.json.tmp"
        tmp.write_text(json.dumps({"iter": int(it), "metric": metric, "value": float(value)}))
        tmp.replace(self.models_dir / "best.json")

    def prune(self) -> None:
        """Delete all but the newest ``keep`` states and the network files of deleted ones."""
        iters = sorted(self.state_iters(), reverse=True)
        for it in iters[self.keep:]:
            (self.states_dir / f"{it}.state").unlink(missing_ok=True)
            for f in self.models_dir.glob(f"*_{it}.safetensors"):
                f.unlink(missing_ok=True)

    # -- reading -------------------------------------------------------------------------
    def state_iters(self) -> List[int]:
        if not self.states_dir.is_dir():
            return []
        return [int(m.group(1)) for f in self.states_dir.iterdir()
                if (m := _STATE_RE.match(f.name))]

    def load_newest(self, warn: Callable[[str], None] = print) -> Optional[Tuple[Path, Dict[str, Any]]]:
        """``(path, state)`` of the newest training state that loads, or None when there is none."""
        for it in sorted(self.state_iters(), reverse=True):
            path = self.states_dir / f"{it}.state"
            try:
                return path, self.load(path)
            except UserError as exc:
                warn(f"skipping training state {path}: {exc}")
        return None

    def newest_state(self, warn: Callable[[str], None] = print) -> Optional[Path]:
        """The path of the newest training state that loads, or None when there is none."""
        found = self.load_newest(warn)
        return found[0] if found else None

    def load(self, path) -> Dict[str, Any]:
        """Load a training state and check that it belongs to this experiment.

        Raises:
            UserError: unreadable/truncated file, not a training state, or another experiment.
        """
        path = Path(path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated zip, not a torch file, unsafe pickle ...
            raise UserError(f"training state '{path}' cannot be loaded ({type(exc).__name__}); "
                            f"delete it or point path.resume_state at another state") from None
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise UserError(f"'{path}' is not a training state of this framework; point "
                            f"path.resume_state at a training_states/<iter>.state file")
        if state.get("experiment") != self.experiment:
            raise UserError(f"training state '{path}' belongs to experiment "
                            f"'{state.get('experiment')}', not '{self.experiment}'; resume it "
                            f"with its own options file or drop path.resume_state")
        return state
