"""Score trained models on labelled images: the library behind ``binsort evaluate``.

``evaluate(["a.ckpt", "b.ckpt"], root="data/test", ensemble=True)`` (or ``split=RUN_DIR`` for
the held-out test list a training run recorded) loads the models, streams the images through
them in batches and returns an ``Evaluation``: per model and for the ensemble (the mean of the
members' softmax, as in GarbageML) accuracy, precision, recall, F1, calibration error, per-class
figures and speed. ``binsort.reporting`` draws its tables and figures, and its ``write_outputs``
saves ``metrics.json`` and the figures.

The steps it shares with ``binsort.ensemble`` live in their own modules: loading the models
(``binsort.candidates``), the images (``binsort.imagesets``), the leakage guard
(``binsort.leakage``), running and calibrating the models (``binsort.runner``); the result
types are in ``binsort.results``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch

from binsort.candidates import ensemble_label, load_candidates
from binsort.config import TTA_MODES
from binsort.errors import BinsortError, check_choice
from binsort.imagesets import SPLIT_PARTS, image_set, read_split
from binsort.leakage import check_disjoint, guard_overlap
from binsort.metrics import (
    AVERAGES,
    accuracy,
    accuracy_interval,
    averaged,
    confusion_matrix,
    expected_calibration_error,
    nll,
    one_vs_rest,
    paired_difference,
    per_class,
    weighted_mean,
)
from binsort.models.checkpoint import calibrated_tta, source_file
from binsort.models.onnx_member import OnnxModule
from binsort.results import Evaluation, Scores
from binsort.runner import Progress, calibrate_members, run_models, temperature_warnings


def _other_views(candidates: list, tta: str) -> list[str]:
    """A warning per file whose temperatures were fitted for other views than ``tta``: its
    ECE and NLL here are not those of the calibration it carries."""
    by_file: dict[str, list] = {}
    for c in candidates:
        if not isinstance(c.member.model, OnnxModule):
            by_file.setdefault(str(source_file(c.member.path)), []).append(c.member)
    fitted = {path: calibrated_tta(members) for path, members in by_file.items()}
    return [
        f"{path}: its temperatures were fitted for --tta {views} (ensemble --calibrate --tta); "
        f"scored here with --tta {tta}, so its confidences are not calibrated for these views"
        for path, views in fitted.items()
        if views is not None and views != tta
    ]


def evaluate(
    checkpoints: list[str | Path],
    root: str | Path | Sequence[str | Path] | None = None,
    split: str | Path | None = None,
    ensemble: bool = False,
    average: str = "weighted",
    tta: str = "none",
    calibrate: bool = False,
    calibration_root: str | Path | Sequence[str | Path] | None = None,
    allow_overlap: bool = False,
    report_model: int | None = None,
    part: str = "test",
    batch_size: int = 32,
    workers: int = 0,
    progress: Progress | None = None,
) -> Evaluation:
    """Score each model (and with ``ensemble``, their mean) on a folder or a recorded split.

    ``root`` is an ImageFolder, or a list of them scored together (classes matched by folder
    name); ``split`` a run folder or checkpoint whose recorded test list (or with
    ``part="val"`` its validation list) is scored (``root`` then overrides the split's image
    root, or roots, in the recorded order). ``calibrate`` fits a temperature per model on
    ``calibration_root`` (or the split's validation list) first and, for the ensemble row, one
    factor those temperatures share that calibrates the mean (``Calibration.for_ensemble``).
    """
    check_choice("--average", average, AVERAGES)
    check_choice("--tta", tta, TTA_MODES)
    candidates = load_candidates(checkpoints, onnx=True)
    classes = candidates[0].member.classes
    count = len(candidates)
    if report_model is not None and not 0 <= report_model < count:
        raise BinsortError(f"--report-model must be a row index from 0 to {count - 1}")
    check_choice("--part", part, SPLIT_PARTS)
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
    if not calibrate:  # --calibrate refits the temperatures for these views
        warnings += _other_views(candidates, tta)

    members = [c.member for c in candidates]
    weights = [c.weight for c in candidates]
    if calibrate:
        if calibration_root is None and recorded is None:
            raise BinsortError("--calibrate needs --calibration-root DIR or --split RUN_DIR")
        calib_root = calibration_root or root
        calib_split = recorded if calibration_root is None else None
        calib = image_set(classes, calib_root, calib_split, "val", workers=max(2, workers))
        warnings += guard_overlap(candidates, calib, allow_overlap, "calibration")
        warnings += check_disjoint(calib, images, allow_overlap)
        calibration = calibrate_members(members, calib, tta, batch_size, workers)
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
    first = out.probs[0].argmax(1)  # every other row and the ensemble are compared with it
    rows = []
    for i, c in enumerate(candidates):
        s = score(
            c.name, c.member.arch, c.parameters, out.probs[i], labels, classes, out.seconds[i]
        )
        s.temperature, s.weight = members[i].temperature, c.weight
        if calibrate:
            s.ece_before = expected_calibration_error(out.probs[count + i], labels)
        if i:
            s.against_first = paired_difference(labels, first, out.probs[i].argmax(1))
        rows.append(s)
    ens = ensemble_probs = None
    if ensemble:
        # Only with --ensemble: without it, a calibrated evaluation has not run the members'
        # third, ensemble-calibrated copies that this mean averages.
        ensemble_rows = slice(2 * count, 3 * count) if calibrate else slice(0, count)
        ensemble_probs = weighted_mean(out.probs[ensemble_rows], weights)
        ens = score(
            "ensemble",
            ensemble_label(candidates),
            sum(c.parameters for c in candidates),
            ensemble_probs,
            labels,
            classes,
            sum(out.seconds[:count]),
        )
        ens.against_first = paired_difference(labels, first, ensemble_probs.argmax(1))
        if calibrate:
            before = weighted_mean(out.probs[count : 2 * count], weights)
            ens.ece_before = expected_calibration_error(before, labels)
            ens.temperature = ensemble_scale
    if report_model is None and not ensemble:
        report_model = 0
    report_probs = out.probs[report_model] if report_model is not None else ensemble_probs
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
    by_avg = {a: averaged(labels, preds, a) for a in AVERAGES}
    rows = per_class(labels, preds, len(classes))
    curves = one_vs_rest(probs, labels)
    return Scores(
        name=name,
        arch=arch,
        parameters=parameters,
        accuracy=accuracy(labels, preds),
        accuracy_interval=accuracy_interval(labels, preds),
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
        confusion_matrix=confusion_matrix(labels, preds, len(classes)).tolist(),
        roc_auc=dict(zip(classes, curves["roc_auc"], strict=True)),
        average_precision=dict(zip(classes, curves["average_precision"], strict=True)),
    )


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
