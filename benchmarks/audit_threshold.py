"""How far apart edited copies and distinct photos are, in ``binsort audit``'s perceptual hash.

    python benchmarks/audit_threshold.py data/trashnet

Hashes every photo as audit does (``binsort.audit.hashing``), then every tenth photo's edited
copies (resized, re-encoded, brightened, cropped); prints each edit's largest and 99th
percentile distance to its original, and how many pairs of the folder's own photos lie within
each distance. A threshold should sit above the copies and below the distinct photos.
"""

from __future__ import annotations

import functools
import io
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from binsort.audit.hashing import CROP_VIEWS, PHASH_SIZE, _crop, view_hashes
from binsort.audit.pairs import bits, distances
from binsort.data.folder import files_under
from binsort.data.images import open_rgb


def phash(im: Image.Image) -> str:
    import imagehash

    return str(imagehash.phash(im, hash_size=PHASH_SIZE))


def jpeg(im: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    im.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


EDITS = {
    "resized to 1/2": lambda im: im.resize((im.width // 2, im.height // 2)),
    "resized to 1/4": lambda im: im.resize((im.width // 4, im.height // 4)),
    "JPEG quality 50": lambda im: jpeg(im, 50),
    "brightened 20 %": lambda im: ImageEnhance.Brightness(im).enhance(1.2),
    "contrast 80 %": lambda im: ImageEnhance.Contrast(im).enhance(0.8),
    **{
        f"cropped {c} %": functools.partial(lambda im, c: _crop(im, c / 100), c=c)
        for c in (1, 3, 5, 7)
    },
}


def main(root: str) -> None:
    paths = [p for p in files_under(Path(root)) if p.suffix.lower() in (".jpg", ".png")]

    def views(im: Image.Image) -> list[str]:
        return [phash(_crop(im, f)) for f in CROP_VIEWS]

    with ThreadPoolExecutor(2) as pool:
        images = list(pool.map(open_rgb, paths))
        own = list(pool.map(views, images))
    dist = np.concatenate(
        [distances(own, s, min(s + 1024, len(own))) for s in range(0, len(own), 1024)]
    )
    upper = dist[np.triu_indices(len(own), 1)]
    print(f"{len(paths)} photos; pairs within a distance:")
    print("  " + ", ".join(f"{t}: {int((upper <= t).sum())}" for t in range(0, 72, 8)))
    for name, edit in EDITS.items():
        found = []
        for i in range(0, len(images), 10):
            copy = bits([phash(edit(images[i]))])
            found.append(min(int((bits([v]) != copy).sum()) for v in view_hashes("".join(own[i]))))
        print(f"{name}: max {max(found)}, 99th percentile {np.percentile(found, 99):.0f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "data/trashnet")
