"""Score trained models on labelled images: the library behind ``binsort evaluate``.

``evaluate(["a.ckpt", "b.ckpt"], root="data/test", ensemble=True)`` (or ``split=RUN_DIR`` for
the held-out test list a training run recorded) loads the models, streams the images through
them in batches and returns an ``Evaluation``: per model and for the ensemble (the mean of the
members' softmax, as in GarbageML) accuracy, precision, recall, F1, calibration error, per-class
figures and speed. ``binsort.reporting.write_outputs`` saves ``metrics.json`` and the figures.

The loading, image-list, leakage-guard and calibration helpers here are shared with
``binsort.ensemble``, which needs the same steps on a validation set.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from binsort.config import TTA_MODES
from binsort.data.folder import ImageSet, check_image, scan_folder
from binsort.data.images import open_rgb
from binsort.errors import BinsortError
from binsort.inference import probabilities
from binsort.leakage import shared
from binsort.metrics import (
    AVERAGES,
    TEMPERATURE_RANGE,
    accuracy,
    averaged,
    confusion_matrix,
    expected_calibration_error,
    fit_shared_scale,
    fit_temperature,
    nll,
    one_vs_rest,
    per_class,
)
from binsort.models.checkpoint import (
    ENSEMBLE_FORMAT,
    LoadedModel,
    check_same_classes,
    distinct_members,
    hyperparameters,
    load_members,
    read_checkpoint,
)
from binsort.models.onnx_member import OnnxModule, load_onnx_member, stored_parameters
from binsort.onnx_model import OnnxModel, is_onnx

Progress = Callable[[int, int], None]  # (images done, images in all)
# Which list of a recorded split evaluate scores: the held-out test list, or the validation
# list, for choices (input size, members) that must not look at the test list.
SPLIT_PARTS = ("test", "val")


@dataclass
class Candidate:
    """One distinct model: a checkpoint, or a distinct member of an ensemble file."""

    member: LoadedModel
    name: str  # shortest unique tail of its path, for tables
    weight: int = 1  # times it appears in its ensemble file: repeats weight the mean
    parameters: int = 0


def display_names(paths: list[Path]) -> list[str]:
    """The shortest path tails that tell the paths apart (two runs' ``last.ckpt`` clash)."""
    names = [p.name for p in paths]
    depth = 1
    while len(set(names)) < len(names) and depth < max(len(p.parts) for p in paths):
        depth += 1
        names = [Path(*p.parts[-depth:]).as_posix() for p in paths]
    if len(set(names)) < len(names):  # the same file given twice
        names = [f"{n} ({i})" for i, n in enumerate(names)]
    return names


def load_candidates(paths: list[str | Path], onnx: bool = False) -> list[Candidate]:
    """Load checkpoints and ensemble files (and with ``onnx``, exported files, which can be
    scored but not packed into an ensemble); identical members of a file become one weighted."""
    if not paths:
        raise BinsortError("give at least one checkpoint or ensemble file")
    groups = [g for path in paths for g in distinct_members(_load(path, onnx))]
    check_same_classes([m for m, _ in groups])
    names = display_names([m.path for m, _ in groups])
    return [
        Candidate(m, name, weight, _parameters(m))
        for (m, weight), name in zip(groups, names, strict=True)
    ]


def _load(path: str | Path, onnx: bool) -> list[LoadedModel]:
    return [load_onnx_member(path)] if onnx and is_onnx(path) else load_members(path)


def _inner_members(member: LoadedModel) -> int:
    """How many members answer inside one loaded model: an exported ensemble holds several."""
    if isinstance(member.model, OnnxModule):
        return sum(int(m.get("weight", 1)) for m in member.model.onnx.members) or 1
    return 1


def ensemble_label(candidates: list[Candidate]) -> str:
    """The ensemble row's description. An exported ensemble is one model in the mean (its
    members were averaged inside the file), so with one the row counts models and members."""
    models = sum(c.weight for c in candidates)
    members = sum(c.weight * _inner_members(c.member) for c in candidates)
    return f"{members} members" if members == models else f"{models} models, {members} members"


def _parameters(member: LoadedModel) -> int:
    if isinstance(member.model, OnnxModule):
        return stored_parameters(member.path)
    return sum(p.numel() for p in member.model.parameters())


# --- the images to score -------------------------------------------------------------------


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
            splits = [m.get("hyper_parameters", {}).get("split") for m in data.get("members", [])]
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
    return split


def images_from_paths(
    root: str | Path, paths: list[str], classes: list[str], workers: int = 4
) -> ImageSet:
    """The listed images (``class/...`` relative paths); missing or unreadable ones skipped."""
    from concurrent.futures import ThreadPoolExecutor

    root = Path(root)
    if not root.is_dir():
        raise BinsortError(f"{root}: no such folder (the split's image root; override: --root)")
    index = {name: i for i, name in enumerate(classes)}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        reasons = list(pool.map(lambda p: check_image(root / p), paths))
    samples, skipped = [], []
    for path, reason in zip(paths, reasons, strict=True):
        label = index.get(path.split("/", 1)[0])
        if label is None:
            skipped.append((path, "its class folder is not among the model's classes"))
        elif reason is not None:
            skipped.append((path, reason))
        else:
            samples.append((path, label))
    return ImageSet(root=root, classes=list(classes), samples=samples, skipped=skipped)


def image_set(
    classes: list[str],
    root: str | Path | None = None,
    split: dict[str, Any] | None = None,
    part: str = "test",
    workers: int = 4,
) -> ImageSet:
    """A folder (every image under ``root``) or one part of a recorded split."""
    if split is not None:
        paths = list(split.get(part) or [])
        if not paths:
            raise BinsortError(
                f"the recorded split has no {part} images (train with --test-split to hold "
                "some out, or evaluate a folder with --root)"
            )
        images = images_from_paths(root or split["root"], paths, classes, workers)
    elif root is not None:
        images = scan_folder(root, check=True, workers=workers, classes=classes)
    else:
        raise BinsortError("say which images to use: --root DIR or --split RUN_DIR")
    if not images.samples:
        raise BinsortError(f"{images.root}: no readable images of the model's classes")
    return images


@dataclass
class Overlap:
    name: str  # the model that trained on the images
    count: int
    example: str


def training_overlap(candidates: list[Candidate], images: ImageSet) -> list[Overlap]:
    """Models whose recorded training split holds some of ``images``, wherever the images
    lie now (``binsort.leakage``: same class and file name)."""
    paths = [p for p, _ in images.samples]
    found = []
    for c in candidates:
        split = c.member.split or {}
        common = shared(paths, split.get("train", []))
        if common:
            found.append(Overlap(c.name, len(common), common[0]))
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


# --- running the models --------------------------------------------------------------------


class _Images(torch.utils.data.Dataset):
    """PIL images of an ImageSet, decoded in DataLoader workers so a large folder streams."""

    def __init__(self, images: ImageSet, min_side: int) -> None:
        self.root, self.samples, self.min_side = images.root, images.samples, min_side

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        return open_rgb(self.root / self.samples[i][0], min_side=self.min_side)


def _as_list(batch: list) -> list:
    return batch  # PIL images stay a list: each model resizes them to its own input size


@dataclass
class Outputs:
    probs: torch.Tensor  # [M, N, C]
    seconds: list[float]  # per member: time in preprocessing and forward passes


def run_models(
    members: list[LoadedModel],
    images: ImageSet,
    tta: str = "none",
    batch_size: int = 32,
    workers: int = 0,
    progress: Progress | None = None,
) -> Outputs:
    """Every member's probabilities on every image, in batches; timed per member."""
    if tta not in TTA_MODES:
        raise BinsortError(f"--tta must be one of {', '.join(TTA_MODES)}, got {tta!r}")
    if batch_size < 1 or workers < 0:
        raise BinsortError("--batch must be at least 1 and --workers at least 0")
    loader = torch.utils.data.DataLoader(
        _Images(images, min_side=max(m.input_size for m in members)),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_as_list,
    )
    chunks: list[list[torch.Tensor]] = [[] for _ in members]
    seconds = [0.0] * len(members)
    done = 0
    for batch in loader:
        for i, member in enumerate(members):
            started = time.perf_counter()
            chunks[i].append(probabilities([member], batch, tta)[0])
            seconds[i] += time.perf_counter() - started
        done += len(batch)
        if progress is not None:
            progress(done, len(images.samples))
    return Outputs(torch.stack([torch.cat(c) for c in chunks]), seconds)


@dataclass
class Calibration:
    """Temperatures fitted on calibration images, and what fits an ensemble's shared factor."""

    temperatures: list[float]  # each member's own fit
    logits: list[torch.Tensor]  # per member, log-probabilities at T = 1 on the images
    labels: torch.Tensor

    def for_ensemble(self, indices: list[int], weights: list[int]) -> tuple[list[float], float]:
        """The temperatures of members ``indices`` (counted ``weights`` times) in one mean:
        each member's own, times the factor that calibrates their mean (``fit_shared_scale``)."""
        temps = [self.temperatures[i] for i in indices]
        logits = [self.logits[i] for i in indices]
        scale = fit_shared_scale(logits, temps, weights, self.labels)
        return [t * scale for t in temps], scale


def calibrate_members(
    members: list[LoadedModel], images: ImageSet, batch_size: int = 32, workers: int = 0
) -> Calibration:
    """Per member, the temperature that minimises the NLL on ``images`` (no TTA).

    The logits are recovered as log-probabilities at T = 1 (the same up to a per-image
    constant); a probability that underflowed to 0 is floored at 1e-30, which only matters
    for logit gaps beyond ~70, where any sensible temperature leaves it near 0 anyway.
    """
    plain = [replace(m, temperature=1.0) for m in members]
    out = run_models(plain, images, "none", batch_size, workers)
    labels = torch.tensor(images.labels)
    logits = [p.clamp(min=1e-30).log() for p in out.probs]
    return Calibration([fit_temperature(lg, labels) for lg in logits], logits, labels)


def temperature_warnings(candidates: list[Candidate], temperatures: list[float]) -> list[str]:
    """A fit that stopped at the search limit says the calibration set could not pin T down."""
    low, high = TEMPERATURE_RANGE
    return [
        f"the temperature of {c.name} stopped at the search limit ({t:.3g}): the calibration "
        "images are too few, or the model makes no mistakes on them"
        for c, t in zip(candidates, temperatures, strict=True)
        if not low * 1.01 < t < high * 0.99
    ]


# --- scores --------------------------------------------------------------------------------


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

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def score(
    name: str,
    arch: str,
    parameters: int,
    probs: torch.Tensor,
    labels: torch.Tensor,
    classes: list[str],
    seconds: float,
) -> Scores:
    preds = probs.argmax(1)
    cm = confusion_matrix(labels, preds, len(classes))
    by_avg = {a: averaged(cm, a) for a in AVERAGES}
    rows = per_class(cm)
    curves = one_vs_rest(probs, labels)
    return Scores(
        name=name,
        arch=arch,
        parameters=parameters,
        accuracy=accuracy(labels, preds),
        precision={a: v["precision"] for a, v in by_avg.items()},
        recall={a: v["recall"] for a, v in by_avg.items()},
        f1={a: v["f1"] for a, v in by_avg.items()},
        ece=expected_calibration_error(probs, labels),
        nll=nll(probs, labels),
        images_per_second=len(labels) / max(seconds, 1e-9),
        per_class={
            c: {
                "precision": float(rows["precision"][i]),
                "recall": float(rows["recall"][i]),
                "f1": float(rows["f1"][i]),
                "support": int(rows["support"][i]),
            }
            for i, c in enumerate(classes)
        },
        confusion_matrix=cm.tolist(),
        roc_auc=dict(zip(classes, curves["roc_auc"], strict=True)),
        average_precision=dict(zip(classes, curves["average_precision"], strict=True)),
    )


def weighted_mean(probs: torch.Tensor, weights: list[int]) -> torch.Tensor:
    """[M, N, C] -> [N, C]: the members' mean, each counted ``weight`` times."""
    w = torch.tensor(weights, dtype=probs.dtype).view(-1, 1, 1)
    return (probs * w).sum(0) / w.sum()


def classification_text(probs: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> str:
    """sklearn's classification_report (4 digits) over the classes seen or predicted."""
    from sklearn.metrics import classification_report

    preds = probs.argmax(1)
    present = sorted(set(labels.tolist()) | set(preds.tolist()))
    return classification_report(
        labels.numpy(),
        preds.numpy(),
        labels=present,
        target_names=[classes[i] for i in present],
        digits=4,
        zero_division=0,
    )


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


def evaluate(
    checkpoints: list[str | Path],
    root: str | Path | None = None,
    split: str | Path | None = None,
    ensemble: bool = False,
    average: str = "weighted",
    tta: str = "none",
    calibrate: bool = False,
    calibration_root: str | Path | None = None,
    allow_overlap: bool = False,
    report_model: int | None = None,
    part: str = "test",
    batch_size: int = 32,
    workers: int = 0,
    progress: Progress | None = None,
) -> Evaluation:
    """Score each model (and with ``ensemble``, their mean) on a folder or a recorded split.

    ``root`` is an ImageFolder; ``split`` a run folder or checkpoint whose recorded test list
    (or with ``part="val"`` its validation list) is scored (``root`` then overrides the split's
    image root). ``calibrate`` fits a temperature per model on ``calibration_root`` (or the
    split's validation list) first and, for the ensemble row, one factor those temperatures
    share that calibrates the mean (``Calibration.for_ensemble``).
    """
    if average not in AVERAGES:
        raise BinsortError(f"--average must be one of {', '.join(AVERAGES)}, got {average!r}")
    if tta not in TTA_MODES:
        raise BinsortError(f"--tta must be one of {', '.join(TTA_MODES)}, got {tta!r}")
    candidates = load_candidates(checkpoints, onnx=True)
    classes = candidates[0].member.classes
    count = len(candidates)
    if report_model is not None and not 0 <= report_model < count:
        raise BinsortError(f"--report-model must be a row index from 0 to {count - 1}")
    if part not in SPLIT_PARTS:
        raise BinsortError(f"--part must be one of {', '.join(SPLIT_PARTS)}, got {part!r}")
    if part != "test" and split is None:
        raise BinsortError(f"--part {part} needs --split RUN_DIR (a --root folder is scored whole)")
    recorded = read_split(split) if split is not None else None
    images = image_set(classes, root, recorded, part, workers=max(2, workers))
    warnings = guard_overlap(candidates, images, allow_overlap, "evaluated")
    warnings += [
        f"{c.name} records no training split (an ONNX file exported before binsort stored "
        "one, or of members with different splits): make sure it never trained on these images"
        for c in candidates
        if isinstance(c.member.model, OnnxModule) and c.member.split is None
    ]
    # Every model is scored with the same views, so a file's own (export --tta) is not used.
    warnings += [
        f"{c.name} answers with --tta {c.member.model.onnx.tta} in predict; scored here with "
        f"--tta {tta}, like every model"
        for c in candidates
        if isinstance(c.member.model, OnnxModule) and c.member.model.onnx.tta != tta
    ]

    members = [c.member for c in candidates]
    weights = [c.weight for c in candidates]
    if calibrate:
        if calibration_root is None and recorded is None:
            raise BinsortError("--calibrate needs --calibration-root DIR or --split RUN_DIR")
        calib_root = calibration_root or root
        calib_split = recorded if calibration_root is None else None
        calib = image_set(classes, calib_root, calib_split, "val", workers=max(2, workers))
        warnings += guard_overlap(candidates, calib, allow_overlap, "calibration")
        warnings += _check_disjoint(calib, images, allow_overlap)
        calibration = calibrate_members(members, calib, batch_size, workers)
        temps = calibration.temperatures
        warnings += temperature_warnings(candidates, temps)
        # The uncalibrated copies run too, for the "ECE before" column; with --ensemble, the
        # members at the temperatures that calibrate their mean run a third time for its row.
        members = [replace(m, temperature=t) for m, t in zip(members, temps, strict=True)]
        members += [c.member for c in candidates]
        if ensemble:
            shared, ensemble_scale = calibration.for_ensemble(list(range(count)), weights)
            members += [
                replace(c.member, temperature=t) for c, t in zip(candidates, shared, strict=True)
            ]

    out = run_models(members, images, tta, batch_size, workers, progress)
    labels = torch.tensor(images.labels)
    rows = []
    for i, c in enumerate(candidates):
        s = score(
            c.name, c.member.arch, c.parameters, out.probs[i], labels, classes, out.seconds[i]
        )
        s.temperature, s.weight = members[i].temperature, c.weight
        if calibrate:
            s.ece_before = expected_calibration_error(out.probs[count + i], labels)
        rows.append(s)
    ens = None
    ensemble_rows = slice(2 * count, 3 * count) if calibrate else slice(0, count)
    if ensemble:
        ens = score(
            "ensemble",
            ensemble_label(candidates),
            sum(c.parameters for c in candidates),
            weighted_mean(out.probs[ensemble_rows], weights),
            labels,
            classes,
            sum(out.seconds[:count]),
        )
        if calibrate:
            before = weighted_mean(out.probs[count : 2 * count], weights)
            ens.ece_before = expected_calibration_error(before, labels)
            ens.temperature = ensemble_scale
    if report_model is None and not ensemble:
        report_model = 0
    if report_model is None:
        report_probs = weighted_mean(out.probs[ensemble_rows], weights)
    else:
        report_probs = out.probs[report_model]
    return Evaluation(
        classes=classes,
        images=images,
        source=f"split {part} list" if recorded is not None else "folder",
        average=average,
        tta=tta,
        calibrated=calibrate,
        rows=rows,
        ensemble=ens,
        report_index=report_model,
        report=classification_text(report_probs, labels, classes),
        report_probs=report_probs,
        warnings=warnings,
    )


def _check_disjoint(calib: ImageSet, images: ImageSet, allow: bool) -> list[str]:
    """Calibrating on the evaluated images would make the calibration look better than it is."""
    common = shared([p for p, _ in calib.samples], [p for p, _ in images.samples])
    if not common:
        return []
    message = (
        f"{len(common)} calibration image(s) are also evaluated, e.g. {common[0]}: "
        "the calibration error after fitting would be optimistic"
    )
    if not allow:
        raise BinsortError(message + "; use a separate --calibration-root or --allow-overlap")
    return [message]


# --- files ---------------------------------------------------------------------------------
