"""Images/s of ``binsort.data.resize.resize_folder`` against a naive one-process PIL loop.

Both resize the same subset of an ImageFolder (copied into a temporary folder first, so both
read from the same warm OS file cache) to a shorter side of ``--size`` pixels and write JPEGs
of the same quality with the same LANCZOS filter. The naive loop decodes every photo at full
size; ``resize_folder`` lets the JPEG decoder decode at a reduced scale (``draft``), resizes
with ``reducing_gap`` and can spread files over worker processes. After one untimed pass of
each, rounds alternate which side goes first; the figures are the means over rounds.

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/resize_speed.py \
        --src data/trashnet --images 300 --size 160 --workers 1
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from functools import partial
from pathlib import Path

from PIL import Image
from rounds import alternating_rounds

from binsort.data.resize import resize_folder, target_size

QUALITY = 90  # resize_folder's default, used by the naive loop too


def naive_resize(src: Path, dst: Path, size: int) -> int:
    """Open, convert to RGB, resize the shorter side to ``size``, save: no draft decoding."""
    count = 0
    for path in sorted(src.glob("*/*")):
        im = Image.open(path).convert("RGB")
        im = im.resize(target_size(im.width, im.height, size), Image.Resampling.LANCZOS)
        out = dst / path.parent.name / path.name
        out.parent.mkdir(parents=True, exist_ok=True)
        im.save(out, "JPEG", quality=QUALITY)
        count += 1
    return count


def binsort_resize(src: Path, dst: Path, size: int, workers: int) -> int:
    result = resize_folder(src, dst, size, quality=QUALITY, workers=workers)
    if not result.ok:
        raise SystemExit(f"resize_folder skipped files: {result.skipped[:3]}")
    return result.written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", default="data/trashnet")
    parser.add_argument("--images", type=int, default=300, help="size of the subset")
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--workers", type=int, default=1, help="resize_folder's processes")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()

    paths = sorted(Path(args.src).glob("*/*.jpg"))
    # An even spread over the sorted list, so every class is in the subset.
    subset = paths[:: max(1, len(paths) // args.images)][: args.images]
    with tempfile.TemporaryDirectory(prefix="binsort-resize-") as tmp:
        src = Path(tmp) / "src"
        for path in subset:
            (src / path.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, src / path.parent.name / path.name)
        first = Image.open(subset[0])
        print(
            f"{len(subset)} images from {args.src} (first {first.size[0]}x{first.size[1]} "
            f"{first.format}), shorter side -> {args.size} px, JPEG quality {QUALITY}, "
            f"resize_folder workers={args.workers}, {args.rounds} rounds",
            flush=True,
        )

        def speed(side: str) -> float:
            dst = Path(tmp) / side  # emptied each time: resize_folder skips existing outputs
            shutil.rmtree(dst, ignore_errors=True)
            start = time.perf_counter()
            if side == "naive":
                count = naive_resize(src, dst, args.size)
            else:
                count = binsort_resize(src, dst, args.size, args.workers)
            return count / (time.perf_counter() - start)

        # An untimed pass of each first: the first pass over fresh files ran ~35 % slower in
        # trials (page cache, first writes into new folders), which would favour the second side.
        for side in ("naive", "binsort"):
            speed(side)
        means = alternating_rounds(
            {"naive": partial(speed, "naive"), "resize_folder": partial(speed, "binsort")},
            args.rounds,
        )
        naive, binsort = means["naive"], means["resize_folder"]
        print(f"naive PIL loop, 1 process     {naive:8.1f} images/s")
        print(
            f"resize_folder, workers={args.workers:<4}  {binsort:8.1f} images/s"
            f"  {binsort / naive:5.2f}x of naive"
        )


if __name__ == "__main__":
    main()
