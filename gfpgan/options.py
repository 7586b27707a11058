"""YAML experiment options -> one validated, resolved dict.

An experiment is one YAML file in BasicSR's schema (``name``, ``model_type``, ``datasets.train``,
``network_g`` ...). It is read with ``yaml.safe_load``, command-line overrides
(``train.total_iter=10``) are applied, and the tree is validated ONCE against a small declarative
schema: types, ranges, choices and paths are checked, defaults filled in, and unknown keys rejected
with a "did you mean". After that, code below the trainer can trust the dict.

Schema building blocks:

* :class:`Field` -- one leaf value (type, default, choices, range, path check).
* :class:`ListOf` -- a list whose items are all one Field/type (optionally a fixed length).
* :class:`Section` -- a nested dict of named fields; unknown keys are an error unless
  ``allow_extra``.
* :class:`Block` -- a free-form ``{type: Name, **kwargs}`` dict (network, loss, optimizer and
  dataset blocks); its kwargs are checked later against the registered class's signature by
  :func:`check_blocks`, so a misspelled kwarg still gets a "did you mean".
* :class:`MapOf` -- a dict with arbitrary keys whose values all follow one schema.

Every error is a :class:`gfpgan.errors.UserError` whose message is one sentence naming the option,
the file and the fix.
"""

import difflib
import inspect
import math
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

import yaml

from gfpgan.errors import UserError

__all__ = [
    "Field", "ListOf", "Section", "Block", "MapOf", "MISSING", "load_yaml", "apply_overrides",
    "validate", "check_blocks", "TRAIN_SCHEMA", "load_options", "load_train_options",
    "write_run_info", "dump_yaml",
]


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
    """

    def __init__(self, type=None, default=None, required: bool = False, choices=None, min=None,
                 max=None, nullable: bool = True, path: Optional[str] = None, help: str = ""):
        self.type = type
        self.default = MISSING if required and default is None else default
        self.required = required
        self.choices = choices
        self.min, self.max = min, max
        self.nullable = nullable
        self.path = path
        self.help = help

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
                if isinstance(field, Section) and default == {}:
                    default = field.check({}, sub_dotted, ctx)
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
                 required: bool = False, nullable: bool = True, help: str = ""):
        fields = dict(fields or {})
        fields.setdefault("type", Field(str, required=True, nullable=False, help="registered name"))
        super().__init__(fields, allow_extra=True, required=required, nullable=nullable, help=help)
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


# ---------------------------------------------------------------------------------------------
# reading, overriding, validating
# ---------------------------------------------------------------------------------------------

def load_yaml(path) -> dict:
    """Read an options YAML with ``yaml.safe_load``.

    Raises:
        UserError: missing/unreadable file, YAML syntax error (with its line), or a top level
            that is not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"options file '{path}' does not exist; check the -opt path")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"options file '{path}' cannot be read ({exc}); fix its permissions or "
                        f"encoding") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"options file '{path}' is not valid YAML{line} ({problem}); fix the "
                        f"syntax there") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"options file '{path}' must contain a mapping of options at the top "
                        f"level, not {type(data).__name__}")
    return data


