"""Pack a folder of images into a BasicSR-layout LMDB (data.mdb + meta_info.txt).

Usage::

    python -m gfpgan.tools.to_lmdb datasets/ffhq/ffhq_512 datasets/ffhq/ffhq_512.lmdb

Keys are the file stems (``00012.png`` -> ``00012``); every image is decoded (gray, RGBA and
16-bit images become RGB 8-bit) and stored as PNG. Unreadable files are skipped and listed once.
A ``landmarks.json`` sidecar in the folder is carried over for the images written. The LMDB is
built in ``<dest>.partial`` and renamed into place at the end: an interrupted run is resumed by
running the same command again (``--restart`` starts over instead).
"""

import argparse
from pathlib import Path
from typing import Optional, Sequence

from tqdm import tqdm

from gfpgan.cli import add_common_arguments
from gfpgan.errors import UserError, command


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gfpgan.tools.to_lmdb", description=__doc__.split("\n")[0])
    p.add_argument("src", help="folder of images (non-recursive)")
    p.add_argument("dest", help="LMDB folder to create; should end in .lmdb")
    p.add_argument("--compress-level", type=int, default=1, help="PNG compression 0-9 (default 1, BasicSR's)")
    add_common_arguments(p, quiet=True, resumable=True)
    return p


def folder_to_lmdb(src, dest, compress_level: int = 1, overwrite: bool = False, resume: bool = True,
                   progress: bool = True) -> dict:
    """Pack ``src`` into the LMDB ``dest``; returns counts {'written', 'resumed', 'bad': [names]}."""
    from gfpgan.data.file_backends import LANDMARKS_FILE, LmdbWriter, read_landmarks
    from gfpgan.images import list_images, read_image_or_skip

    src = Path(src)
    if not src.is_dir():
        raise UserError(f"{src} is not a folder; give the folder of images to pack.")
    files = list_images(src)
    if not files:
        raise UserError(f"{src} contains no images (png/jpg/bmp/webp/tif); check the path.")
    stems = [f.stem for f in files]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise UserError(f"{src} has several files named {dupes[0]}.*; keys must be unique, rename them.")
    lms = read_landmarks(src / LANDMARKS_FILE)["landmarks"] if (src / LANDMARKS_FILE).is_file() else {}
    size = read_landmarks(src / LANDMARKS_FILE)["size"] if lms else 512
    counts = {"written": 0, "resumed": 0, "bad": []}
    with LmdbWriter(dest, overwrite=overwrite, resume=resume, landmarks_size=size) as w:
        for f in tqdm(files, desc="to-lmdb", unit="img", disable=not progress):
            if w.has(f.stem):
                counts["resumed"] += 1
                continue
            img = read_image_or_skip(f, counts["bad"])
            if img is None:
                continue
            lm = lms.get(f.stem, lms.get(f.name))
            w.add(f.stem, img, landmarks=lm, compress_level=compress_level)
            counts["written"] += 1
        if counts["written"] + counts["resumed"] == 0:
            w.discard()
            raise UserError(f"no image in {src} is readable; nothing to pack.")
    return counts


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    c = folder_to_lmdb(args.src, args.dest, args.compress_level, args.overwrite, not args.restart,
                       progress=not args.quiet)
    print(f"{args.dest}: {c['written']} images written, {c['resumed']} already there (resumed), "
          f"{len(c['bad'])} unreadable skipped{': ' + ', '.join(c['bad'][:10]) if c['bad'] else ''}")
    return 0


cli = command(main)  # the console script

if __name__ == "__main__":
    cli()
