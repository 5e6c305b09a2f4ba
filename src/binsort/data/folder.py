"""Reading an ImageFolder: the classes, the images of each, and the files that cannot be used.

``scan_folder`` walks ``root/<class>/...`` and, with ``check=True``, decodes every image once
(at a reduced JPEG scale, in threads) so that a corrupt photo is found and listed before
training starts instead of crashing an epoch.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from binsort.data.images import is_hidden, is_image_name, open_rgb
from binsort.errors import BinsortError


@dataclass
class ImageSet:
    """The usable images of a folder: ``samples`` are (path relative to root, class index)."""

    root: Path
    classes: list[str]
    samples: list[tuple[str, int]]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)

    @property
    def labels(self) -> list[int]:
        return [label for _, label in self.samples]

    def counts(self) -> list[int]:
        counter = Counter(self.labels)
        return [counter.get(i, 0) for i in range(len(self.classes))]


def list_class_folders(root: Path) -> list[str]:
    if not root.exists():
        raise BinsortError(f"{root}: no such folder")
    if not root.is_dir():
        raise BinsortError(
            f"{root}: not a folder (expected an ImageFolder: one sub-folder per class)"
        )
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not is_hidden(p))


def files_under(folder: Path) -> Iterator[Path]:
    """Every file under ``folder``, recursively and lazily, in sorted order, hidden files and
    folders (.DS_Store, .git) left out.

    Links to folders are not followed, so a symlink loop cannot hang the walk.
    """
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


def walk_images(folder: Path) -> tuple[list[Path], list[Path]]:
    """Image files and non-image files under ``folder`` (``files_under``)."""
    images, others = [], []
    for path in files_under(folder):
        (images if is_image_name(path.name) else others).append(path)
    return images, others


def check_image(path: Path, min_side: int = 32) -> str | None:
    """None if ``path`` decodes, else the reason it does not."""
    try:
        open_rgb(path, min_side=min_side)
    except BinsortError as exc:
        return str(exc).removeprefix(f"{path}: ")
    return None


def scan_folder(
    root: str | Path,
    check: bool = True,
    workers: int = 4,
    classes: list[str] | None = None,
) -> ImageSet:
    """Find the classes and images under ``root``; with ``check``, leave out unreadable ones.

    ``classes`` fixes the class list (e.g. a checkpoint's); folders outside it are an error.
    """
    root = Path(root)
    found = list_class_folders(root)
    if classes is None:
        classes = found
        if len(classes) < 2:
            raise BinsortError(
                f"{root}: found {len(classes)} class folder(s); a classifier needs at least two "
                "(expected ROOT/<class>/<image>)"
            )
    else:
        extra = sorted(set(found) - set(classes))
        if extra:
            raise BinsortError(
                f"{root}: class folders {', '.join(extra)} are not among the model's classes "
                f"({', '.join(classes)})"
            )
    samples: list[tuple[str, int]] = []
    skipped: list[tuple[str, str]] = []
    for index, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            continue
        images, others = walk_images(folder)
        skipped += [(p.relative_to(root).as_posix(), "not an image file") for p in others]
        samples += [(p.relative_to(root).as_posix(), index) for p in images]
    if check and samples:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            reasons = list(pool.map(lambda s: check_image(root / s[0]), samples))
        skipped += [(s[0], r) for s, r in zip(samples, reasons, strict=True) if r is not None]
        samples = [s for s, r in zip(samples, reasons, strict=True) if r is None]
    result = ImageSet(root=root, classes=list(classes), samples=samples, skipped=skipped)
    return result


def require_every_class(images: ImageSet) -> None:
    """Training needs images in every class folder."""
    empty = [name for name, n in zip(images.classes, images.counts(), strict=True) if n == 0]
    if empty:
        raise BinsortError(
            f"{images.root}: class folder(s) with no usable images: {', '.join(empty)}"
        )
