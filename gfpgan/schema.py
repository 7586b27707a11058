"""The declarative options schema: fields, sections, registry blocks, and one ``validate``.

Schema building blocks:

* :class:`Field` -- one leaf value (type, default, choices, range, path check).
* :class:`ListOf` -- a list whose items are all one Field/type (optionally a fixed length).
* :class:`Section` -- a nested dict of named fields; unknown keys are an error unless
  ``allow_extra``.
* :class:`Block` -- a free-form ``{type: Name, **kwargs}`` dict (network, loss, optimizer and
  dataset blocks); its kwargs are checked later against the registered class's signature by
  :func:`gfpgan.options.check_blocks`, so a misspelled kwarg still gets a "did you mean".
* :class:`MapOf` -- a dict with arbitrary keys whose values all follow one schema.

Every error is a :class:`gfpgan.errors.UserError` whose message is one sentence naming the option,
the file and the fix. This module imports nothing of the project but its errors, so the parts
that own options (the trainer in :mod:`gfpgan.options`, a model its ``train.*`` keys) can all
declare their schema with it.
"""

import difflib
import math
import os
import re
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence

from gfpgan.errors import UserError

__all__ = ["Field", "ListOf", "Section", "Block", "MapOf", "MISSING", "validate", "NET_BLOCK",
           "LOSS_BLOCK", "OPTIM_BLOCK", "SCHED_BLOCK", "validate_part"]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()

_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
               list: "a list", dict: "a mapping"}


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        return f"; did you mean '{close[0]}'?"
    return f" (known: {', '.join(sorted(known)) or 'none'})"


class _Ctx:
    """Where we are while validating: the source file (for messages) and override keys."""

    def __init__(self, source: str, overridden: Sequence[str] = (), check_paths: bool = True):
        self.source = source
        self.overridden = set(overridden)
        self.check_paths = check_paths

    def where(self, dotted: str) -> str:
        if dotted in self.overridden:
            return "the command-line overrides (--force-yml)"
        return self.source


