"""Model cards: one YAML per released weight file, so code looks weights up by name, not by if/elif.

A card (``configs/<name>.yaml``, marked ``format: gfpgan-video/card-1``) says which architecture
and kwargs rebuild a network, which file holds its weights, where that file is published, its
size and sha256, which top-level key of the ``.pth`` to load, and its license. Auxiliary weights
that the framework uses but does not build as a generator (StyleGAN2 prior, face detector, VGG,
Inception ...) have cards too, with ``arch: null`` unless a registered architecture loads them,
and a ``kind`` saying what they are for.

Cards are found in ``$GFPGAN_CONFIGS`` (``os.pathsep``-separated folders), the ``configs/``
folder of this checkout, and ``./configs``. Nothing here downloads anything: a missing file
raises a UserError that says where to download it from.
"""

import dataclasses
import difflib
import hashlib
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import yaml

from gfpgan.checkpoint import read_config
from gfpgan.errors import UserError

CARD_FORMAT = "gfpgan-video/card-1"
REPO_ROOT = Path(__file__).resolve().parents[1]
CACHE_DIR = "~/.cache/gfpgan"  # where weights fetched by URL are kept
DEFAULT_SEARCH_DIRS = ("experiments/pretrained_models", CACHE_DIR)
KINDS = ("restorer", "prior", "identity", "detector", "parser", "landmarks", "vgg", "lpips",
         "inception", "upsampler")


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """What one released weight file is and how to use it.

    Attributes:
        name: canonical name, e.g. ``"GFPGANv1.4"``.
        arch: ``ARCH_REGISTRY`` name that loads the weights, or None for auxiliary weights that
            are not built from a card.
        kwargs: constructor kwargs for ``arch``.
        weights: file name of the official weights, e.g. ``"GFPGANv1.4.pth"``.
        url: where the file is published.
        sha256: full sha256 of the file if known, else its first hex digits (a prefix), or None.
        param_key: top-level key of the ``.pth`` to load (None: ``params_ema`` > ``params`` > bare).
        size_bytes: file size in bytes, or None if not known exactly.
        description: one paragraph for humans.
        license: license of the weights as published.
        kind: what it is for (one of ``KINDS``).
        release: the release tag that publishes ``weights``.
        aliases: other names that find this card (matched case-insensitively).
        source: the YAML file the card was read from.
    """

    name: str
    arch: Optional[str]
    kwargs: Dict[str, Any]
    weights: str
    url: str
    sha256: Optional[str]
    param_key: Optional[str]
    size_bytes: Optional[int]
    description: str
    license: str
    kind: str = "restorer"
    release: Optional[str] = None
    aliases: Tuple[str, ...] = ()
    source: Optional[Path] = None


_FIELDS = [f.name for f in dataclasses.fields(ModelCard) if f.name != "source"]
_REQUIRED = ("name", "arch", "weights", "url", "sha256", "param_key", "description", "license", "kind")


