"""YAML experiment options -> one validated, resolved dict.

An experiment is one YAML file in BasicSR's schema (``name``, ``model_type``, ``datasets.train``,
``network_g`` ...). It is read with ``yaml.safe_load``, command-line overrides
(``train.total_iter=10``) are applied, and the tree is validated ONCE against a small declarative
schema (:mod:`gfpgan.schema`): types, ranges, choices and paths are checked, defaults filled in,
and unknown keys rejected with a "did you mean". After that, code below the trainer can trust the
dict and index it.

Each part owns its keys: this module the trainer's (run name, seeds, data loaders, logging,
validation, ``train.total_iter`` ...), the model class its ``option_schema`` (its ``train.*``
recipe, its ``path.pretrain_*`` weights); :func:`train_schema` joins the two.
"""

import importlib
import inspect
from pathlib import Path
from typing import List, Sequence

import yaml

from gfpgan.errors import UserError
from gfpgan.schema import (  # noqa: F401  (re-exported: the options API in one import)
    MISSING,
    NET_BLOCK,
    Block,
    Field,
    ListOf,
    MapOf,
    Section,
    _check_path,
    _Ctx,
    _did_you_mean,
    validate,
)

__all__ = [
    "Field", "ListOf", "Section", "Block", "MapOf", "MISSING", "load_yaml", "apply_overrides",
    "validate", "check_blocks", "train_schema", "load_options", "load_train_options", "dump_yaml",
    "LOADER_KEYS",
]


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


def _registry_for(kind: str):
    """Import the package that fills a registry (explicit, by name) and return the registry."""
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

LOADER_KEYS = tuple(_LOADER_FIELDS)  # dataset-block keys the trainer's loaders consume

# The trainer's own keys. A model class adds its keys (``option_schema``: e.g. its ``train.*``
# recipe and its ``path.pretrain_*`` weights); :func:`train_schema` joins the two.
TRAINER_SCHEMA = Section({
    "name": Field(str, required=True, nullable=False, help="experiment name = run folder name"),
    "model_type": Field(str, default="GFPGANModel", nullable=False, help="MODEL_REGISTRY name"),
    "num_gpu": Field((int, str), default="auto", help="ignored: torchrun sets the world size"),
    # BasicSR's parse_options sets these two itself (its files may carry them, e.g. the
    # reference's tests/data/test_gfpgan_model.yml); here too the launcher decides.
    "is_train": Field(bool, default=None, help="ignored: accepted for BasicSR files"),
    "dist": Field(bool, default=None, help="ignored: torchrun decides"),
    "manual_seed": Field(int, default=0, min=0, help="base seed; rank r uses seed + r"),
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
        "resume_state": Field(str, default=None, path="file", help="a training state to resume"),
        "ignore_resume_networks": ListOf(str, default=None),
    }),
    "train": Section({
        "total_iter": Field(int, required=True, nullable=False, min=1),
        "max_nonfinite_steps": Field(int, default=5, min=1,
                                     help="stop after this many non-finite steps in a row"),
    }, required=True),
    "val": Section({
        "val_freq": Field(int, default=5000, min=1),
        "save_img": Field(bool, default=False),
        "suffix": Field(str, default=None),
        "pbar": Field(bool, default=False),
        "use_pbar": Field(bool, default=None, help="ignored, as BasicSR ignores it (it reads pbar)"),
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


def train_schema(model_type: str = "GFPGANModel", where: str = "options") -> Section:
    """The whole experiment schema: the trainer's keys joined with the model class's.

    A section both declare (``train``, ``path``) gets the union of their fields; the model's
    top-level fields are added as they are.

    Raises:
        UserError: ``model_type`` is not in MODEL_REGISTRY (with a "did you mean").
    """
    try:
        model_cls = _registry_for("model").get(model_type)
    except KeyError as exc:
        raise UserError(f"option 'model_type' in {where}: {exc.args[0]}") from None
    fields = dict(TRAINER_SCHEMA.fields)
    for key, field in model_cls.option_schema.items():
        mine = fields.get(key)
        if isinstance(mine, Section) and isinstance(field, Section):
            field = Section({**field.fields, **mine.fields}, required=mine.required or field.required,
                            nullable=mine.nullable and field.nullable)
        fields[key] = field
    return Section(fields)


def load_options(path, schema: Section, overrides: Sequence[str] = (), check: bool = True) -> dict:
    """Read, override, validate (and registry-check) an options file with any schema."""
    raw = load_yaml(path)
    keys = apply_overrides(raw, overrides)
    opt = validate(raw, schema, where=str(path), overridden=keys)
    if check:
        check_blocks(opt, schema, where=str(path), overridden=keys)
    return opt


def load_train_options(path, overrides: Sequence[str] = ()) -> dict:
    """Load a training experiment: YAML -> overrides -> :func:`train_schema` -> registry checks.

    Returns:
        The resolved options dict (every default filled in: index it, do not re-default it).
    """
    raw = load_yaml(path)
    keys = apply_overrides(raw, overrides)
    model_type = TRAINER_SCHEMA.fields["model_type"].check(
        raw.get("model_type", "GFPGANModel"), "model_type", _Ctx(str(path), keys))
    schema = train_schema(model_type, where=str(path))
    opt = validate(raw, schema, where=str(path), overridden=keys)
    check_blocks(opt, schema, where=str(path), overridden=keys)
    return opt


def dump_yaml(opt: dict) -> str:
    """The options as YAML text (keys in schema order)."""
    return yaml.safe_dump(opt, sort_keys=False, default_flow_style=None)