class Field:
    """One leaf option.

    Args:
        type: A Python type (int, float, bool, str, list, dict) or a tuple of them. ``float``
            accepts integers; ``int`` accepts integral floats and strings such as ``"5e3"``.
        default: Value used when the key is absent (``MISSING`` with ``required=True``).
        required: The key must be present (and not null unless ``nullable``).
        choices: Allowed values.
        min, max: Inclusive numeric bounds.
        nullable: ``~``/``null`` is allowed.
        path: None, "file", "dir" or "exists": a non-null value must name an existing path.
        help: One line shown in docs.
        null: What ``~``/``null`` means when it means a value rather than "nothing": BasicSR
            reads ``strict_load_g: ~`` through ``opt['path'].get('strict_load_g', True)``, i.e.
            None, i.e. a non-strict load, so that field says ``null=False``. A file's ``~``
            then validates to this value (an absent key still gets ``default``).
    """

    def __init__(self, type=None, default=None, required: bool = False, choices=None, min=None,
                 max=None, nullable: bool = True, path: Optional[str] = None, help: str = "",
                 null=MISSING):
        self.type = type
        self.default = MISSING if required and default is None else default
        self.required = required
        self.choices = choices
        self.min, self.max = min, max
        self.nullable = nullable
        self.path = path
        self.help = help
        self.null = null

    def _coerce(self, value, dotted: str, ctx: _Ctx):
        types = self.type if isinstance(self.type, tuple) else (self.type,)
        if self.type is None:
            return value
        for t in types:
            if t is bool and isinstance(value, bool):
                return value
            if t is int and not isinstance(value, bool):
                if isinstance(value, int):
                    return value
                if isinstance(value, float) and value.is_integer():
                    return int(value)
                if isinstance(value, str):
                    try:
                        f = float(value)
                    except ValueError:
                        continue
                    if f.is_integer():
                        return int(f)
            if t is float and not isinstance(value, bool):
                if isinstance(value, (int, float)):
                    return float(value)
                if isinstance(value, str):
                    try:
                        return float(value)  # "5e3": YAML 1.1 reads it as a string
                    except ValueError:
                        continue
            if t in (str, list, dict) and isinstance(value, t):
                return value
        want = " or ".join(_TYPE_NAMES.get(t, getattr(t, "__name__", str(t))) for t in types)
        raise UserError(f"option '{dotted}' in {ctx.where(dotted)} must be {want}, got {_as_yaml(value)}; "
                        f"fix its value")

    def check(self, value, dotted: str, ctx: _Ctx):
        if value is None and self.null is not MISSING:
            return self.null
        if value is None:
            if self.nullable and not self.required:
                return None
            raise UserError(f"option '{dotted}' in {ctx.where(dotted)} must not be empty; "
                            f"give it a value")
        value = self._coerce(value, dotted, ctx)
        if self.choices is not None and value not in self.choices:
            opts = ", ".join(_as_yaml(c) for c in self.choices)
            raise UserError(f"option '{dotted}' in {ctx.where(dotted)} is {_as_yaml(value)} but must "
                            f"be one of {opts}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, float) and not math.isfinite(value) and value != math.inf:
                raise UserError(f"option '{dotted}' in {ctx.where(dotted)} is not a number")
            if self.min is not None and value < self.min:
                raise UserError(f"option '{dotted}' in {ctx.where(dotted)} is {value} but must be "
                                f">= {self.min}")
            if self.max is not None and value > self.max:
                raise UserError(f"option '{dotted}' in {ctx.where(dotted)} is {value} but must be "
                                f"<= {self.max}")
        if self.path is not None:
            _check_path(value, self.path, dotted, ctx)
        return value

    def resolve_missing(self, dotted: str, ctx: _Ctx):
        if self.default is MISSING:
            raise UserError(f"option '{dotted}' is required but missing in {ctx.source}; add it")
        return self.default


def _check_path(value, kind: str, dotted: str, ctx: _Ctx) -> None:
    if not ctx.check_paths:
        return
    p = Path(os.path.expanduser(str(value)))
    ok = {"file": p.is_file, "dir": p.is_dir, "exists": p.exists}[kind]()
    if not ok:
        what = {"file": "file", "dir": "folder", "exists": "path"}[kind]
        raise UserError(f"option '{dotted}' in {ctx.where(dotted)} names the {what} '{value}', "
                        f"which does not exist; fix the path, or create/download it (weight "
                        f"files: experiments/pretrained_models/README.md)")


class ListOf(Field):
    """A list of items that all follow ``item`` (a Field or a bare type)."""

    def __init__(self, item, length: Optional[int] = None, **kw):
        super().__init__(type=list, **kw)
        self.item = item if isinstance(item, Field) else Field(item, nullable=False)
        self.length = length

    def check(self, value, dotted: str, ctx: _Ctx):
        if isinstance(value, tuple):
            value = list(value)
        value = super().check(value, dotted, ctx)
        if value is None:
            return None
        if self.length is not None and len(value) != self.length:
            raise UserError(f"option '{dotted}' in {ctx.where(dotted)} must have {self.length} "
                            f"items, got {len(value)}")
        return [self.item.check(v, f"{dotted}[{i}]", ctx) for i, v in enumerate(value)]


class Section(Field):
    """A nested mapping of named fields; unknown keys are rejected unless ``allow_extra``."""

    def __init__(self, fields: Mapping[str, Field], allow_extra: bool = False,
                 required: bool = False, nullable: bool = False, help: str = ""):
        super().__init__(type=dict, required=required, nullable=nullable, help=help)
        self.fields = dict(fields)
        self.allow_extra = allow_extra
        # an absent, non-nullable section is built from its fields' defaults
        self.default = MISSING if required else (None if nullable else {})

    def check(self, value, dotted: str, ctx: _Ctx):
        value = super().check(value, dotted, ctx)
        if value is None:
            return None
        for key in value:
            if key not in self.fields and not self.allow_extra:
                sub_dotted = f"{dotted}.{key}" if dotted else str(key)
                raise UserError(f"unknown option '{sub_dotted}' in {ctx.where(sub_dotted)}"
                                f"{_did_you_mean(str(key), self.fields)}")
        out = {}  # schema order first, then free kwargs in file order
        for key, field in self.fields.items():
            sub_dotted = f"{dotted}.{key}" if dotted else key
            if key in value:
                out[key] = field.check(value[key], sub_dotted, ctx)
            else:
                default = field.resolve_missing(sub_dotted, ctx)
                if isinstance(field, Section) and isinstance(default, dict):
                    default = field.check(dict(default), sub_dotted, ctx)  # a fresh, resolved copy
                out[key] = default
        for key, sub in value.items():
            if key not in self.fields:
                out[key] = _yaml11_number(sub)
        return out


_FLOAT_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)$")


