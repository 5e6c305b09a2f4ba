"""Writing a file so that no reader ever sees half of it.

The data goes to a temporary name beside the target and is renamed over it once complete:
``os.replace`` is atomic within one file system, so a reader (or a run that was interrupted
while writing) finds the old file or the new one, never a truncated mix. ``replacing(path)``
gives the temporary path to any writer (``torch.save``, a CSV writer, ``shutil.copyfile``);
``write_atomically(path, data)`` writes text or bytes through it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from binsort.errors import BinsortError


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write; renamed to ``path`` when the block ends
    without an error, removed when it raises."""
    path = Path(path)
    # Hidden, in the same folder: a rename across file systems would not be atomic.
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def refuse_to_replace(path: Path, force: bool) -> None:
    """The one refusal of an output file that exists, unless the user passed --force."""
    if path.exists() and not force:
        raise BinsortError(f"{path} exists; pass --force to replace it")


def write_atomically(path: str | Path, data: str | bytes) -> None:
    """Write ``data`` (text is encoded as UTF-8, written as given) to ``path`` via ``replacing``."""
    with replacing(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