def card_dirs() -> List[Path]:
    """Folders searched for cards, in order: $GFPGAN_CONFIGS, this checkout's configs/, ./configs."""
    dirs = [Path(d).expanduser() for d in os.environ.get("GFPGAN_CONFIGS", "").split(os.pathsep) if d]
    dirs += [REPO_ROOT / "configs", Path.cwd() / "configs"]
    unique: List[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [u.resolve() for u in unique]:
            unique.append(d)
    return unique


def _parse(path: Path) -> Optional[ModelCard]:
    """Read one YAML; None if it is not a card (configs/ also holds inference presets)."""
    try:
        text = path.read_text(encoding="utf-8")
        if CARD_FORMAT not in text:  # cheap skip: never parse (or fail on) another tool's YAML
            return None
        data = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UserError(f"model card {path} cannot be read ({str(exc).splitlines()[0]}); fix the YAML") \
            from None
    if not isinstance(data, dict) or data.get("format") != CARD_FORMAT:
        return None
    data = dict(data)
    data.pop("format")
    unknown = [k for k in data if k not in _FIELDS]
    if unknown:
        close = difflib.get_close_matches(unknown[0], _FIELDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(f"model card {path} has unknown field {unknown[0]!r}{hint}; "
                        f"allowed fields: {', '.join(_FIELDS)}")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise UserError(f"model card {path} lacks field(s) {', '.join(missing)}; add them (null if unknown)")
    sha = data.get("sha256")
    if sha is not None:
        sha = str(sha).lower()
        if not (8 <= len(sha) <= 64 and all(c in "0123456789abcdef" for c in sha)):
            raise UserError(f"model card {path} has sha256 {sha!r}; give 8 to 64 hex digits or null")
    if data["kind"] not in KINDS:
        raise UserError(f"model card {path} has kind {data['kind']!r}; use one of {', '.join(KINDS)}")
    size = data.get("size_bytes")
    if size is not None and not isinstance(size, int):
        raise UserError(f"model card {path} has size_bytes {size!r}; give an integer or null")
    return ModelCard(
        name=str(data["name"]), arch=data["arch"], kwargs=dict(data.get("kwargs") or {}),
        weights=str(data["weights"]), url=str(data["url"]), sha256=sha, param_key=data["param_key"],
        size_bytes=size, description=str(data["description"]).strip(), license=str(data["license"]),
        kind=data["kind"], release=data.get("release"),
        aliases=tuple(str(a) for a in data.get("aliases") or ()), source=path)


def list_cards() -> List[ModelCard]:
    """Every card found in :func:`card_dirs` (the first folder wins for a repeated name), by name."""
    cards: Dict[str, ModelCard] = {}
    for d in card_dirs():
        for path in sorted(d.glob("*.y*ml")):
            card = _parse(path)
            if card is not None and card.name not in cards:
                cards[card.name] = card
    return sorted(cards.values(), key=lambda c: c.name.lower())


def load_card(name_or_path: Union[str, os.PathLike, ModelCard]) -> ModelCard:
    """Find a card by name, alias (``"GFPGANv1.4"``, ``"v1.4"``, ``"1.4"``), weights file name or YAML path.

    Raises:
        UserError: unknown name (with a "did you mean"), or a YAML that is not a valid card.
    """
    if isinstance(name_or_path, ModelCard):
        return name_or_path
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise UserError(f"model card {path} not found; check the path or give a card name")
        card = _parse(path)
        if card is None:
            raise UserError(f"{path} is not a model card (it lacks 'format: {CARD_FORMAT}')")
        return card
    cards = list_cards()
    names: Dict[str, ModelCard] = {}
    for card in cards:
        for alias in (card.name, *card.aliases, card.weights, Path(card.weights).stem):
            names.setdefault(alias.lower(), card)
    if text.lower() in names:
        return names[text.lower()]
    close = difflib.get_close_matches(text.lower(), list(names), n=3, cutoff=0.5)
    suggested = list(dict.fromkeys(names[c].name for c in close))  # several aliases, one card
    hint = f"; did you mean {' or '.join(map(repr, suggested))}?" if close else ""
    known = ", ".join(c.name for c in cards) or "none found in " + ", ".join(map(str, card_dirs()))
    raise UserError(f"unknown model card {text!r}{hint} (known: {known})")


def _candidate_dirs(search_dirs: Iterable[Union[str, os.PathLike]]) -> List[Path]:
    dirs: List[Path] = []
    for d in search_dirs:
        d = Path(d).expanduser()
        # relative folders are tried from the working directory, then from this checkout, so that
        # the commands work from any directory (upstream's CWD-relative gfpgan/weights did not)
        for cand in ([d] if d.is_absolute() else [Path.cwd() / d, REPO_ROOT / d]):
            if cand not in dirs:
                dirs.append(cand)
    return dirs


def resolve_weights(card: Union[str, ModelCard],
                    search_dirs: Sequence[Union[str, os.PathLike]] = DEFAULT_SEARCH_DIRS,
                    explicit: Optional[Union[str, os.PathLike]] = None) -> Path:
    """Return the path of a card's weights: ``explicit`` if given, else the first one found.

    In each folder a converted ``<stem>.safetensors`` is preferred to the official ``.pth`` (it
    loads without unpickling and carries its own config).

    Raises:
        UserError: "<file> not found in <dirs>; download it from <url> (sha256 <...>) into
            experiments/pretrained_models/".
    """
    card = load_card(card)
    where = f"download it from {card.url}" + (f" (sha256 {card.sha256})" if card.sha256 else "")
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise UserError(f"{path} not found; {where}, or fix the path")
        return path
    dirs = _candidate_dirs(search_dirs)
    names = [Path(card.weights).with_suffix(".safetensors").name, card.weights]
    for d in dirs:
        for name in names:
            if (d / name).is_file():
                return d / name
    shown = ", ".join(str(d) for d in dirs)
    raise UserError(f"{card.weights} not found in {shown}; {where} into experiments/pretrained_models/")


def sha256_file(path: Union[str, os.PathLike], chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in 4 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def verify_sha256(path: Union[str, os.PathLike], card: Union[str, ModelCard]) -> str:
    """Check a weights file against its card (size first, then the sha256 or its prefix).

    For one of our converted ``.safetensors`` files the check is on the source hash recorded at
    conversion (``extra.source_sha256``), since the converted bytes differ from the release.

    Returns:
        The file's full sha256 (for a converted file: the recorded source sha256).

    Raises:
        UserError: size or hash differ (a truncated or wrong download).
    """
    card, path = load_card(card), Path(path)
    if not path.is_file():
        raise UserError(f"{path} not found; download it from {card.url}")
    if path.suffix == ".safetensors":
        digest = str(read_config(path)["extra"].get("source_sha256", ""))
        if not digest:
            raise UserError(f"{path} records no source sha256; re-convert it from {card.weights}")
    else:
        size = path.stat().st_size
        if card.size_bytes is not None and size != card.size_bytes:
            raise UserError(f"{path} is {size:,} bytes but {card.name} is {card.size_bytes:,} bytes "
                            f"(an incomplete or different download); download it again from {card.url}")
        digest = sha256_file(path)
    expected = card.sha256
    if expected is not None and not digest.startswith(expected):
        raise UserError(f"{path} has sha256 {digest[:16]}... but {card.name} expects {expected}...; "
                        f"the file is corrupt or a different file, download it again from {card.url}")
    return digest
