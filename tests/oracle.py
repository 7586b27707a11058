"""Run snippets against the reference implementation (gfpgan==1.3.8) in a subprocess.

The reference is also called ``gfpgan``, so it can never share a process with this project. Each
call starts ``python -c`` in a temporary working directory with ``PYTHONPATH`` set to the oracle
folder; tensors go in through ``in.pt`` (visible to the snippet as ``IN``) and come back through
``out.pt`` (the snippet fills the dict ``OUT``).

The reference's original GFPGANv1 and BasicSR's StyleGAN2 discriminator call BasicSR's compiled
``fused_act`` extension, which does not exist on CPU. With ``fused_act_standin=True`` a small
pure-PyTorch module is placed in ``sys.modules['basicsr.ops.fused_act']`` before anything imports
BasicSR, so their forward passes can run (BasicSR's ``upfirdn2d`` already has a native CPU path).

Tests using this helper are marked ``@pytest.mark.oracle`` and call :func:`require_oracle` first:
it skips when the oracle folder is missing, or fails when ``CI=true`` (CI must have the oracle).
"""

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Dict, Optional

import pytest
import torch

ORACLE_DIR = Path(os.environ.get("GFPGAN_ORACLE_DIR",
                                 Path(__file__).resolve().parents[1] / ".cache" / "oracle"))

# A pure-PyTorch replacement of basicsr.ops.fused_act: leaky_relu(x + bias) * scale.
FUSED_ACT_STANDIN = '''
import sys as _sys, types as _types
import torch as _torch
from torch import nn as _nn
from torch.nn import functional as _F
_fa = _types.ModuleType("basicsr.ops.fused_act")
def _fused_leaky_relu(input, bias, negative_slope=0.2, scale=2 ** 0.5):
    if bias is not None:
        input = input + bias.view(1, -1, *([1] * (input.ndim - 2)))
    return _F.leaky_relu(input, negative_slope) * scale
class _FusedLeakyReLU(_nn.Module):
    def __init__(self, channel, negative_slope=0.2, scale=2 ** 0.5):
        super().__init__()
        self.bias = _nn.Parameter(_torch.zeros(channel))
        self.negative_slope = negative_slope
        self.scale = scale
    def forward(self, input):
        return _fused_leaky_relu(input, self.bias, self.negative_slope, self.scale)
_fa.fused_leaky_relu = _fused_leaky_relu
_fa.FusedLeakyReLU = _FusedLeakyReLU
_sys.modules["basicsr.ops.fused_act"] = _fa
'''


def oracle_available() -> bool:
    """True when the reference package is unpacked at ``ORACLE_DIR``."""
    return (ORACLE_DIR / "gfpgan" / "archs" / "gfpganv1_clean_arch.py").is_file()


def require_oracle() -> None:
    """Skip (or, under CI=true, fail) when the oracle folder is missing."""
    if oracle_available():
        return
    msg = (f"reference gfpgan==1.3.8 not found at {ORACLE_DIR}; install it with "
           f"`pip install --no-deps --target {ORACLE_DIR} gfpgan==1.3.8` (or set GFPGAN_ORACLE_DIR)")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg)
    pytest.skip(msg)


def run_oracle(snippet: str, inputs: Optional[Dict] = None, fused_act_standin: bool = False,
               timeout: float = 600) -> Dict:
    """Run ``snippet`` with the reference importable as ``gfpgan`` and return its ``OUT`` dict.

    Args:
        snippet: Python source; ``IN`` (the inputs), ``OUT`` (a dict to fill with tensors or
            state dicts) and ``torch`` are predefined; the working directory is a scratch folder.
        inputs: tensors/state dicts passed as ``IN``.
        fused_act_standin: install the pure-PyTorch ``basicsr.ops.fused_act`` before importing.
        timeout: seconds before the subprocess is killed.

    Returns:
        The snippet's ``OUT`` dict, loaded with ``weights_only=True``.
    """
    require_oracle()
    with tempfile.TemporaryDirectory(prefix="gfpgan_oracle_") as tmp:
        torch.save(inputs or {}, os.path.join(tmp, "in.pt"))
        code = ((FUSED_ACT_STANDIN if fused_act_standin else "")
                + "import torch\ntorch.set_num_threads(%d)\n" % torch.get_num_threads()
                + "IN = torch.load('in.pt', weights_only=True)\nOUT = {}\n"
                + textwrap.dedent(snippet)
                + "\ntorch.save(OUT, 'out.pt')\n")
        path = os.pathsep.join(filter(None, [str(ORACLE_DIR), os.environ.get("PYTHONPATH")]))
        env = dict(os.environ, PYTHONPATH=path, PYTHONWARNINGS="ignore")
        # cwd is the scratch folder so the project checkout on '' cannot shadow the reference
        proc = subprocess.run([sys.executable, "-c", code], cwd=tmp, env=env, capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0:
            raise AssertionError(f"oracle snippet failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
        return torch.load(os.path.join(tmp, "out.pt"), map_location="cpu", weights_only=True)
