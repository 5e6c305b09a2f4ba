"""Likely wrong labels: a model's out-of-sample probabilities, judged by cleanlab.

cleanlab's ``find_label_issues`` (confident learning) estimates, from predicted probabilities
and the given labels, how often each class is mislabelled as each other class, and flags the
photos whose given label is least consistent with that estimate. It needs *out-of-sample*
probabilities: a model fits the labels it trained on, wrong ones included, so its probabilities
for its own training photos would hide the very errors looked for. ``trained_paths`` says which
photos a model trained on (its recorded split); the audit leaves those out.

The result is a ranked list for a person to review, never a relabelling.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from binsort.bins import Bin, BinMap
from binsort.errors import BinsortError


def recorded_splits(model: Any) -> list[dict[str, Any] | None]:
    """The split each member of a ``binsort.predict.load_model`` model recorded (None: none)."""
    members = getattr(model, "members", None)
    if hasattr(model, "metadata"):  # an ONNX file: binsort export records the shared split
        split = (model.metadata or {}).get("split")
        return [split if isinstance(split, dict) else None]
    return [m.split for m in members or []]


def trained_paths(model: Any) -> tuple[list[str], bool]:
    """The photos any member trained on (split paths), and whether every member recorded one."""
    splits = recorded_splits(model)
    paths = sorted({p for s in splits if s for p in s.get("train", [])})
    return paths, all(s is not None for s in splits)


@dataclass
class ModelPass:
    probs: np.ndarray  # N x classes, the model's class order; rows of failed photos are absent
    kept: list[int]  # which of the given photos have a row
    seconds: float


def predict_probabilities(
    files: Sequence[Path],
    model: Any,
    batch: int,
    workers: int,
    progress: Callable[[int, int], None] | None = None,
) -> ModelPass:
    """Every class's probability for each photo, through ``binsort.predict.predict_photos``
    (the same decoding, screening and views as ``binsort predict``)."""
    from binsort.predict import predict_photos

    classes = list(model.classes)
    # predict answers with bins too; here each class is its own bin, and only classes count.
    own = BinMap("classes", {c: Bin(c) for c in classes})
    index = {c: i for i, c in enumerate(classes)}
    start = time.perf_counter()
    rows = predict_photos(files, model, own, batch=batch, workers=workers, top_k=len(classes))
    probs, kept = [], []
    for i, row in enumerate(rows):
        if row.error is None and row.not_recognised is None:
            vector = np.zeros(len(classes))
            for cls, p in row.top:
                vector[index[cls]] = p
            probs.append(vector)
            kept.append(i)
        if progress is not None:
            progress(i + 1, len(files))
    seconds = time.perf_counter() - start
    return ModelPass(np.array(probs).reshape(-1, len(classes)), kept, seconds)


@dataclass
class LabelIssues:
    flagged: np.ndarray  # bool per photo: cleanlab's find_label_issues
    quality: np.ndarray  # cleanlab's label quality score (the given label's probability)
    suggested: np.ndarray  # the most likely class index


def label_issues(labels: Sequence[int], probs: np.ndarray) -> LabelIssues:
    """cleanlab's verdict on each (label, probabilities) row."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    labels = np.asarray(labels, dtype=int)
    probs = probs / probs.sum(1, keepdims=True)  # rounding aside, rows already sum to 1
    # Classes of the model that no photo here is labelled with: cleanlab estimates each
    # class's noise rates from its photos, so only the classes present take part (a photo
    # the model puts in an absent class still shows up: its given label's probability is low).
    present = np.unique(labels)
    remap = np.full(probs.shape[1], -1)
    remap[present] = np.arange(len(present))
    sub = probs[:, present]
    sub = sub / np.clip(sub.sum(1, keepdims=True), 1e-12, None)
    if len(present) < 2:
        raise BinsortError(
            "the label check needs photos of at least two classes the model did not train on"
        )
    try:
        with warnings.catch_warnings():
            # Classes too small for its estimates are the audit's own small_class findings.
            warnings.filterwarnings("ignore", "May not flag all label issues", UserWarning)
            # n_jobs=1: cleanlab's default starts a process per core for a job of milliseconds.
            flagged = find_label_issues(remap[labels], sub, n_jobs=1)
    except ValueError as exc:
        raise BinsortError(f"the label check failed: {exc}") from None
    quality = get_label_quality_scores(remap[labels], sub)
    return LabelIssues(np.asarray(flagged, bool), np.asarray(quality), probs.argmax(1))
