"""Convert an official GFPGAN ``.pth`` into this project's self-describing ``.safetensors``.

    python -m gfpgan.tools.convert_checkpoint experiments/pretrained_models/GFPGANv1.4.pth \\
        experiments/pretrained_models/GFPGANv1.4.safetensors --card GFPGANv1.4

The architecture and kwargs come from ``--card`` (a model card name or YAML), else from the
card whose weights file name matches the input, else they are inferred from the key names and
shapes. The network is built and the weights are loaded strictly; the output is written to a temp
file, read back and compared tensor by tensor, and only then renamed onto the destination. It
records where it came from (file name, sha256, top-level key, card) in its header, so
``verify_sha256`` can still check it against the card.
"""

import argparse
import json
from pathlib import Path
from typing import Optional, Sequence

import torch

from gfpgan import checkpoint, legacy, model_cards
from gfpgan.cli import add_common_arguments
from gfpgan.errors import UserError, command
from gfpgan.files import atomic_path
from gfpgan.networks import build_network


def _card_for(path: Path, name: Optional[str]) -> Optional[model_cards.ModelCard]:
    """The explicit card, else the card whose weights file is ``path.name``, else None."""
    if name:
        return model_cards.load_card(name)
    for card in model_cards.list_cards():
        if card.weights == path.name and card.arch:
            return card
    return None


def convert(src: Path, dst: Path, card_name: Optional[str] = None, key: Optional[str] = None,
            fp16: bool = False, force: bool = False, verify_hash: bool = False) -> dict:
    """Convert ``src`` (official ``.pth``) into ``dst`` (ours); return a summary dict.

    Args:
        src: official checkpoint.
        dst: output ``.safetensors`` (refused if it exists, unless ``force``).
        card_name: model card that describes ``src``; default: matched by file name or inferred.
        key: top-level key to convert (default: the card's, else params_ema > params > bare).
        fp16: store floating-point tensors as float16 (half the size; loading casts back).
        force: overwrite ``dst``.
        verify_hash: check ``src`` against the card's size and sha256 first.

    Raises:
        UserError: existing output, bad input file, unknown card, mismatching weights.
    """
    if dst.suffix != ".safetensors":
        raise UserError(f"output {dst} must end in .safetensors")
    if dst.exists() and not force:
        raise UserError(f"output {dst} exists; pass --force to overwrite it")
    if src.resolve() == dst.resolve():
        raise UserError(f"input and output are the same file ({src}); choose another output")
    card = _card_for(src, card_name)
    if verify_hash and card is None:
        raise UserError(f"--verify needs a model card for {src}; pass --card")
    if card is not None and card.arch is None:
        raise UserError(f"model card {card.name} describes auxiliary weights ({card.kind}) that are not "
                        f"converted; pass a restorer card such as GFPGANv1.4")
    sd, used_key = legacy.load_checkpoint(src, key, prefer=card.param_key if card is not None else None)
    if card is not None:
        arch, kwargs, how = card.arch, dict(card.kwargs), f"card {card.name}"
    else:
        try:
            arch, kwargs = legacy.infer_arch(sd)
        except UserError as exc:
            raise UserError(f"checkpoint {src}: {exc}") from None
        how = "inferred from keys and shapes"
    digest = model_cards.verify_sha256(src, card) if verify_hash else model_cards.sha256_file(src)
    net = checkpoint.instantiate(arch, kwargs, source=how)
    legacy.check_state_dict(net, sd, src, strict=True)
    net.load_state_dict(sd, strict=True)
    dtype = torch.float16 if fp16 else None
    extra = {"source_file": src.name, "source_sha256": digest, "source_key": used_key,
             "card": card.name if card else None}
    # written to a temp sibling and read back before it may replace ``dst``: the config must
    # rebuild the same network and every tensor must round-trip bit for bit
    with atomic_path(dst, fsync=True) as tmp:
        checkpoint.save_network(tmp, net, arch, kwargs, extra=extra, dtype=dtype)
        back = legacy.load_state_dict(tmp)
        rebuilt = build_network(tmp)
        expected = net.state_dict()
        for name, tensor in expected.items():
            want = tensor.to(torch.float16) if fp16 and tensor.is_floating_point() else tensor
            if name not in back or not torch.equal(back[name], want.cpu()):
                raise UserError(f"verification of {dst} failed at {name}; nothing was written")
        if set(rebuilt.state_dict()) != set(expected):
            raise UserError(f"verification of {dst} failed: the rebuilt network has other keys; "
                            f"nothing was written")
    return {"input": str(src), "output": str(dst), "arch": arch, "kwargs": kwargs, "how": how,
            "key": used_key, "params": checkpoint.count_parameters(net), "tensors": len(expected),
            "dtype": "float16" if fp16 else "as stored", "bytes": dst.stat().st_size,
            "source_sha256": digest}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gfpgan-convert", description="Convert an official GFPGAN .pth into a self-describing "
        ".safetensors (weights + arch + kwargs in one file).")
    parser.add_argument("input", type=Path, help="official checkpoint (.pth)")
    parser.add_argument("output", type=Path, nargs="?",
                        help="output .safetensors (default: the input with a .safetensors suffix)")
    parser.add_argument("--card", help="model card name or YAML that describes the input "
                        "(default: matched by file name, else inferred from the weights)")
    parser.add_argument("--key", help="top-level key to convert: params_ema (default when present) or params")
    parser.add_argument("--fp16", action="store_true", help="store float16 weights (half the size)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")
    parser.add_argument("--verify", action="store_true",
                        help="check the input's size and sha256 against its model card first")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    out = args.output or args.input.with_suffix(".safetensors")
    summary = convert(args.input, out, card_name=args.card, key=args.key, fp16=args.fp16,
                      force=args.force, verify_hash=args.verify)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"converted {summary['input']} [{summary['key'] or 'bare state dict'}] -> {summary['output']}")
        print(f"  arch:   {summary['arch']} ({summary['how']})")
        print(f"  kwargs: {json.dumps(summary['kwargs'])}")
        print(f"  params: {summary['params']:,} in {summary['tensors']} tensors; "
              f"{summary['bytes']:,} bytes ({summary['dtype']})")
        print(f"  source sha256: {summary['source_sha256']}")
    return 0


cli = command(main)  # the console script

if __name__ == "__main__":
    cli()
