"""The contract between the trainer and a model: what ``gfpgan.engine.trainer`` calls, nothing else.

A model class registered in ``MODEL_REGISTRY`` is built as ``cls(opt, dist_info)`` (the whole
validated options tree, this rank's :class:`~gfpgan.dist.DistInfo`) and then driven through the
methods below. The trainer asks nothing else of it (no ``hasattr``): a new model implements this
protocol, declares the options it reads in ``option_schema``, and registers itself. Subclassing
:class:`gfpgan.models.base.TrainingModel` gives it everything here but ``train_step``.
"""

from typing import ClassVar, Dict, Mapping, Protocol, Tuple, runtime_checkable

import torch
from torch import nn

from gfpgan.schema import Field


@runtime_checkable
class TrainModel(Protocol):
    """What the training loop calls on a model, in the order it calls it."""

    #: The options the model reads, ``{top-level key: Field or Section}``, joined with the
    #: trainer's schema by :func:`gfpgan.options.train_schema` (sections both declare are merged).
    option_schema: ClassVar[Mapping[str, Field]]

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned (resuming a run)."""

    def update_learning_rate(self, it: int) -> None:
        """Set the learning rates for iteration ``it`` (1-based), before its step."""

    def train_step(self, batch: Dict[str, torch.Tensor], it: int) -> Dict[str, float]:
        """One optimisation step; returns ``{log key: value averaged over ranks}``.

        The returned ``'skipped'`` is 1.0 when a non-finite loss skipped every update on every
        rank, else 0.0 (the trainer stops after ``train.max_nonfinite_steps`` in a row).
        """

    def current_learning_rates(self) -> Dict[str, float]:
        """``{optimizer name: learning rate of its first group}``, for the logs."""

    def last_visuals(self) -> Dict[str, torch.Tensor]:
        """``{'lq', 'output', 'gt'}``: (N, 3, S, S) samples of the last step in [-1, 1], on the CPU."""

    def restore(self, lq: torch.Tensor) -> torch.Tensor:
        """Restore (B, 3, S, S) faces in [-1, 1] with the evaluation network (validation)."""

    def networks_to_save(self) -> Dict[str, Tuple[nn.Module, str, dict]]:
        """``{name: (plain module, ARCH_REGISTRY name, constructor kwargs)}`` for checkpoints."""

    def state_dict(self) -> dict:
        """Everything a resumed run needs (networks, EMA, optimizers, schedulers, scaler)."""
