"""Restore the faces of videos: ``python -m gfpgan.infer_video -i in.mp4 -o out.mp4``.

Any container/codec FFmpeg (PyAV) decodes, or a folder of frames, goes in; an mp4/mov/mkv comes
out with every frame at the input's timestamps, rotation, aspect ratio, colour tags and all audio
streams. Work is cut into segments (``--segment-frames``) kept in ``.<output>.parts`` next to the
output, so ``--resume`` continues an interrupted job, and ``torchrun --nproc_per_node=N -m
gfpgan.infer_video ...`` shares segments (and a list of videos) among N processes or GPUs; the
output appears only when complete. See :mod:`gfpgan.inference.video_job` for the pipeline.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from fractions import Fraction
from pathlib import Path
from typing import List, Optional, Sequence

from gfpgan.errors import UserError, run_cli

__all__ = ["main", "cli", "build_parser", "SegmentRestorer"]

_TRACKS = 100000  # track-id stride per segment in collected metadata
_PAST = 8  # frames of history of the landmark smoother


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gfpgan-infer-video", description=__doc__.split("\n")[0])
    p.add_argument("-i", "--input", nargs="+", required=True,
                   help="video file(s) (mp4, mov, mkv, avi, webm...) or a folder of frames")
    p.add_argument("-o", "--output", required=True,
                   help="output file (.mp4/.mov/.mkv), or a folder for several inputs")
    g = p.add_argument_group("model")
    g.add_argument("--model", default="GFPGANv1.4",
                   help="model card name, our .safetensors, an official .pth or an .onnx file")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    g.add_argument("--backend", default="torch", choices=("torch", "onnxruntime"))
    g.add_argument("--half", action="store_true", help="fp16 on CUDA")
    g.add_argument("--strength", type=float, default=1.0, help="0..1 blend of restored face")
    g.add_argument("--only", default="all", choices=("all", "center", "largest"))
    g.add_argument("--min-face", type=float, default=0.0, help="skip faces smaller (px)")
    g.add_argument("--detector", default="mtcnn", choices=("mtcnn", "retinaface"))
    g.add_argument("--detector-weights", default=None, help="RetinaFace weights file")
    g.add_argument("--detect-every", type=int, default=8, metavar="K",
                   help="full face detection every K frames, faces tracked in between (1: every "
                        "frame)")
    g.add_argument("--parse-weights", default=None, help="ParseNet weights for face masks")
    g.add_argument("--batch-faces", type=int, default=8, help="faces per forward pass")
    g.add_argument("--upscale", type=float, default=1, help="output scale of the whole frame")
    t = p.add_argument_group("temporal stability (each can be turned off to compare)")
    t.add_argument("--no-stabilize", action="store_true", help="no tracking/landmark smoothing")
    t.add_argument("--no-mask-smoothing", action="store_true", help="per-frame paste masks")
    t.add_argument("--random-noise", action="store_true",
                   help="fresh StyleGAN2 noise per call (the reference's behaviour; flickers)")
    t.add_argument("--lookahead", type=int, default=2, help="smoother look-ahead (frames)")
    e = p.add_argument_group("encoding and job")
    e.add_argument("--codec", default="libx264", help="any video encoder PyAV offers")
    e.add_argument("--crf", type=float, default=18, help="quality (x264/x265/vp9/av1)")
    e.add_argument("--preset", default="medium", help="x264/x265 speed preset")
    e.add_argument("--pix-fmt", default=None, help="encoder pixel format (default: source's)")
    e.add_argument("--codec-option", action="append", default=[], metavar="KEY=VALUE",
                   help="any further encoder option, repeatable (e.g. x264-params=mbtree=0 for "
                        "run-to-run identical x264 output)")
    e.add_argument("--segment-frames", type=int, default=240,
                   help="frames per segment: the unit of --resume and torchrun sharing")
    e.add_argument("--warmup", type=int, default=None,
                   help="frames before each segment restored for context, not written (default: "
                        "--detect-every + 8, which makes the output independent of the split)")
    e.add_argument("--fps", type=Fraction, default=Fraction(25),
                   help="frame rate of a folder-of-frames input (e.g. 30000/1001)")
    e.add_argument("--resume", action="store_true", help="continue an interrupted job")
    e.add_argument("--side-by-side", default=None, metavar="PATH",
                   help="also write an input|restored comparison video")
    e.add_argument("--save-faces", default=None, metavar="DIR", help="export restored crops")
    e.add_argument("--collect", default=None, metavar="DIR",
                   help="collect the best aligned faces per track into DIR/faces.lmdb")
    e.add_argument("--no-progress", action="store_true")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


class SegmentRestorer:
    """Adapts a :class:`VideoFaceRestorer` to segmented jobs.

    Each segment starts from a clean tracker/smoother state (so a segment's result does not
    depend on which process ran the segment before it); face crops can be saved, and the
    collector sees frame numbers of the whole video and only the frames a segment writes.
    """

    def __init__(self, vfr, save_faces: Optional[str] = None):
        self.vfr = vfr
        self.save_faces = Path(save_faces) if save_faces else None
        self.collector = vfr.collector
        self.lookahead = vfr.lookahead
        self._seg = (0, 0, 0, 0)
        self.name = "video"
        self._restored: List = []
        self._k = 0
        if self.save_faces is not None or self.collector is not None:
            orig = vfr.restore_batch

            def restore_batch(crops):  # remember crops in call order to match collector.add
                out = orig(crops)
                self._restored, self._k = list(out), 0
                return out
            vfr.restore_batch = restore_batch
            vfr.collector = self

    def start_segment(self, name: str, segment: int, first_index: int, write_from: int,
                      write_to: int) -> None:
        """Called by the job before each segment (indices are frame-table positions)."""
        self.name = name
        self._seg = (segment, first_index, write_from, write_to)
        if self.collector is not None and hasattr(self.collector, "video"):
            self.collector.video = name

    def _reset(self) -> None:
        v = self.vfr
        if hasattr(v, "reset"):
            v.reset()
            return
        tr, sm = v.tracker, v.smoother
        v.tracker = type(tr)(iou_threshold=tr.iou_threshold, max_missed=tr.max_missed,
                             landmark_weight=tr.landmark_weight)
        v.smoother = type(sm)(past=sm.past, lookahead=sm.lookahead, sigma=sm.sigma,
                              enabled=sm.enabled)
        if v.mask_smoother is not None:
            v.mask_smoother = type(v.mask_smoother)(alpha=getattr(v.mask_smoother, "alpha", 0.35))

    def process(self, frames):
        self._reset()
        yield from self.vfr.process(frames, first_index=self._seg[1])

    # --- collector protocol (used only with --save-faces / --collect) ---
    def add(self, frame: int, track: int, crop, box, landmarks, score, affine) -> None:
        seg, first, lo, hi = self._seg
        index = first + frame
        k, self._k = self._k, self._k + 1
        if not lo <= index < hi:
            return  # warm-up/tail frames belong to a neighbouring segment
        if self.save_faces is not None and k < len(self._restored):
            from gfpgan.utils import write_image_atomic
            write_image_atomic(self.save_faces / self.name / f"f{index:06d}_t{track:03d}.png",
                               self._restored[k])
        if self.collector is not None:
            # track ids restart with each segment: make them unique within the video
            self.collector.add(frame=index, track=seg * _TRACKS + track, crop=crop, box=box,
                               landmarks=landmarks, score=score, affine=affine)

    def retire(self, live_ids) -> None:
        if self.collector is not None:
            self.collector.retire([self._seg[0] * _TRACKS + t for t in live_ids])

    def end_video(self) -> None:
        if self.collector is not None:
            self.collector.end_video()


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


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from gfpgan.inference import video_job as vj  # heavy imports after argument parsing
    outputs = _outputs(args.input, args.output)
    if args.side_by_side and len(args.input) > 1:
        raise UserError("--side-by-side takes one input video; run the inputs one by one.")
    if args.segment_frames < 1 or args.detect_every < 1 or (args.warmup or 0) < 0 or \
            args.lookahead < 0:
        raise UserError("--segment-frames and --detect-every must be >= 1 and --warmup/--lookahead "
                        ">= 0.")
    codec_options = {}
    for item in args.codec_option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--codec-option {item!r} is not KEY=VALUE (e.g. x264-params=mbtree=0).")
        codec_options[key] = value
    world = int(os.environ.get("WORLD_SIZE", 1))
    rank, barrier, device = 0, None, args.device
    if world > 1:
        from gfpgan import dist
        info = dist.init_dist(args.device)
        rank, barrier, device = info.rank, dist.barrier, str(info.device)
    from gfpgan.inference.face_pipeline import VideoFaceRestorer
    collector = None
    if args.collect:
        from gfpgan.inference.collect import FaceCollector
        collector = FaceCollector(args.collect if world == 1 else
                                  Path(args.collect) / f"rank{rank}")
    vfr = VideoFaceRestorer(args.model, device=device, backend=args.backend, half=args.half,
                            fixed_noise=not args.random_noise, detector=args.detector,
                            detector_weights=args.detector_weights, only=args.only,
                            min_face=args.min_face, strength=args.strength,
                            batch_faces=args.batch_faces, upscale=args.upscale,
                            parse_weights=args.parse_weights, stabilize=not args.no_stabilize,
                            lookahead=args.lookahead, mask_smoothing=not args.no_mask_smoothing,
                            past=_PAST, detect_every=args.detect_every, collector=collector)
    proc = SegmentRestorer(vfr, args.save_faces)
    opts = vj.VideoJobOptions(
        codec=args.codec, crf=args.crf, preset=args.preset, pix_fmt=args.pix_fmt,
        codec_options=codec_options,
        segment_frames=args.segment_frames,
        # the context a segment needs: back to a key frame, then the smoother's history
        warmup=args.detect_every + _PAST if args.warmup is None else args.warmup,
        # the look-ahead and the held frames up to the next key frame must see past the end
        tail=max(proc.lookahead, 0) + args.detect_every + 4, resume=args.resume,
        side_by_side=args.side_by_side,
        progress=not args.no_progress, folder_fps=args.fps,
        fingerprint={k: getattr(args, k) for k in (
            "model", "strength", "only", "min_face", "detector", "upscale", "no_stabilize",
            "no_mask_smoothing", "random_noise", "lookahead", "half", "backend",
            "detect_every")})
    summaries = None
    try:
        summaries = vj.run_videos(list(zip(args.input, outputs)), proc, opts, rank, world,
                                  barrier)
    except MemoryError:
        raise UserError("the model and frames do not fit in memory; try --batch-faces 1, "
                        "--half on CUDA, or --device cpu.") from None
    except RuntimeError as exc:
        if "out of memory" not in str(exc):
            raise
        raise UserError(f"the model does not fit in {device} memory; try --batch-faces 1, "
                        f"--half, or --device cpu.") from None
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise UserError(f"no space left while writing next to {outputs[0]}; free some space "
                            f"and rerun with --resume.") from None
        raise
    finally:
        if collector is not None:
            collector.close()
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


def cli() -> None:
    run_cli(main)


if __name__ == "__main__":
    cli()
