"""The labelled images to score: a folder, or one list of the split a training run recorded.

``image_set(classes, root="data/test")`` takes every image under a class folder;
``image_set(classes, split=read_split("runs/a/version_0"), part="test")`` takes the run's
held-out test list (``part="val"``: its validation list), read from its ``split.json``, a
checkpoint or an exported file. Either way the images are checked first, so an unreadable one
is listed as skipped rather than stopping a run halfway. ``evaluate`` scores such a set;
``ensemble`` selects and calibrates on one. ``root`` may be several folders, scored as one set
(classes matched by folder name); a split of a run on several folders finds its photos in
the folders it records, or in as many ``root`` folders given in the same order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from binsort.data.folder import (
    ImageSet,
    as_roots,
    check_image,
    describe_roots,
    locate,
    scan_folders,
    unqualify,
)
from binsort.data.splits import recorded_roots
from binsort.errors import BinsortError
from binsort.models.checkpoint import (
    ENSEMBLE_FORMAT,
    ensemble_members,
    hyperparameters,
    read_checkpoint,
)
from binsort.onnx_model import OnnxModel, is_onnx

# Which list of a recorded split evaluate scores: the held-out test list, or the validation
# list, for choices (input size, members) that must not look at the test list.
SPLIT_PARTS = ("test", "val")


def read_split(source: str | Path) -> dict[str, Any]:
    """The split a run recorded: its folder's split.json (or that file, copied anywhere under
    any name ending in .json), a checkpoint's hparams, or an exported file's metadata."""
    source = Path(source)
    if source.is_dir() or source.suffix == ".json":
        file = source / "split.json" if source.is_dir() else source
        if not file.is_file():
            raise BinsortError(
                f"{file}: no such file (a split is a training run folder, its split.json, a "
                "checkpoint or an export of one)"
            )
        try:
            split = json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            raise BinsortError(f"{file}: unreadable split record ({exc})") from None
    elif is_onnx(source):
        split = OnnxModel(source, optimize=False).metadata.get("split")
    else:
        data = read_checkpoint(source)
        if data.get("format") == ENSEMBLE_FORMAT:
            splits = [h.get("split") for _, _, h in ensemble_members(data, source)]
            if any(s != splits[0] for s in splits):
                raise BinsortError(
                    f"{source}: the ensemble's members record different splits; "
                    "pass one run folder or checkpoint to --split"
                )
            split = splits[0] if splits else None
        else:
            split = hyperparameters(data, source).get("split")
    if not isinstance(split, dict) or not all(k in split for k in ("root", "train", "val")):
        raise BinsortError(f"{source}: records no train/validation/test split")
    roots = split.get("roots")
    if roots is not None and not (
        isinstance(roots, list) and roots and all(isinstance(r, str) for r in roots)
    ):
        raise BinsortError(f"{source}: a damaged split record (its roots are not folder names)")
    return split


def images_from_paths(
    root: str | Path | Sequence[str | Path], paths: list[str], classes: list[str], workers: int = 4
) -> ImageSet:
    """The listed images (``class/...`` relative paths; qualified ones with several roots);
    missing or unreadable ones skipped."""
    from concurrent.futures import ThreadPoolExecutor

    roots = as_roots(root)
    for folder in roots:
        if not folder.is_dir():
            raise BinsortError(
                f"{folder}: no such folder (the split's image root; override: --root)"
            )
    index = {name: i for i, name in enumerate(classes)}
    several = len(roots) > 1
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        reasons = list(pool.map(lambda p: check_image(locate(roots, p)), paths))
    samples, skipped = [], []
    for path, reason in zip(paths, reasons, strict=True):
        relative = unqualify(path)[1] if several else path
        label = index.get(relative.split("/", 1)[0])
        if label is None:
            skipped.append((path, "its class folder is not among the model's classes"))
        elif reason is not None:
            skipped.append((path, reason))
        else:
            samples.append((path, label))
    return ImageSet(roots[0], list(classes), samples, skipped, roots=roots)


def image_set(
    classes: list[str],
    root: str | Path | Sequence[str | Path] | None = None,
    split: dict[str, Any] | None = None,
    part: str = "test",
    workers: int = 4,
) -> ImageSet:
    """A folder or several (every image under ``root``), or one part of a recorded split."""
    roots = as_roots(root) if root is not None else []
    if split is not None:
        paths = list(split.get(part) or [])
        if not paths:
            raise BinsortError(
                f"the recorded split has no {part} images (train with --test-split to hold "
                "some out, or evaluate a folder with --root)"
            )
        recorded = recorded_roots(split)
        if roots and len(roots) != len(recorded):
            raise BinsortError(
                f"the split records {len(recorded)} image folder(s) ({', '.join(recorded)}): "
                f"give --root {'once for each, in that order' if len(recorded) > 1 else 'once'}"
            )
        images = images_from_paths(roots or recorded, paths, classes, workers)
    elif roots:
        images = scan_folders(roots, check=True, workers=workers, classes=classes)
    else:
        raise BinsortError("say which images to use: --root DIR or --split RUN_DIR")
    if not images.samples:
        raise BinsortError(f"{describe_roots(images)}: no readable images of the model's classes")
    return images