def apply_overrides(cfg: dict, overrides: Sequence[str]) -> List[str]:
    """Apply ``key.sub=value`` overrides in place; values are parsed as YAML scalars.

    Args:
        cfg: Options tree (modified in place).
        overrides: Strings like ``"train.total_iter=10"`` or ``"datasets.val=~"``.
    Returns:
        The dotted keys that were set (validation names them as coming from the command line).
    """
    keys = []
    for item in overrides or ():
        if "=" not in item:
            raise UserError(f"override '{item}' must look like key.subkey=value (for example "
                            f"train.total_iter=10)")
        dotted, raw = item.split("=", 1)
        dotted = dotted.strip()
        if not dotted or any(not part for part in dotted.split(".")):
            raise UserError(f"override '{item}' has an empty key; write key.subkey=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw  # not YAML: keep the text as is
        node = cfg
        parts = dotted.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
        keys.append(dotted)
    return keys


def validate(cfg: dict, schema: Section, where: str = "options",
             overridden: Sequence[str] = (), check_paths: bool = True) -> dict:
    """Validate ``cfg`` against ``schema`` and return a new, resolved dict (defaults filled in).

    Args:
        cfg: The raw options tree.
        schema: The top-level :class:`Section`.
        where: The source named in error messages (usually the YAML path).
        overridden: Dotted keys set from the command line (named as such in errors).
        check_paths: Check that ``path=...`` fields name existing files/folders.
    Raises:
        UserError: on the first unknown key, wrong type, out-of-range value or missing path.
    """
    return schema.check(cfg, "", _Ctx(str(where), overridden, check_paths))


def _registry_for(kind: str):
    """Import the package that fills a registry (explicit, by name) and return the registry."""
    import importlib

    from gfpgan import registry

    package = {"arch": "gfpgan.archs", "dataset": "gfpgan.data", "loss": "gfpgan.losses",
               "model": "gfpgan.models"}.get(kind)
    if package is not None:
        importlib.import_module(package)
    return {"arch": registry.ARCH_REGISTRY, "dataset": registry.DATASET_REGISTRY,
            "loss": registry.LOSS_REGISTRY, "model": registry.MODEL_REGISTRY}[kind]


# free-form kwargs that name files or folders which must exist when given
_PATH_KWARGS = ("dataroot", "dataroot_gt", "dataroot_lq", "component_path", "meta_info_file",
                "decoder_load_path", "load_path", "model_path", "weights", "vgg_path",
                "pretrained_path")


def _walk_blocks(schema: Field, value, dotted: str):
    if isinstance(schema, Block):
        if value is not None:
            yield dotted, schema, value
        return
    if isinstance(schema, Section) and isinstance(value, dict):
        for key, sub in schema.fields.items():
            yield from _walk_blocks(sub, value.get(key), f"{dotted}.{key}" if dotted else key)
    elif isinstance(schema, MapOf) and isinstance(value, dict):
        for key, sub in value.items():
            yield from _walk_blocks(schema.value, sub, f"{dotted}.{key}")


def check_blocks(cfg: dict, schema: Section, where: str = "options",
                 overridden: Sequence[str] = (), check_paths: bool = True) -> None:
    """Check every :class:`Block` against its registry: the type exists, the kwargs exist.

    A kwarg that the registered class's ``__init__`` does not accept (and the class takes no
    ``**kwargs``) is rejected with a "did you mean"; kwargs that name files must exist.
    """
    ctx = _Ctx(str(where), overridden, check_paths)
    for dotted, block, value in _walk_blocks(schema, cfg, ""):
        for key, sub in value.items():
            if key in _PATH_KWARGS and isinstance(sub, str):
                _check_path(sub, "exists", f"{dotted}.{key}", ctx)
        if block.registry is None:
            continue
        reg = _registry_for(block.registry)
        try:
            target = reg.get(value["type"])
        except KeyError as exc:
            raise UserError(f"option '{dotted}.type' in {ctx.where(dotted + '.type')}: "
                            f"{exc.args[0]}") from None
        try:
            params = inspect.signature(target).parameters
        except (TypeError, ValueError):
            continue
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            continue
        accepted = [n for n, p in params.items() if p.kind in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
        for key in value:
            if key == "type" or key in block.consumed or key in accepted:
                continue
            sub_dotted = f"{dotted}.{key}"
            raise UserError(f"unknown option '{sub_dotted}' in {ctx.where(sub_dotted)} ("
                            f"{value['type']} takes no such argument){_did_you_mean(key, accepted)}")


# ---------------------------------------------------------------------------------------------
# the training schema (BasicSR's layout)
# ---------------------------------------------------------------------------------------------

def _weight(default=0.0, help=""):
    return Field(float, default=default, min=0.0, help=help)


_LOADER_FIELDS = {
    "name": Field(str, default="dataset", help="a label for logs"),
    "phase": Field(str, default=None, help="ignored (BasicSR fills it in)"),
    "batch_size_per_gpu": Field(int, default=1, min=1, help="samples per rank and step"),
    "num_worker_per_gpu": Field(int, default=0, min=0, help="DataLoader workers per rank"),
    "use_shuffle": Field(bool, default=True, help="reshuffle every epoch"),
    "dataset_enlarge_ratio": Field(int, default=1, min=1, help="repeat the dataset per epoch"),
    "prefetch_mode": Field(str, default=None, choices=[None, "cpu", "cuda"], help="ignored"),
    "pin_memory": Field(bool, default=True, help="pinned host memory on CUDA"),
}

NET_BLOCK = Block("arch", help="architecture kwargs")
LOSS_BLOCK = Block("loss", help="loss kwargs")
OPTIM_BLOCK = Block(None, {"type": Field(str, required=True, nullable=False, choices=[
    "Adam", "AdamW", "SGD"])}, help="torch.optim class and its kwargs")
SCHED_BLOCK = Block(None, {"type": Field(str, required=True, nullable=False, choices=[
    "MultiStepLR", "CosineAnnealingLR", "CosineAnnealingRestartLR", "ConstantLR"])},
    help="learning-rate schedule")

TRAIN_SCHEMA = Section({
    "name": Field(str, required=True, nullable=False, help="experiment name = run folder name"),
    "model_type": Field(str, default="GFPGANModel", nullable=False, help="MODEL_REGISTRY name"),
    "num_gpu": Field((int, str), default="auto", help="ignored: torchrun sets the world size"),
    "manual_seed": Field(int, default=0, min=0, help="base seed; rank r uses seed + r"),
    "find_unused_parameters": Field(bool, default=None, help="DDP flag; null lets the model decide"),
    "datasets": Section({
        "train": Block("dataset", _LOADER_FIELDS, required=True, nullable=False),
        "val": Block("dataset", _LOADER_FIELDS),
    }, required=True),
    "network_g": Block("arch", required=True, nullable=False),
    "network_d": NET_BLOCK,
    "network_d_left_eye": NET_BLOCK,
    "network_d_right_eye": NET_BLOCK,
    "network_d_mouth": NET_BLOCK,
    "network_identity": NET_BLOCK,
    "path": Section({
        "experiments_root": Field(str, default="experiments", help="run folders go under it"),
        "pretrain_network_g": Field(str, default=None, path="file"),
        "param_key_g": Field(str, default="params_ema"),
        "strict_load_g": Field(bool, default=True),
        "pretrain_network_d": Field(str, default=None, path="file"),
        "param_key_d": Field(str, default="params"),
        "strict_load_d": Field(bool, default=True),
        "pretrain_network_d_left_eye": Field(str, default=None, path="file"),
        "pretrain_network_d_right_eye": Field(str, default=None, path="file"),
        "pretrain_network_d_mouth": Field(str, default=None, path="file"),
        "pretrain_network_identity": Field(str, default=None, path="file"),
        "param_key_identity": Field(str, default=None),
        "strict_load_identity": Field(bool, default=True),
        "pretrain_network_vgg": Field(str, default=None, path="file",
                                      help="VGG19 weights for the perceptual loss"),
        "resume_state": Field(str, default=None, path="file", help="a training state to resume"),
        "ignore_resume_networks": ListOf(str, default=None),
    }),
    "train": Section({
        "optim_g": Block(None, OPTIM_BLOCK.fields, required=True, nullable=False),
        "optim_d": OPTIM_BLOCK,
        "optim_component": OPTIM_BLOCK,
        "scheduler": SCHED_BLOCK,
        "total_iter": Field(int, required=True, nullable=False, min=1),
        "warmup_iter": Field(int, default=-1, min=-1, help="linear LR warm-up; -1: none"),
        "pixel_opt": LOSS_BLOCK,
        "L1_opt": LOSS_BLOCK,
        "perceptual_opt": LOSS_BLOCK,
        "gan_opt": LOSS_BLOCK,
        "gan_component_opt": LOSS_BLOCK,
        "identity_opt": LOSS_BLOCK,
        "pyramid_loss_weight": _weight(0.0, "image-pyramid L1 weight"),
        "remove_pyramid_loss": Field(int, default=None, min=0, help="drop the pyramid after it"),
        "comp_style_weight": _weight(0.0, "component Gram-style weight"),
        "identity_weight": _weight(0.0, "ArcFace identity weight"),
        "r1_reg_weight": _weight(10.0, "R1 penalty weight"),
        "net_d_iters": Field(int, default=1, min=1),
        "net_d_init_iters": Field(int, default=0, min=0),
        "net_d_reg_every": Field(int, default=16, min=1, help="lazy R1 interval"),
        "ema_decay": Field(float, default=0.5 ** (32 / (10 * 1000)), min=0.0, max=1.0),
        "amp": Field(str, default=None, choices=[None, "bf16", "fp16"], help="autocast dtype"),
        "channels_last": Field(bool, default=False),
        "compile": Field((bool, str), default=False, choices=[
            False, True, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"],
            help="torch.compile every trainable network (true, or a torch.compile mode)"),
        "max_nonfinite_steps": Field(int, default=5, min=1,
                                     help="stop after this many non-finite steps in a row"),
    }, required=True),
    "val": Section({
        "val_freq": Field(int, default=5000, min=1),
        "save_img": Field(bool, default=False),
        "suffix": Field(str, default=None),
        "pbar": Field(bool, default=False),
        "max_images": Field(int, default=None, min=1, help="validate on the first N images"),
        "lpips_weights": Field(str, default=None, help="folder/file for LPIPS trunk weights"),
        "metrics": MapOf(Section({
            "type": Field(str, required=True, nullable=False, choices=[
                "calculate_psnr", "calculate_ssim", "calculate_lpips", "psnr", "ssim", "lpips"]),
            "crop_border": Field(int, default=0, min=0),
            "test_y_channel": Field(bool, default=False),
            "better": Field(str, default=None, choices=[None, "higher", "lower"]),
        })),
    }, nullable=True),
    "logger": Section({
        "print_freq": Field(int, default=100, min=1),
        "save_checkpoint_freq": Field(int, default=5000, min=1),
        "keep_checkpoints": Field(int, default=3, min=1, help="training states kept on disk"),
        "use_tb_logger": Field(bool, default=True),
        "image_freq": Field(int, default=1000, min=1, help="LQ|output|GT grid interval"),
        "wandb": Field(dict, default=None, help="accepted for BasicSR files; not used"),
    }),
    "dist_params": Section({
        "backend": Field(str, default=None, choices=[None, "nccl", "gloo"],
                         help="informational: nccl on CUDA, gloo on CPU"),
        "port": Field(int, default=None),
    }, nullable=True),
})


def load_options(path, schema: Section, overrides: Sequence[str] = (), check: bool = True) -> dict:
    """Read, override, validate (and registry-check) an options file with any schema."""
    raw = load_yaml(path)
    keys = apply_overrides(raw, overrides)
    opt = validate(raw, schema, where=str(path), overridden=keys)
    if check:
        check_blocks(opt, schema, where=str(path), overridden=keys)
    return opt


def load_train_options(path, overrides: Sequence[str] = ()) -> dict:
    """Load a training experiment: YAML -> overrides -> TRAIN_SCHEMA -> registry checks.

    Returns:
        The resolved options dict; ``opt['model_type']`` is checked against MODEL_REGISTRY.
    """
    opt = load_options(path, TRAIN_SCHEMA, overrides)
    try:
        _registry_for("model").get(opt["model_type"])
    except KeyError as exc:
        raise UserError(f"option 'model_type' in {path}: {exc.args[0]}") from None
    return opt


def dump_yaml(opt: dict) -> str:
    """The options as YAML text (keys in schema order)."""
    return yaml.safe_dump(opt, sort_keys=False, default_flow_style=None)


def _git_commit() -> str:
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return res.stdout.strip() if res.returncode == 0 else "unknown"


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_run_info(run_dir, opt: dict, argv: Optional[Sequence[str]] = None) -> Dict[str, str]:
    """Write the resolved options, the command line and the git commit into ``run_dir``.

    Files: ``options.yml``, ``command.txt`` (one shell-quoted line), ``git_commit.txt``.

    Raises:
        UserError: when ``run_dir`` cannot be created or written.
    """
    run_dir = Path(run_dir)
    argv = list(sys.argv if argv is None else argv)
    commit = _git_commit()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_text_atomic(run_dir / "options.yml", dump_yaml(opt))
        _write_text_atomic(run_dir / "command.txt", shlex.join(str(a) for a in argv) + "\n")
        _write_text_atomic(run_dir / "git_commit.txt", commit + "\n")
    except OSError as exc:
        raise UserError(f"cannot write the run folder '{run_dir}' ({exc.strerror}); choose a "
                        f"writable path.experiments_root") from None
    return {"commit": commit}
