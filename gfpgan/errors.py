"""User-facing errors and the command-line wrapper that turns them into one clear sentence.

Library code raises :class:`UserError` for anything the user can fix (a missing file, a bad
option, a wrong checkpoint). Entry points call :func:`run_cli`, which prints the message on one
line, exits non-zero and shows a traceback only with ``--debug``.
"""

import functools
import sys
from typing import Callable, Optional, Sequence


class UserError(Exception):
    """An error caused by the user's input; its message says what is wrong and how to fix it."""


EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def run_cli(main: Callable[[Optional[Sequence[str]]], Optional[int]],
            argv: Optional[Sequence[str]] = None) -> None:
    """Run ``main(argv)`` and exit with its return code, reporting user errors in one line.

    ``--debug`` anywhere on the command line shows the full traceback instead.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        code = main(args)
    except UserError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(int(code or 0))


def command(main: Callable[[Optional[Sequence[str]]], Optional[int]]) -> Callable[[], None]:
    """The console-script entry point of a command's ``main``: :func:`run_cli` on ``sys.argv``."""
    return functools.partial(run_cli, main)
