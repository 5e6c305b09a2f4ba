"""Stratified, seeded train/validation/test splits, and their record on disk.

A split is a set of relative paths, so it survives a copy of the dataset to another machine
and can be checked against any folder later (``evaluate`` uses it to refuse leakage).

The record (``split_record``) names the image root; a run on several folders names them all
under ``roots``, in order, and its paths are qualified by the folder's index
(``binsort.data.folder.qualify``: ``"1:paper/a.jpg"``). ``"root"`` stays the first folder, so
a reader that knows one root still finds one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from binsort.errors import BinsortError


@dataclass
class Split:
    train: list[str]
    val: list[str]
    test: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, list[str]]:
        return {"train": self.train, "val": self.val, "test": self.test}


def stratified_split(samples: list[tuple[str, int]], val: float, test: float, seed: int) -> Split:
    """Per class, shuffle with ``seed`` and cut off ``test`` then ``val`` of the rest.

    Each class keeps at least one training image; a class of two or more images gives at least
    one to validation, so every class is judged.
    """
    # Not sklearn's train_test_split(stratify=...): it draws another split for the same seed
    # (TrashNet, seed 42: 323 test photos, 52 of them in ours), so every recorded run, the
    # bundled model and docs/trashnet-split.json (--split-seed 42) would silently change.
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[str]] = {}
    for path, label in sorted(samples):
        by_class.setdefault(label, []).append(path)
    train: list[str] = []
    val_paths: list[str] = []
    test_paths: list[str] = []
    for label in sorted(by_class):
        paths = by_class[label]
        order = [paths[i] for i in rng.permutation(len(paths))]
        n_test = int(round(len(order) * test))
        n_val = int(round((len(order) - n_test) * val))
        if len(order) - n_test >= 2:
            n_val = max(n_val, 1)
        if len(order) - n_test - n_val < 1:
            raise BinsortError(
                f"class index {label} has {len(paths)} images: too few for the requested splits"
            )
        test_paths += order[:n_test]
        val_paths += order[n_test : n_test + n_val]
        train += order[n_test + n_val :]
    return Split(train=sorted(train), val=sorted(val_paths), test=sorted(test_paths))


def select(samples: list[tuple[str, int]], paths: list[str]) -> list[tuple[str, int]]:
    """The samples whose path is in ``paths`` (missing paths are an error: data changed)."""
    index = dict(samples)
    missing = [p for p in paths if p not in index]
    if missing:
        raise BinsortError(
            f"{len(missing)} image(s) of the recorded split are missing or unreadable now, "
            f"e.g. {missing[0]}"
        )
    return [(p, index[p]) for p in paths]


def split_record(
    roots: Sequence[str | Path],
    seed: int,
    train: list[str],
    val: list[str],
    test: list[str],
) -> dict[str, Any]:
    """What a checkpoint and split.json record of a split: its folder(s), seed and lists."""
    resolved = [str(Path(r).resolve()) for r in roots]
    record: dict[str, Any] = {"root": resolved[0]}
    if len(resolved) > 1:
        record["roots"] = resolved
    return {**record, "seed": seed, "train": train, "val": val, "test": test}


def recorded_roots(record: dict[str, Any]) -> list[str]:
    """The image folder(s) a split record names: ``roots``, or the one ``root`` of a run on one
    folder (and of every record written before several were possible)."""
    roots = record.get("roots")
    return [str(r) for r in roots] if roots else [str(record["root"])]
