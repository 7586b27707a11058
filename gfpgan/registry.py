"""Small explicit registries: a name -> class/function table per kind of component.

Each package's ``__init__`` imports its modules by name, and each module registers what it
defines with a decorator. Lookups of unknown names raise a ``KeyError`` whose message suggests
the closest registered names.
"""

import difflib
from typing import Callable, Dict, Iterator, Optional


class Registry:
    """A name -> object table with a helpful error for unknown names.

    Args:
        kind: What the registry holds ("architecture", "loss" ...), used in error messages.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._table: Dict[str, Callable] = {}

    def register(self, obj: Optional[Callable] = None, *, name: Optional[str] = None):
        """Register ``obj`` under ``name`` (default: its ``__name__``); usable as a decorator."""

        def _add(o: Callable) -> Callable:
            key = name or o.__name__
            if key in self._table and self._table[key] is not o:
                raise KeyError(f"{self.kind} {key!r} is already registered")
            self._table[key] = o
            return o

        return _add(obj) if obj is not None else _add

    def get(self, name: str) -> Callable:
        """Return the object registered as ``name``; unknown names get a 'did you mean'."""
        try:
            return self._table[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._table), n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            known = ", ".join(sorted(self._table)) or "none"
            raise KeyError(f"unknown {self.kind} {name!r}{hint} (known: {known})") from None

    def build(self, cfg: dict, **extra):
        """Build ``cfg['type']`` with the other keys of ``cfg`` (copied, never mutated) as kwargs."""
        cfg = dict(cfg)
        kind = cfg.pop("type")
        cfg.update(extra)
        return self.get(kind)(**cfg)

    def __contains__(self, name: str) -> bool:
        return name in self._table

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._table))


ARCH_REGISTRY = Registry("architecture")
LOSS_REGISTRY = Registry("loss")
DATASET_REGISTRY = Registry("dataset")
MODEL_REGISTRY = Registry("model")
METRIC_REGISTRY = Registry("metric")
