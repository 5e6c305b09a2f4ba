"""``binsort evaluate``: score checkpoints on labelled images; a table, a report and figures."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from binsort.cli._common import (
    Batch,
    Workers,
    allow_overlap_option,
    console,
    err_console,
    print_warnings,
    root_option,
    split_option,
    user_errors,
)
from binsort.config import TTA_MODES

CHECKPOINTS = typer.Argument(
    help="Checkpoints (.ckpt), ensemble files (each adds its members) or exported .onnx "
    "files (one row each); 'default' is the bundled model.",
    metavar="MODEL",
    show_default=False,
)


def evaluate(
    checkpoints: Annotated[list[Path], CHECKPOINTS],
    root: Annotated[
        list[Path] | None,
        root_option("ImageFolder to score (one sub-folder per class)."),
    ] = None,
    split: Annotated[Path | None, split_option("Score the held-out test list")] = None,
    part: Annotated[
        Literal["test", "val"],
        typer.Option(
            help="Which list of --split to score: test, or val to choose settings (input "
            "size, members) without looking at the test list.",
            rich_help_panel="Images",
        ),
    ] = "test",
    ensemble: Annotated[
        bool,
        typer.Option(
            help="Add a row for the mean of all models' probabilities.", rich_help_panel="Scoring"
        ),
    ] = False,
    average: Annotated[
        Literal["weighted", "macro"],
        typer.Option(
            help="How precision, recall and F1 average over classes.",
            rich_help_panel="Scoring",
        ),
    ] = "weighted",
    tta: Annotated[
        Literal[TTA_MODES],  # type: ignore[valid-type]
        typer.Option(
            help="Test-time augmentation (views averaged per image).", rich_help_panel="Scoring"
        ),
    ] = "none",
    calibrate: Annotated[
        bool,
        typer.Option(
            help="Fit a temperature per model first (on --calibration-root, or the split's "
            "validation list) and score with it.",
            rich_help_panel="Scoring",
        ),
    ] = False,
    calibration_root: Annotated[
        list[Path] | None,
        typer.Option(
            help="ImageFolder to fit temperatures on (give it again for several).",
            metavar="DIR",
            show_default=False,
            rich_help_panel="Scoring",
        ),
    ] = None,
    report_model: Annotated[
        int | None,
        typer.Option(
            help="Row (#) whose classification report and figures are made.",
            show_default="the ensemble with --ensemble, else row 0",
            rich_help_panel="Output",
        ),
    ] = None,
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Folder for metrics.json and the figures.", rich_help_panel="Output"
        ),
    ] = Path("evaluation"),
    force: Annotated[
        bool,
        typer.Option(
            help="Replace an earlier evaluation's files in --out.", rich_help_panel="Output"
        ),
    ] = False,
    allow_overlap: Annotated[bool, allow_overlap_option("Score")] = False,
    batch: Batch = 32,
    workers: Workers = 0,
) -> None:
    """Score models on an ImageFolder (--root) or a run's held-out test list (--split).

    Give --root again to score several folders as one set (classes matched by folder name).

    Prints one row per model (accuracy, precision, recall, F1, calibration error, speed;
    with --ensemble a last row for their mean), then sklearn's classification report.
    Writes metrics.json, confusion matrices, ROC and precision-recall curves and a grid of
    sample predictions to --out (an earlier evaluation's files there are kept unless
    --force). Refuses images a model was trained on (the class and file
    name of one in its training split, wherever the folder lies) unless --allow-overlap.

    Example: binsort evaluate runs/a/version_0/checkpoints/last.ckpt --split runs/a/version_0

    Exit codes: 0 scored; 1 an error stopped the command (bad checkpoint, class mismatch,
    overlap with training images, missing folder); 2 a bad option.
    """
    from binsort.evaluate import evaluate as run_evaluation
    from binsort.reporting import check_outputs, results_table, uncertainty_text, write_outputs

    with user_errors():
        check_outputs(out, force)  # before minutes of scoring, not after
    progress = _progress_bar()
    with user_errors(), progress:
        task = progress.add_task("scoring", total=None)
        result = run_evaluation(
            checkpoints,
            root=root,
            split=split,
            ensemble=ensemble,
            average=average,
            tta=tta,
            calibrate=calibrate,
            calibration_root=calibration_root,
            allow_overlap=allow_overlap,
            report_model=report_model,
            part=part,
            batch_size=batch,
            workers=workers,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
        written = write_outputs(result, out)
    print_warnings(result.warnings)
    console.print(results_table(result, wide=console.width >= 100))
    console.print(uncertainty_text(result), highlight=False, markup=False)
    console.print(f"\nClassification report: {result.report_scores.name}", highlight=False)
    console.print(result.report, highlight=False, markup=False)
    skipped = result.images.skipped
    if skipped:
        err_console.print(f"[yellow]left out {len(skipped)} unusable file(s):[/]")
        for path, reason in skipped[:20]:
            err_console.print(f"  {path}: {reason}", highlight=False, markup=False)
    console.print(f"wrote {len(written)} files to {out}", highlight=False)


def _progress_bar():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    return Progress(
        TextColumn("scoring"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    )
