"""The one rule that says whether an image is one a model trained on, and the guards built on it.

Images are matched by class folder and file name without its extension (``glass/glass12``),
not by full path: a copy of the training folder (``cp -r``, a ``binsort resize`` copy, the
originals of a resized copy, the same folder reached from another working folder) holds the
same photos under another root, and often, after a resize, another extension. Two data sets
that share class and file names are flagged too; ``--allow-overlap`` goes on anyway. A path of
a run on several folders (``"1:paper/a.jpg"``) is matched without its folder's index, so a
model trained on several folders is guarded against each of them, alone or together.

``guard_overlap`` refuses images a candidate model trained on (``evaluate``'s scored and
calibration images, ``ensemble``'s validation images); ``check_disjoint`` refuses calibrating
on the evaluated images; training warns with ``held_out_overlap`` when its ``--teacher`` or
its ``--weights`` checkpoint trained on its validation or test images.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from binsort.data.folder import unqualify
from binsort.errors import BinsortError

if TYPE_CHECKING:
    from binsort.candidates import Candidate
    from binsort.data.folder import ImageSet


def key(path: str) -> str:
    """``class/stem`` of a split's relative path, case-folded."""
    _, path = unqualify(path)
    parts = PurePosixPath(path.replace("\\", "/")).parts
    stem = PurePosixPath(parts[-1]).stem if parts else ""
    return f"{parts[0] if len(parts) > 1 else ''}/{stem}".casefold()


def shared(paths: Iterable[str], trained: Iterable[str]) -> list[str]:
    """The ``paths`` (sorted) that are, by ``key``, among the ``trained`` images."""
    keys = {key(p) for p in trained}
    return sorted(p for p in paths if key(p) in keys)


def held_out_overlap(
    who: str, whose: str, trained: Iterable[str], held_out: dict[str, list[str]]
) -> list[str]:
    """Warnings for a run's held-out images (``{"validation": [...], "test": [...]}``) that
    ``who`` (a teacher, the starting weights) trained on: what it learnt from them reaches
    this run's answers, so ``whose`` figures on them are optimistic."""
    trained = list(trained)
    out = []
    for name, paths in held_out.items():
        common = shared(paths, trained)
        if common:
            out.append(
                f"{who} trained on {len(common)} of this run's {name} images, e.g. "
                f"{common[0]}: {whose} {name} figures will be optimistic"
            )
    return out


@dataclass
class Overlap:
    name: str  # the model that trained on the images
    count: int
    example: str


def training_overlap(candidates: list[Candidate], images: ImageSet) -> list[Overlap]:
    """Models whose recorded training split holds some of ``images``, wherever the images
    lie now (same class and file name)."""
    paths = [p for p, _ in images.samples]
    found = []
    for c in candidates:
        split = c.member.split or {}
        common = shared(paths, split.get("train", []))
        if common:
            found.append(Overlap(c.name, len(common), images.shown(common[0])))
    return found


def overlap_message(overlaps: list[Overlap], what: str) -> str:
    first = overlaps[0]
    more = f" (and {len(overlaps) - 1} more model(s))" if len(overlaps) > 1 else ""
    return (
        f"{first.count} of the {what} images were used to train {first.name}{more}, e.g. "
        f"{first.example}: its scores would be inflated"
    )


def guard_overlap(
    candidates: list[Candidate], images: ImageSet, allow: bool, what: str
) -> list[str]:
    """Refuse images a model trained on, unless ``allow``: then return the warnings."""
    overlaps = training_overlap(candidates, images)
    if overlaps and not allow:
        raise BinsortError(
            overlap_message(overlaps, what) + ". Use held-out images (--split RUN_DIR scores "
            "the run's test list) or pass --allow-overlap to go on anyway"
        )
    return [overlap_message([o], what) for o in overlaps]


def check_disjoint(calib: ImageSet, images: ImageSet, allow: bool) -> list[str]:
    """Calibrating on the evaluated images would make the calibration look better than it is."""
    common = shared([p for p, _ in calib.samples], [p for p, _ in images.samples])
    if not common:
        return []
    message = (
        f"{len(common)} calibration image(s) are also evaluated, e.g. {calib.shown(common[0])}: "
        "the calibration error after fitting would be optimistic"
    )
    if not allow:
        raise BinsortError(message + "; use a separate --calibration-root or --allow-overlap")
    return [message]
