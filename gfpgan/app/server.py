"""Serve the web page that restores faces in photos and videos, on this computer only by default.

``python -m gfpgan.app [--host H] [--port P] [--model M] ...`` (or ``gfpgan-app``). Safe by
default: it listens on 127.0.0.1 unless ``--host`` says otherwise, never opens a share link, sends
no analytics and loads nothing from the internet. Uploads and results live in a
private temporary folder (mode 0700) that is removed when the server stops; the page serves only
what Gradio itself put there (the uploads of the session and the finished results), nothing else
of the machine: Gradio's allowed paths are empty and this checkout and the working directory are
blocked.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from gfpgan.cli import add_common_arguments
from gfpgan.errors import UserError, command

__all__ = ["build_parser", "main", "cli"]

REPO_ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gfpgan-app", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (0.0.0.0: every network of this computer)")
    p.add_argument("--port", type=int, default=7860, help="port to listen on")
    p.add_argument("--model", default=None,
                   help="the model chosen when the page opens: a card name or a .safetensors/.pth "
                        "file (default: GFPGANv1.4 if its weights are here, else the first found)")
    p.add_argument("--bg-upsampler", default=None, metavar="FILE",
                   help="a Real-ESRGAN weights file offered as background upsampler for photos")
    p.add_argument("--temporal", default=None, metavar="FILE",
                   help="a temporal file filled in for videos when the page opens")
    p.add_argument("--max-upload-mb", type=float, default=1024, help="largest upload accepted")
    p.add_argument("--keep-minutes", type=float, default=60,
                   help="how long uploads and results stay on the server (all go when it stops)")
    add_common_arguments(p, device=True)  # the jobs' --device (auto resolved here)
    return p


def _private_root() -> Path:
    return Path(tempfile.mkdtemp(prefix="gfpgan-app-"))  # mode 0700


def _blocked(root: Path) -> List[str]:
    """This checkout and the working directory, unless the private folder lies inside one."""
    out = []
    for p in (REPO_ROOT, Path.cwd()):
        p = p.resolve()
        if p != Path("/") and root.resolve() != p and p not in root.resolve().parents:
            out.append(str(p))
    return list(dict.fromkeys(out))


def _isolate(root: Path) -> Dict[str, Optional[str]]:
    """Environment for Gradio, set before it is imported: no analytics, no hub, private folders.
    Returns the values it replaced (restored when the server stops)."""
    wanted = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
              "GRADIO_TEMP_DIR": str(root / "uploads"),  # uploads and the results it serves
              "GRADIO_EXAMPLES_CACHE": str(root / "examples"),  # never ./.gradio
              "GRADIO_ALLOWED_PATHS": None, "GRADIO_SHARE": None, "GRADIO_SSR_MODE": None}
    saved = {name: os.environ.get(name) for name in wanted}
    _set_env(wanted)
    return saved


def _set_env(values: Dict[str, Optional[str]]) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _page_config(args, max_bytes: int):
    from gfpgan.app.inputs import (
        MODEL_EXTENSIONS,
        PageConfig,
        check_file_setting,
        local_models,
        local_upsamplers,
    )
    from gfpgan.inference.settings import DEFAULT_MODEL

    models = local_models()
    default = None
    if args.model:
        path = Path(args.model).expanduser()
        if path.suffix.lower() in MODEL_EXTENSIONS or path.exists():  # a file, not a card name
            value = check_file_setting(args.model, "model file")
            models.insert(0, (Path(value).name, value))
            default = value
        else:
            from gfpgan.model_cards import load_card

            card = load_card(args.model)  # an unknown name gets its sentence here
            if card.name not in [v for _, v in models]:
                models.insert(0, (card.name, card.name))
            default = card.name
    elif models:
        default = DEFAULT_MODEL if DEFAULT_MODEL in [v for _, v in models] else models[0][1]
    upsamplers = local_upsamplers()
    if args.bg_upsampler:
        value = check_file_setting(args.bg_upsampler, "background upsampler file")
        upsamplers.insert(0, (Path(value).name, value))
    temporal = check_file_setting(args.temporal, "temporal file") if args.temporal else None
    return PageConfig(models, default, upsamplers, args.device, temporal, max_bytes,
                      max(1, int(args.keep_minutes * 60)))


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if not 1 <= args.port <= 65535:
        raise UserError(f"--port {args.port} is not a port; give a number from 1 to 65535.")
    if args.max_upload_mb <= 0 or args.keep_minutes <= 0:
        raise UserError("--max-upload-mb and --keep-minutes must be positive.")
    max_bytes = int(args.max_upload_mb * 2**20)
    root = _private_root()
    runner = None

    def stop(signum, frame):  # SIGTERM ends the server like Ctrl-C: jobs stopped, folder removed
        raise KeyboardInterrupt
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, stop) if main_thread else None
    saved = _isolate(root)
    try:
        try:
            import gradio  # noqa: F401
        except ImportError:
            raise UserError("the web page needs Gradio; install it with pip install 'gfpgan[app]' "
                            "(or pip install -e '.[app]' in this checkout).") from None
        from gfpgan.app.jobs import JobRunner
        from gfpgan.app.page import CSS, build_page

        cfg = _page_config(args, max_bytes)
        runner = JobRunner(root, keep_s=cfg.keep_s)
        page = build_page(runner, cfg)
        if args.host not in LOOPBACK:
            print(f"note: listening on {args.host}: other computers of the network can use this "
                  f"page (and name model files on this one).", file=sys.stderr)
        try:
            page.queue(default_concurrency_limit=1).launch(
                server_name=args.host, server_port=args.port, share=False, inbrowser=False,
                prevent_thread_lock=True, quiet=True, show_error=False, allowed_paths=[],
                blocked_paths=_blocked(root), max_file_size=max_bytes, enable_monitoring=False,
                ssr_mode=False, footer_links=[], run_history=False, mcp_server=False, pwa=False,
                css=CSS)
        except OSError:
            raise UserError(f"cannot listen on {args.host}:{args.port} (the port is taken or the "
                            f"address is not this computer's); choose another --port or --host.") \
                from None
        print(f"The page is at http://{args.host}:{args.port}/ (Ctrl-C to stop).", flush=True)
        try:
            while page.is_running:
                time.sleep(0.2)
        except KeyboardInterrupt:
            print("stopping: jobs cancelled, uploads and results removed.", file=sys.stderr)
        page.close()
        return 0
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
        if runner is not None:
            runner.close()
        shutil.rmtree(root, ignore_errors=True)
        _set_env(saved)


cli = command(main)  # the console script

if __name__ == "__main__":
    cli()
