"""Copy classified photos into one folder per bin or per class (``binsort predict --sort-into``).

GarbageML sorted a folder of photos into class folders with a script; here it is part of
predict, for reviewing a camera's output or growing a dataset. Photos are copied, never
moved, and nothing in the destination is overwritten: a name already taken gets a number.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from binsort.errors import BinsortError, check_choice
from binsort.predict import Prediction

SORT_BY = ("bin", "class")
NOT_SURE = "not sure"  # the bin's probability is under --min-confidence
NOT_RECOGNISED = "not recognised"  # not a photo of an item (binsort.screening)


class Sorter:
    """Copies each prediction's photo into ``dest/<bin or class>/``; records what it copied."""

    def __init__(self, dest: str | Path, by: str = "bin", inputs: Iterable[str | Path] = ()):
        check_choice("--sort-by", by, SORT_BY)
        self.dest = Path(dest)
        if self.dest.exists() and not self.dest.is_dir():
            raise BinsortError(f"--sort-into {self.dest} is a file, not a folder")
        for given in inputs:
            given = Path(given)
            # A destination inside a searched folder would be classified again on the next run.
            if given.is_dir() and self.dest.resolve().is_relative_to(given.resolve()):
                raise BinsortError(f"--sort-into {self.dest} is inside {given}, which is searched")
        self.by = by
        self.copied: list[tuple[str, Path]] = []

    def folder(self, row: Prediction) -> str | None:
        """The sub-folder a row's photo goes to; None for a photo that could not be read."""
        if row.error is not None:
            return None
        if row.not_recognised is not None:
            return NOT_RECOGNISED
        if self.by == "class":
            return _safe(row.label or "")
        return NOT_SURE if row.uncertain or row.bin is None else _safe(row.bin.name)

    def copy_each(self, rows: Iterable[Prediction]) -> Iterator[Prediction]:
        """Pass the rows through, copying each photo as its row goes by."""
        for row in rows:
            folder = self.folder(row)
            if folder is not None:
                self.copied.append((row.path, _copy_new(Path(row.path), self.dest / folder)))
            yield row


def _safe(name: str) -> str:
    """A bin or class name as one folder name on any system."""
    return re.sub(r'[\\/:*?"<>|\x00-\x1f]', "-", name).strip(" .") or "unnamed"


def _copy_new(src: Path, folder: Path) -> Path:
    """Copy ``src`` into ``folder`` under its own name, or name-1, name-2... if taken."""
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(10_000):
        target = folder / (src.name if n == 0 else f"{src.stem}-{n}{src.suffix}")
        try:
            # "x" creates the file only if nothing has the name, so no check-then-write race.
            with src.open("rb") as fin, target.open("xb") as fout:
                shutil.copyfileobj(fin, fout)
        except FileExistsError:
            continue
        shutil.copystat(src, target)
        return target
    raise BinsortError(f"{folder} already holds 10000 copies of {src.name}")
