"""The switches every command shares are declared once (gfpgan.cli) and mean the same everywhere."""

import argparse
import ast
from pathlib import Path

import pytest

from gfpgan.cli import add_common_arguments, device_arg, device_name
from gfpgan.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
SHARED = ("--debug", "--device", "--overwrite", "--restart", "--quiet")


def _declarations(source: str):
    """``add_argument`` calls that declare one of the shared switches."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
            flags = [a.value for a in node.args if isinstance(a, ast.Constant)]
            found += [f for f in flags if f in SHARED]
    return found


def test_no_command_declares_a_shared_switch_of_its_own():
    source = 'p.add_argument("--debug", action="store_true")\np.add_argument("-x")'
    assert _declarations(source) == ["--debug"]
    own = {str(p.relative_to(ROOT)): _declarations(p.read_text(encoding="utf-8"))
           for p in (ROOT / "gfpgan").rglob("*.py") if p.name != "cli.py"}
    assert {k: v for k, v in own.items() if v} == {}


def test_every_command_with_a_parser_takes_debug():
    from gfpgan import infer_image, infer_video, test, train
    from gfpgan.tools import make_testset, prepare_faces, to_lmdb

    for module in (infer_image, infer_video, test, train, make_testset, prepare_faces, to_lmdb):
        actions = {a.dest: a for a in module.build_parser()._actions}
        assert actions["debug"].default is False, module.__name__


def test_device_values():
    assert device_name("auto") == "auto" and device_name("cuda:1") == "cuda:1"
    assert device_arg("cpu") == "cpu" and device_arg("auto") in ("cpu", "cuda")
    for bad in ("gpu", "cuda:", "CPU", "cuda:x"):
        with pytest.raises(UserError, match="is not a device"):
            device_arg(bad)
    p = add_common_arguments(argparse.ArgumentParser(), device=True, quiet=True, resumable=True)
    args = p.parse_args(["--device", "cpu", "--restart", "--quiet"])
    got = (args.device, args.restart, args.overwrite, args.quiet, args.debug)
    assert got == ("cpu", True, False, True, False)
    with pytest.raises(UserError, match="'tpu' is not a device"):
        p.parse_args(["--device", "tpu"])
