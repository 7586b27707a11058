"""What every command line of the project shares: ``--debug``, ``--device`` and the output switches.

Each command builds its own parser and adds these through :func:`add_common_arguments`, so a
switch means the same, is spelled the same and has the same default everywhere. This module sits
at the bottom of the package (the standard library; torch only to resolve ``--device auto``).
"""

import argparse
import re

from gfpgan.errors import UserError

__all__ = ["DEVICE_DEFAULT", "DEVICE_HELP", "device_name", "device_arg", "add_common_arguments"]

DEVICE_DEFAULT = "auto"
DEVICE_HELP = ("auto (the GPU when CUDA is available, else the CPU), cpu, cuda or cuda:N; under torchrun "
               "each process takes the GPU of its LOCAL_RANK")
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def device_name(text: str) -> str:
    """``--device``'s value, checked: auto, cpu, cuda or cuda:N (the restorers resolve ``auto``)."""
    if not _DEVICE.fullmatch(text):  # a UserError, not argparse's usage dump: one sentence
        raise UserError(f"--device '{text}' is not a device; use auto, cpu, cuda or cuda:N.")
    return text


def device_arg(text: str) -> str:
    """:func:`device_name` with ``auto`` resolved to ``cuda`` or ``cpu``, for the commands that
    hand the device to torch themselves."""
    if device_name(text) == DEVICE_DEFAULT:
        import torch  # only when a command parses its arguments

        return "cuda" if torch.cuda.is_available() else "cpu"
    return text


def add_common_arguments(parser: argparse.ArgumentParser, *, device: bool = False,
                         quiet: bool = False, resumable: bool = False) -> argparse.ArgumentParser:
    """Add the shared switches to ``parser``.

    Args:
        device: ``--device`` (see :data:`DEVICE_HELP`).
        quiet: ``--quiet``: no progress bar.
        resumable: ``--overwrite`` and ``--restart``, for commands that write an output folder
            and resume an interrupted run of themselves.
    """
    g = parser.add_argument_group("common options")
    if device:
        g.add_argument("--device", type=device_arg, default=DEVICE_DEFAULT, help=DEVICE_HELP)
    if resumable:
        g.add_argument("--overwrite", action="store_true", help="replace the output if it exists")
        g.add_argument("--restart", action="store_true",
                       help="discard an interrupted run instead of resuming it")
    if quiet:
        g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser
