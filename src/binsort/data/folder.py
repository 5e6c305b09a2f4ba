"""Reading an ImageFolder: the classes, the images of each, and the files that cannot be used.

``scan_folder`` walks ``root/<class>/...`` and, with ``check=True``, decodes every image once
(at a reduced JPEG scale, in threads) so that a corrupt photo is found and listed before
training starts instead of crashing an epoch. ``scan_folders`` does it for several roots
at once: classes are matched by folder name, and the class list is the sorted union.

A sample's path is relative to its root. With several roots it is qualified by the root's
index, ``"1:paper/a.jpg"`` (``qualify``), so photos of two roots with the same relative path
stay apart and a recorded split says which folder each came from; with one root it is the
plain relative path, as it always was. ``locate`` turns either back into a file.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from binsort.data.images import is_hidden, is_image_name, open_rgb
from binsort.errors import BinsortError


@dataclass
class ImageSet:
    """The usable images of a folder: ``samples`` are (path relative to root, class index)."""

    root: Path  # the first root: with several, ``roots`` lists them all
    classes: list[str]
    samples: list[tuple[str, int]]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)
    roots: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.roots = [Path(r) for r in self.roots] or [Path(self.root)]

    @property
    def labels(self) -> list[int]:
        return [label for _, label in self.samples]

    def file(self, path: str) -> Path:
        """The file of a sample's ``path``."""
        return locate(self.roots, path)

    def shown(self, path: str) -> str:
        """A sample's ``path`` for a message: relative to the one root, else the whole path."""
        return path if len(self.roots) == 1 else str(self.file(path))

    def counts(self) -> list[int]:
        counter = Counter(self.labels)
        return [counter.get(i, 0) for i in range(len(self.classes))]


_QUALIFIED = re.compile(r"(\d+):(.*)", re.DOTALL)


def qualify(index: int, path: str) -> str:
    """A path relative to root number ``index`` of several: ``"1:paper/a.jpg"``."""
    return f"{index}:{path}"


def unqualify(path: str) -> tuple[int, str]:
    """(root index, path relative to that root) of a qualified path; (0, path) otherwise."""
    match = _QUALIFIED.fullmatch(path)
    return (int(match[1]), match[2]) if match else (0, path)


def as_roots(root: str | Path | Sequence[str | Path]) -> list[Path]:
    """One root or several, as a list of paths."""
    return [Path(root)] if isinstance(root, str | Path) else [Path(r) for r in root]


def locate(roots: str | Path | Sequence[str | Path], path: str) -> Path:
    """The file a sample ``path`` names: relative to the one root, or qualified among several."""
    roots = as_roots(roots)
    if len(roots) == 1:
        return roots[0] / path  # never parsed: a one-root path is the plain relative path
    index, relative = unqualify(path)
    if index >= len(roots):
        raise BinsortError(f"{path}: names folder {index}, but only {len(roots)} are given")
    return roots[index] / relative


def check_roots(roots: Sequence[str | Path]) -> None:
    """Refuse a root given twice or one inside another: its photos would count twice."""
    resolved = [Path(r).resolve() for r in roots]
    for i, a in enumerate(resolved):
        for j, b in enumerate(resolved):
            if i < j and a == b:
                raise BinsortError(f"{roots[i]} is given twice as --root")
            if i != j and a != b and a.is_relative_to(b):
                raise BinsortError(
                    f"{roots[i]} lies inside {roots[j]}: give each image folder once, "
                    "and no folder inside another"
                )


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


def scan_folders(
    roots: str | Path | Sequence[str | Path],
    check: bool = True,
    workers: int = 4,
    classes: list[str] | None = None,
) -> ImageSet:
    """``scan_folder`` over one root or several as one set of images.

    With several roots, classes are matched by folder name and the class list is the sorted
    union: a class may be in one root only (a collected folder's own bin-level class). Sample
    paths are qualified by the root's index (``qualify``); skipped files are named by their
    full path. ``classes`` fixes the class list as in ``scan_folder``.
    """
    roots = as_roots(roots)
    if len(roots) == 1:
        return scan_folder(roots[0], check, workers, classes)
    check_roots(roots)
    if classes is None:
        classes = sorted({name for root in roots for name in list_class_folders(root)})
        if len(classes) < 2:
            raise BinsortError(
                f"{', '.join(map(str, roots))}: found {len(classes)} class folder(s) in all; "
                "a classifier needs at least two (expected ROOT/<class>/<image>)"
            )
    samples: list[tuple[str, int]] = []
    skipped: list[tuple[str, str]] = []
    for index, root in enumerate(roots):
        found = scan_folder(root, check, workers, classes)
        samples += [(qualify(index, path), label) for path, label in found.samples]
        skipped += [(str(root / path), reason) for path, reason in found.skipped]
    return ImageSet(roots[0], list(classes), samples, skipped, roots=roots)


def describe_roots(images: ImageSet) -> str:
    """The folder, or folders, of a set of images, for messages."""
    return ", ".join(str(r) for r in images.roots)


def require_every_class(images: ImageSet) -> None:
    """Training needs images in every class folder."""
    empty = [name for name, n in zip(images.classes, images.counts(), strict=True) if n == 0]
    if empty:
        raise BinsortError(
            f"{describe_roots(images)}: class folder(s) with no usable images: {', '.join(empty)}"
        )
