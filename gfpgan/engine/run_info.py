"""What a run folder records about how it was started: resolved options, command line, git SHA."""

import shlex
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional, Sequence

from gfpgan.errors import UserError
from gfpgan.files import write_text_atomic
from gfpgan.options import dump_yaml


def git_commit() -> str:
    """The checkout's ``HEAD`` commit, or ``"unknown"`` outside a git checkout."""
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return res.stdout.strip() if res.returncode == 0 else "unknown"


def write_run_info(run_dir, opt: dict, argv: Optional[Sequence[str]] = None) -> Dict[str, str]:
    """Write the resolved options, the command line and the git commit into ``run_dir``.

    Files (each written atomically): ``options.yml``, ``command.txt`` (one shell-quoted line),
    ``git_commit.txt``.

    Args:
        run_dir: The run folder (created when missing).
        opt: The resolved options.
        argv: The command line; default ``sys.argv``.
    Returns:
        ``{"commit": the git SHA written}``.
    Raises:
        UserError: when ``run_dir`` cannot be created or written.
    """
    run_dir = Path(run_dir)
    argv = list(sys.argv if argv is None else argv)
    commit = git_commit()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run_dir / "options.yml", dump_yaml(opt))
        write_text_atomic(run_dir / "command.txt", shlex.join(str(a) for a in argv) + "\n")
        write_text_atomic(run_dir / "git_commit.txt", commit + "\n")
    except OSError as exc:
        raise UserError(f"cannot write the run folder '{run_dir}' ({exc.strerror}); choose a "
                        f"writable path.experiments_root") from None
    return {"commit": commit}
