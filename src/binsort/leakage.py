"""The one rule that says whether an image is one a model trained on.

Images are matched by class folder and file name without its extension (``glass/glass12``),
not by full path: a copy of the training folder (``cp -r``, a ``binsort resize`` copy, the
originals of a resized copy, the same folder reached from another working folder) holds the
same photos under another root, and often, after a resize, another extension. Two data sets
that share class and file names are flagged too; ``--allow-overlap`` goes on anyway.

``evaluate`` (the scored images and ``--calibrate``'s), ``ensemble --calibrate`` and training
with ``--teacher`` all use ``shared``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePosixPath


def key(path: str) -> str:
    """``class/stem`` of a split's relative path, case-folded."""
    parts = PurePosixPath(path.replace("\\", "/")).parts
    stem = PurePosixPath(parts[-1]).stem if parts else ""
    return f"{parts[0] if len(parts) > 1 else ''}/{stem}".casefold()


def shared(paths: Iterable[str], trained: Iterable[str]) -> list[str]:
    """The ``paths`` (sorted) that are, by ``key``, among the ``trained`` images."""
    keys = {key(p) for p in trained}
    return sorted(p for p in paths if key(p) in keys)
