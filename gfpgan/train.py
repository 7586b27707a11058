"""Train a model from an experiment YAML: ``python -m gfpgan.train -opt options/FILE.yml``.

One process: ``python -m gfpgan.train -opt FILE``. Several GPUs/nodes (DDP, nccl on CUDA, gloo on
CPU): ``torchrun --nproc_per_node=N [--nnodes=M --node_rank=R --master_addr=H --master_port=P]
-m gfpgan.train -opt FILE``. ``--auto-resume`` continues from the newest complete training state
in ``experiments/<name>/training_states``; ``--force-yml key.sub=value`` overrides options.
"""

import argparse
import sys
from typing import Optional, Sequence

from gfpgan.cli import add_common_arguments
from gfpgan.errors import UserError, command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gfpgan.train",
        description="Train (or resume) the experiment an options YAML describes, on one process or "
                    "under torchrun.")
    parser.add_argument("-opt", "--opt", required=True, help="experiment options YAML")
    parser.add_argument("--auto-resume", action="store_true",
                        help="continue from the newest complete training state of this experiment")
    parser.add_argument("--force-yml", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override options, e.g. train.total_iter=1000 "
                             "datasets.train.batch_size_per_gpu=2")
    parser.add_argument("--launcher", default=None, help="ignored (BasicSR compatibility; use torchrun)")
    add_common_arguments(parser, device=True)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from gfpgan.engine.trainer import train  # heavy imports after argument parsing
    from gfpgan.options import load_train_options

    opt = load_train_options(args.opt, args.force_yml)
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda was given but this machine has no CUDA GPU; use "
                            "--device cpu (or auto)")
    cmd = [sys.executable, "-m", "gfpgan.train"] + list(sys.argv[1:] if argv is None else argv)
    return train(opt, argv=cmd, auto_resume=args.auto_resume, device=args.device)


cli = command(main)  # the console script

if __name__ == "__main__":
    cli()
