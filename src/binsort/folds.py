"""K-fold cross-validation: the library behind ``binsort train --folds K``.

``fit_folds(cfg)`` holds the ``--test-split`` part out, cuts the other photos into K
stratified folds and trains one run per fold (``binsort.train.fit``), each fold once the
validation part. Every photo outside the test split is thus validated exactly once, by a model
that never trained on it, so the K validation parts together make one out-of-fold estimate
over all of them: the pooled accuracy (right answers over photos, across the folds) with its
Wilson interval, far narrower than one run's. ``FoldsResult`` holds the runs and these
figures; ``fit_folds`` writes them to ``OUT/NAME/folds.json`` beside the ``fold_I`` runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from binsort.config import TrainConfig
from binsort.errors import BinsortError
from binsort.files import write_atomically
from binsort.metrics import wilson_interval
from binsort.train import WIDE_INTERVAL, TrainResult, fit

FOLDS_JSON = "folds.json"


@dataclass
class FoldsResult:
    folds: list[TrainResult]
    test_size: int
    warnings: list[str] = field(default_factory=list)

    def accuracies(self) -> list[float]:
        return [r.best_row.get("val_accuracy") or 0.0 for r in self.folds]

    def counts(self) -> list[tuple[int, int]]:
        """Per fold, (right, photos) at its best epoch: the exact counts where the run recorded
        them, else the accuracy times the fold's size, rounded."""
        out = []
        for r in self.folds:
            row = r.best_row
            if row.get("val_photos"):
                out.append((int(row["val_correct"]), int(row["val_photos"])))
            else:
                out.append((round((row.get("val_accuracy") or 0.0) * r.val_size), r.val_size))
        return out

    def intervals(self) -> list[tuple[float, float]]:
        return [wilson_interval(right, photos) for right, photos in self.counts()]

    @property
    def mean_accuracy(self) -> float:
        accs = self.accuracies()
        return sum(accs) / len(accs)

    @property
    def std_accuracy(self) -> float:
        accs = self.accuracies()
        mean = self.mean_accuracy
        # Sample standard deviation: the folds are a sample of possible validation sets.
        return (sum((a - mean) ** 2 for a in accs) / max(1, len(accs) - 1)) ** 0.5

    @property
    def standard_error(self) -> float:
        # std / sqrt(K): how far the mean of the folds' accuracies may be from its expectation.
        # The folds share training photos, so it understates the uncertainty somewhat.
        return self.std_accuracy / len(self.folds) ** 0.5

    @property
    def pooled_photos(self) -> int:
        return sum(photos for _, photos in self.counts())

    @property
    def pooled_correct(self) -> int:
        return sum(right for right, _ in self.counts())

    @property
    def pooled_accuracy(self) -> float:
        photos = self.pooled_photos
        return self.pooled_correct / photos if photos else float("nan")

    @property
    def pooled_interval(self) -> tuple[float, float]:
        return wilson_interval(self.pooled_correct, self.pooled_photos)

    def to_dict(self) -> dict[str, Any]:
        """The record written to ``folds.json``."""
        folds = []
        for index, (r, (right, photos), (low, high)) in enumerate(
            zip(self.folds, self.counts(), self.intervals(), strict=True)
        ):
            folds.append(
                {
                    "fold": index,
                    "accuracy": r.best_row.get("val_accuracy"),
                    "interval": [low, high],
                    "correct": right,
                    "photos": photos,
                    "best_epoch": r.best_epoch,
                    "monitor": r.monitor,
                    "checkpoint": str(r.best_checkpoint) if r.best_checkpoint else None,
                }
            )
        low, high = self.pooled_interval
        return {
            "folds": folds,
            "test_size": self.test_size,
            "mean": self.mean_accuracy,
            "std": self.std_accuracy,
            "standard_error": self.standard_error,
            "pooled": {
                "accuracy": self.pooled_accuracy,
                "interval": [low, high],
                "correct": self.pooled_correct,
                "photos": self.pooled_photos,
            },
        }


def fit_folds(cfg: TrainConfig, progress: bool = False, on_fold: Any = None) -> FoldsResult:
    """K-fold cross-validation: ``cfg.data.folds`` runs, each fold once the validation set.

    The ``--test-split`` part is held out of every fold. Runs go to ``OUT/NAME/fold_I``, the
    figures to ``OUT/NAME/folds.json``; ``on_fold(index, result)`` is called after each run,
    e.g. to print a progress line.
    """
    from sklearn.model_selection import StratifiedKFold

    from binsort.data.folder import require_every_class, scan_folders
    from binsort.data.splits import stratified_split

    if cfg.data.root is None:
        raise BinsortError("--root is required: the ImageFolder to train on")
    images = scan_folders(cfg.data.root, check=True, workers=max(2, cfg.data.workers))
    require_every_class(images)
    outer = stratified_split(
        images.samples, cfg.data.split, cfg.data.test_split, cfg.data.effective_split_seed
    )
    held_out = set(outer.test)
    pool = [s for s in images.samples if s[0] not in held_out]
    smallest = min(sum(1 for _, label in pool if label == c) for c in range(len(images.classes)))
    if not 2 <= cfg.data.folds <= smallest:
        raise BinsortError(
            f"--folds {cfg.data.folds}: needs 2 to {smallest} folds (the smallest class has "
            f"{smallest} images outside the test split)"
        )
    kfold = StratifiedKFold(
        n_splits=cfg.data.folds, shuffle=True, random_state=cfg.data.effective_split_seed
    )
    labels = [label for _, label in pool]
    results = []
    for index, (train_idx, val_idx) in enumerate(kfold.split(pool, labels)):
        split = {
            "train": sorted(pool[i][0] for i in train_idx),
            "val": sorted(pool[i][0] for i in val_idx),
            "test": outer.test,
        }
        result = fit(cfg, progress=progress, split=split, version=f"fold_{index}", images=images)
        results.append(result)
        if on_fold is not None:
            on_fold(index, result)
    folds = FoldsResult(results, len(outer.test))
    folds.warnings = [f"fold {i}: {w}" for i, r in enumerate(results) for w in r.warnings]
    folds.warnings += _wide_interval(folds)
    if results[0].global_rank == 0:
        # Beside the fold runs: OUT/NAME/folds.json.
        record = json.dumps(folds.to_dict(), indent=2)
        write_atomically(Path(results[0].run_dir).parent / FOLDS_JSON, record)
    return folds


def _wide_interval(folds: FoldsResult) -> list[str]:
    low, high = folds.pooled_interval
    half = (high - low) / 2
    if not half > WIDE_INTERVAL:  # also false for NaN: nothing was validated
        return []
    return [
        f"the pooled out-of-fold accuracy {folds.pooled_accuracy:.4f} is known to about "
        f"±{half * 100:.1f} points (95 % interval {low:.3f}-{high:.3f}, "
        f"{folds.pooled_photos} photos): recipes closer than that cannot be told apart on "
        "these photos; only more photos narrow it"
    ]
