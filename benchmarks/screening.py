"""How often the non-photo check (``binsort.screening``) fires on real photos, and on
synthetic non-photos.

Reads every image under ROOT the way ``predict`` does (shorter side at ``--size``), and
prints the smallest standard deviation and largest roughness found, with the share of photos
the check would mark "not recognised" (its false-alarm rate), then the same for blank frames
and random noise made here.

    python benchmarks/screening.py data/trashnet
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from binsort.data.folder import scan_folder
from binsort.data.images import open_rgb, resize_shorter
from binsort.screening import screen, statistics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()

    images = scan_folder(args.root)
    stds, roughs, flagged = [], [], []
    for path, _ in images.samples:
        im = resize_shorter(open_rgb(images.root / path, min_side=args.size), args.size)
        std, rough = statistics(im)
        stds.append(std)
        roughs.append(rough)
        if screen(im) is not None:
            flagged.append(path)
    n = len(images.samples)
    print(f"{n} photos under {args.root}")
    print(f"smallest std {min(stds):.4f}, largest roughness {max(roughs):.3f}")
    print(f"marked not recognised: {len(flagged)} of {n} ({len(flagged) / n:.2%})")
    for p in flagged[:10]:
        print("  ", p)

    rng = np.random.default_rng(0)
    synthetic = {
        "uniform noise": rng.integers(0, 256, (384, 512, 3)),
        "gaussian noise": np.clip(rng.normal(128, 40, (384, 512, 3)), 0, 255),
        "white frame": np.full((384, 512, 3), 255),
        "black frame": np.zeros((384, 512, 3)),
    }
    for name, pixels in synthetic.items():
        im = resize_shorter(Image.fromarray(pixels.astype(np.uint8)), args.size)
        std, rough = statistics(im)
        print(f"{name:15} std {std:.4f} roughness {rough:.3f} -> {screen(im) or 'a photo'}")


if __name__ == "__main__":
    main()
