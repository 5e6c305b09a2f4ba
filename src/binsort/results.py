"""What ``evaluate`` and ``ensemble`` return: plain result types, no computation.

``Evaluation`` (with a ``Scores`` per model and for the ensemble) is what ``binsort.evaluate``
returns; ``EnsembleResult`` (with a greedy ``Selection`` of ``Step``s) is what
``binsort.ensemble`` returns. They live apart from the code that computes them so that
``binsort.reporting`` can draw them without importing it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from binsort.candidates import Candidate
    from binsort.data.folder import ImageSet


@dataclass
class Scores:
    """Every figure of one model (or the ensemble) on the evaluated images."""

    name: str
    arch: str
    parameters: int
    accuracy: float
    precision: dict[str, float]  # by average: weighted, macro
    recall: dict[str, float]
    f1: dict[str, float]
    ece: float
    nll: float
    images_per_second: float
    per_class: dict[str, dict[str, float]]
    confusion_matrix: list[list[int]]
    roc_auc: dict[str, float | None]
    average_precision: dict[str, float | None]
    # A model's fitted T; for the calibrated ensemble row, the factor its members' T share.
    temperature: float | None = None
    ece_before: float | None = None  # before calibration, when --calibrate
    weight: int = 1
    accuracy_interval: tuple[float, float] | None = None  # 95 %, Wilson
    # Against the first model, photo by photo: metrics.paired_difference (None for model 0).
    against_first: dict[str, float] | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Evaluation:
    classes: list[str]
    images: ImageSet  # what was scored (root, relative paths, labels, skipped files)
    source: str  # "folder", "split test list" or "split val list"
    average: str
    tta: str
    calibrated: bool
    rows: list[Scores]
    ensemble: Scores | None
    report_index: int | None  # the model behind report/figures; None: the ensemble
    report: str  # sklearn classification_report of that model
    report_probs: torch.Tensor  # [N, C], for curves and the sample grid
    warnings: list[str] = field(default_factory=list)

    @property
    def report_scores(self) -> Scores:
        if self.report_index is None:
            assert self.ensemble is not None
            return self.ensemble
        return self.rows[self.report_index]

    def to_json(self) -> dict[str, Any]:
        return {
            "root": str(self.images.root),
            "roots": [str(r) for r in self.images.roots],
            "source": self.source,
            "images": len(self.images.samples),
            "classes": self.classes,
            "average": self.average,
            "tta": self.tta,
            "calibrated": self.calibrated,
            "report_model": self.report_scores.name,
            "models": [r.to_json() for r in self.rows],
            "ensemble": self.ensemble.to_json() if self.ensemble else None,
            "skipped": [{"path": p, "reason": r} for p, r in self.images.skipped],
            "warnings": self.warnings,
        }


@dataclass
class Step:
    member: int  # index of the candidate added
    name: str
    accuracy: float  # of the ensemble after this step, on the validation set
    nll: float


@dataclass
class Selection:
    steps: list[Step]
    kept: int  # the best prefix: the first ``kept`` steps form the ensemble

    @property
    def chosen(self) -> list[int]:
        """Candidate indices of the kept members, repeats included."""
        return [s.member for s in self.steps[: self.kept]]


@dataclass
class EnsembleResult:
    path: Path
    members: list[Candidate]  # the distinct members written, with their weights
    candidates: list[Candidate]  # every model given (temperatures as fitted)
    selection: Selection | None = None
    images: int = 0  # validation images used (selection, calibration)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    scale: float | None = None  # with calibrate: the factor the members' temperatures share
