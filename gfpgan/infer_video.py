"""Restore the faces of videos: ``python -m gfpgan.infer_video -i in.mp4 -o out.mp4``.

Any container/codec FFmpeg (PyAV) decodes, or a folder of frames, goes in; an mp4/mov/mkv comes
out with every frame at the input's timestamps, rotation, aspect ratio, colour tags and all audio
streams. Work is cut into segments (``--segment-frames``) kept in ``.<output>.parts`` next to the
output, so ``--resume`` continues an interrupted job, and ``torchrun --nproc_per_node=N -m
gfpgan.infer_video ...`` shares segments (and a list of videos) among N processes or GPUs; the
output appears only when complete. See :mod:`gfpgan.inference.job.video_job` for the pipeline.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import os
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from gfpgan.cli import add_common_arguments
from gfpgan.errors import UserError, command
from gfpgan.inference.job.options import VideoJobOptions, add_job_arguments
from gfpgan.inference.settings import DEFAULT_MODEL

__all__ = ["main", "cli", "build_parser"]



def build_parser() -> argparse.ArgumentParser:
    from gfpgan.inference.settings import add_face_arguments, add_video_arguments

    p = argparse.ArgumentParser(prog="gfpgan-infer-video", description=__doc__.split("\n")[0])
    p.add_argument("-i", "--input", nargs="+", required=True,
                   help="video file(s) (mp4, mov, mkv, avi, webm...) or a folder of frames")
    p.add_argument("-o", "--output", required=True,
                   help="output file (.mp4/.mov/.mkv), or a folder for several inputs")
    add_face_arguments(p)
    add_video_arguments(p)
    t = p.add_argument_group("learned temporal module")
    t.add_argument("--temporal", default=None, metavar="FILE",
                   help="a temporal file: one recurrent state per face track (with --model BASE, "
                        "the base it was trained on; a file that holds its base needs no --model)")
    t.add_argument("--no-temporal", action="store_true",
                   help="restore frame by frame (with --temporal: with the very base the file names, "
                        "to compare)")
    pz = p.add_argument_group("personalization")
    pz.add_argument("--personalize", action="store_true",
                    help="first learn the person from the video's own best faces (near, sharp), then "
                         "restore with what was learned; the personal file is kept beside the output")
    add_job_arguments(p)
    f = p.add_argument_group("faces out")
    f.add_argument("--save-faces", default=None, metavar="DIR", help="export restored crops")
    f.add_argument("--collect", default=None, metavar="DIR",
                   help="collect the best aligned faces per track into DIR/faces.lmdb")
    add_common_arguments(p)
    return p


def _outputs(inputs: Sequence[str], output: str) -> List[str]:
    out = Path(output)
    as_dir = len(inputs) > 1 or out.is_dir() or output.endswith(os.sep)
    if not as_dir:
        return [str(out)]
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file; give a folder as --output for several inputs.")
    names = []
    for src in inputs:
        s = Path(src)
        ext = s.suffix.lower() if s.suffix.lower() in (".mp4", ".mov", ".mkv") else ".mp4"
        names.append(str(out / f"{s.stem if s.is_file() else s.name}{ext}"))
    if len(set(names)) != len(names):
        raise UserError("several inputs have the same name; give them distinct names or run "
                        "them one by one.")
    return names


def _processor(args, config, sinks):
    """The segment processor the arguments ask for: per frame, or with the temporal module."""
    from gfpgan.inference.tracks.video_restorer import VideoFaceRestorer

    if args.temporal is None:  # frame by frame, with or without --no-temporal
        return VideoFaceRestorer(args.model, config, sinks=sinks)
    from gfpgan.inference.tracks.temporal_step import load_temporal_net, temporal_restorer
    from gfpgan.temporal_file import read_temporal_config

    base = args.model  # --model left at its default: the file's own base, when it holds one
    if base == DEFAULT_MODEL and read_temporal_config(args.temporal)["extra"].get("contains_base"):
        base = None
    if args.no_temporal:  # the very base the file names (checked), frame by frame
        net = load_temporal_net(args.temporal, base)
        return VideoFaceRestorer(base or net.base, config, sinks=sinks)
    return temporal_restorer(args.temporal, base, config, sinks=sinks)


def _personalize(args, config) -> Optional[str]:
    """``--personalize``: scan the video for targets, tune, and return the personal file (None,
    with a note, when no face qualifies)."""
    from gfpgan.inference import video as vio
    from gfpgan.inference.tracks.targets import TargetCollector
    from gfpgan.inference.tracks.video_restorer import VideoFaceRestorer
    from gfpgan.personalize import Tuning, matched_degradation, personalize_on

    if len(args.input) > 1 or args.temporal:
        raise UserError("--personalize learns one video's person: give one input and no --temporal "
                        "(reuse the personal file with --personal FILE).")
    found = TargetCollector()
    scan = VideoFaceRestorer(args.model, dataclasses.replace(config, strength=0.0, keep_detail=0.0,
                                                             personal=None), sinks=[found])
    info = vio.probe_video(args.input[0], args.fps)
    for _ in scan.process(d.image for d in vio.iter_frames(info, int(info.pts[0]), None)):
        pass
    if not found.targets:
        print(f"note: no face of {Path(args.input[0]).name} is large, sharp and frontal enough to learn "
              f"from (at least {scan.size} px in the video); restoring with the base model.",
              file=sys.stderr)
        return None
    out = str(Path(_outputs(args.input, args.output)[0]).with_suffix(".personal.safetensors"))
    tuning = Tuning(degradation=matched_degradation(scan.size, found.restore_scales))
    result = personalize_on(found.targets, args.model, out, tuning, scan.device,
                            progress=not args.no_progress)
    print(f"personalized on {result['targets']} faces of the video ({result['iterations']} iterations, "
          f"held-out PSNR {result['held_out_psnr_base']:.2f} -> {result['held_out_psnr']:.2f} dB): "
          f"{out} (reuse it with --personal)", file=sys.stderr)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from gfpgan.inference.job import video_job as vj  # heavy imports after argument parsing
    outputs = _outputs(args.input, args.output)
    if args.side_by_side and len(args.input) > 1:
        raise UserError("--side-by-side takes one input video; run the inputs one by one.")
    opts = VideoJobOptions.from_args(args)
    world = int(os.environ.get("WORLD_SIZE", 1))
    rank, barrier = 0, None
    from gfpgan.inference.settings import VideoRestorerConfig

    config = VideoRestorerConfig.from_args(args)
    if world > 1:
        from gfpgan import dist
        info = dist.init_dist(args.device)
        rank, barrier = info.rank, dist.barrier
        config = dataclasses.replace(config, device=str(info.device))
    if args.personalize:
        if world > 1:
            raise UserError("--personalize runs in one process; then share the restore with "
                            "torchrun and --personal FILE.")
        personal = _personalize(args, config)
        if personal:
            config = dataclasses.replace(config, personal=personal)
    sinks, collector = [], None
    if args.collect:
        from gfpgan.inference.tracks.face_database import FaceCollector
        collector = FaceCollector(args.collect if world == 1 else
                                  Path(args.collect) / f"rank{rank}")
        sinks.append(collector)
    if args.save_faces:
        from gfpgan.inference.tracks.sinks import FaceSaver
        sinks.append(FaceSaver(args.save_faces))
    processor = _processor(args, config, sinks)
    summaries = None
    try:
        summaries = vj.run_videos(list(zip(args.input, outputs)), processor, opts, rank, world,
                                  barrier)
    except MemoryError:
        raise UserError("the model and frames do not fit in memory; try --batch-faces 1, "
                        "--precision fp16 on CUDA, or --device cpu.") from None
    except RuntimeError as exc:
        if "out of memory" not in str(exc):
            raise
        raise UserError(f"the model does not fit in {config.device} memory; try --batch-faces 1, "
                        f"--precision fp16, or --device cpu.") from None
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise UserError(f"no space left while writing next to {outputs[0]}; free some space "
                            f"and rerun with --resume.") from None
        raise
    finally:
        if collector is not None:
            collector.close()
            if collector.targets_written == 0 and summaries is not None:
                print(f"note: no collected face can serve as a training target (none is at least "
                      f"{processor.size} px in the video, confident and frontal); "
                      f"{collector.dest} keeps them for reference only.", file=sys.stderr)
        if world > 1:
            from gfpgan import dist
            dist.cleanup(synchronize=summaries is not None)
    for s in summaries:
        note = f", {s.lost} frame(s) could not be decoded and were dropped" if s.lost else ""
        again = f", {s.reused} segment(s) reused" if s.reused else ""
        print(f"wrote {s.output}: {s.frames} frames in {s.seconds:.1f} s{again}{note}",
              file=sys.stderr)
        for line in s.notes:  # repaired timestamps, streams the container cannot hold
            print(f"note: {Path(s.input).name}: {line}", file=sys.stderr)
    return 0


cli = command(main)  # the console script

if __name__ == "__main__":
    cli()