def _as_yaml(value) -> str:
    """A value as the YAML file would spell it (``~``, ``true``/``false``, strings quoted)."""
    if value is None:
        return "~"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value)


def _yaml11_number(value):
    """Free kwargs: YAML 1.1 reads ``2e-3`` as a string; turn such strings into floats."""
    if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
        return float(value)
    if isinstance(value, list):
        return [_yaml11_number(v) for v in value]
    if isinstance(value, dict):
        return {k: _yaml11_number(v) for k, v in value.items()}
    return value


class Block(Section):
    """A ``{type: Name, **kwargs}`` mapping handed to a registry; kwargs are checked later.

    ``fields`` may list keys that are consumed by the trainer rather than the built object
    (e.g. a dataset's loader keys); they are validated here and skipped by :func:`check_blocks`.
    """

    def __init__(self, registry: Optional[str] = None, fields: Optional[Mapping[str, Field]] = None,
                 required: bool = False, nullable: bool = True, help: str = "",
                 default: Optional[dict] = None):
        fields = dict(fields or {})
        fields.setdefault("type", Field(str, required=True, nullable=False, help="registered name"))
        super().__init__(fields, allow_extra=True, required=required, nullable=nullable, help=help)
        if default is not None:
            self.default = default  # a whole block used when the key is absent
        self.registry = registry
        self.consumed = set(fields) - {"type"}


class MapOf(Field):
    """A mapping with free keys whose values all follow ``value`` (e.g. ``val.metrics``)."""

    def __init__(self, value: Field, **kw):
        kw.setdefault("default", {})
        super().__init__(type=dict, **kw)
        self.value = value

    def check(self, value, dotted: str, ctx: _Ctx):
        value = super().check(value, dotted, ctx)
        if value is None:
            return None
        return {k: self.value.check(v, f"{dotted}.{k}", ctx) for k, v in value.items()}


def validate(cfg: dict, schema: Section, where: str = "options",
             overridden: Sequence[str] = (), check_paths: bool = True, dotted: str = "") -> dict:
    """Validate ``cfg`` against ``schema`` and return a new, resolved dict (defaults filled in).

    Args:
        cfg: The raw options tree.
        schema: The top-level :class:`Section`.
        where: The source named in error messages (usually the YAML path).
        overridden: Dotted keys set from the command line (named as such in errors).
        check_paths: Check that ``path=...`` fields name existing files/folders.
        dotted: Where ``cfg`` sits in the whole tree (e.g. ``"train"``), for messages.
    Raises:
        UserError: on the first unknown key, wrong type, out-of-range value or missing path.
    """
    return schema.check(cfg, dotted, _Ctx(str(where), overridden, check_paths))


def validate_part(cfg: dict, fields: Mapping[str, Field], where: str = "options") -> dict:
    """Validate the keys of ``cfg`` that ``fields`` declares, leaving out what other parts own.

    A part that owns some options (a model its ``train.*`` recipe) validates its own keys with
    it, so it can be built from a partial tree (tests) or from a tree already validated as a
    whole (idempotent); in a section both own, the other part's keys are skipped, not rejected.

    Args:
        cfg: The options tree.
        fields: ``{top-level key: Field}``; a :class:`Section` value covers only its own fields.
        where: The source named in error messages.
    Returns:
        ``{key: validated value}`` for every key of ``fields`` (defaults filled in).
    """
    mine = {}
    for key, field in fields.items():
        if key not in cfg:
            continue
        value = cfg[key]
        if isinstance(field, Section) and not field.allow_extra and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k in field.fields}
        mine[key] = value
    return validate(mine, Section(fields), where=where)


# blocks that several schemas share
NET_BLOCK = Block("arch", help="architecture kwargs")
LOSS_BLOCK = Block("loss", help="loss kwargs")
OPTIM_BLOCK = Block(None, {"type": Field(str, required=True, nullable=False, choices=[
    "Adam", "AdamW", "SGD"])}, help="torch.optim class and its kwargs")
SCHED_BLOCK = Block(None, {"type": Field(str, required=True, nullable=False, choices=[
    "MultiStepLR", "CosineAnnealingLR", "CosineAnnealingRestartLR", "ConstantLR"])},
    help="learning-rate schedule")
