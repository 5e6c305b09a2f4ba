"""``binsort train``: options generated from ``TrainConfig``, one library call, a summary table.

The command's parameters are built from ``binsort.config.OPTIONS`` (name, type, default, help,
choices and panel, from the fields of TrainConfig's groups), so an option is defined once, in
``binsort.config``. An option left out reaches the library as None where a preset decides it.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any, Literal

import typer
from rich.table import Table

from binsort.cli._common import Command, console, err_console, print_warnings, user_errors
from binsort.config import OPTIONS, TrainConfig


def _run(ctx: typer.Context, resume: str | None, options: dict[str, Any]) -> None:
    from binsort.folds import fit_folds
    from binsort.train import find_resume_checkpoint, fit, resume_config

    with user_errors():
        if resume:
            # Options typed on the command line override the run's stored ones (e.g. --epochs).
            given = {
                name: value
                for name, value in options.items()
                if ctx.get_parameter_source(name).name not in ("DEFAULT", "DEFAULT_MAP")
            }
            cfg, _ = resume_config(find_resume_checkpoint(resume), _to_config(given))
        else:
            cfg = TrainConfig.from_options(**_to_config(options))
        if cfg.data.folds and not resume:
            folds = fit_folds(cfg, progress=True, on_fold=_fold_line)
            if folds.folds[0].global_rank == 0:  # under DDP the first process reports
                console.print(folds_table(folds))
                print_warnings(folds.warnings)
            return
        result = fit(cfg, resume=resume, progress=True)
    if result.global_rank != 0:
        return  # under DDP each process trains; the first one reports
    for note in result.notes:
        err_console.print(note, highlight=False, markup=False, soft_wrap=True)
    console.print(summary_table(result))
    # Paths a user copies go below the table, whole: a table cell would cut them at 80 columns.
    best = result.best_checkpoint.with_name("best.ckpt") if result.best_checkpoint else None
    paths = (
        ("run folder", result.run_dir),
        ("best checkpoint", best),
        ("last checkpoint", result.last_checkpoint),
    )
    for label, path in paths:
        if path is not None:
            console.print(f"{label}: {path}", highlight=False, markup=False, soft_wrap=True)
    print_warnings(result.warnings)
    if result.skipped:
        err_console.print(f"[yellow]left out {len(result.skipped)} unreadable file(s):[/]")
        for path, reason in result.skipped[:20]:
            err_console.print(f"  {path}: {reason}", highlight=False, markup=False)


def _to_config(options: dict[str, Any]) -> dict[str, Any]:
    out = dict(options)
    if isinstance(out.get("milestones"), str):
        text = out["milestones"]
        try:
            out["milestones"] = [int(v) for v in text.replace(" ", ",").split(",") if v]
        except ValueError:
            raise typer.BadParameter(
                f"--milestones wants epochs like 150,190, got {text!r}"
            ) from None
    return out


def _fold_line(index: int, result) -> None:
    acc = result.best_row.get("val_accuracy")
    console.print(
        f"fold {index}: val accuracy {acc:.4f}{_interval(result.val_interval, result.val_photos)}"
        f" at best epoch {result.best_epoch} (by {result.monitor}) "
        f"({result.seconds:.0f} s) -> {result.best_checkpoint}",
        highlight=False,
    )


def _interval(interval: tuple[float, float] | None, photos: int | None) -> str:
    """`` (95 % interval 0.899-0.964, 214 photos)``, or nothing for a run that lacks it."""
    if interval is None:
        return ""
    low, high = interval
    return f" (95 % interval {low:.3f}-{high:.3f}, {photos} photos)"


def folds_table(folds) -> Table:
    table = Table(
        title=f"Cross-validation, {len(folds.folds)} folds",
        caption="pooled out-of-fold: every photo outside the test split validated once, by a "
        "model that never trained on it; compare recipes by it and its interval",
    )
    columns = ("fold", "best epoch", "val accuracy", "95 % interval", "photos", "val loss")
    for column in (*columns, "best checkpoint"):
        table.add_column(column, justify="left" if column == "best checkpoint" else "right")
    for index, (result, (low, high), (_, photos)) in enumerate(
        zip(folds.folds, folds.intervals(), folds.counts(), strict=True)
    ):
        row = result.best_row
        table.add_row(
            str(index),
            str(result.best_epoch),
            f"{row.get('val_accuracy', 0.0):.4f}",
            f"{low:.3f}-{high:.3f}",
            str(photos),
            f"{row.get('val_loss', 0.0):.4f}",
            str(result.best_checkpoint),
        )
    table.add_section()
    table.add_row("mean ± std", "", f"{folds.mean_accuracy:.4f} ± {folds.std_accuracy:.4f}")
    table.add_row("standard error of the mean", "", f"{folds.standard_error:.4f}")
    low, high = folds.pooled_interval
    table.add_row(
        "pooled out-of-fold",
        "",
        f"{folds.pooled_accuracy:.4f}",
        f"{low:.3f}-{high:.3f}",
        str(folds.pooled_photos),
        style="bold",
    )
    return table


def summary_table(result) -> Table:
    best = result.best_row
    table = Table(title="Training finished", show_header=False)
    table.add_column(style="bold")
    table.add_column()

    def fmt(value: Any, spec: str = ".4f") -> str:
        return "-" if value is None else format(value, spec)

    accuracy = fmt(best.get("val_accuracy")) + _interval(result.val_interval, result.val_photos)
    rows = [
        (
            "images (train/val/test)",
            f"{result.train_size} / {result.val_size} / {result.test_size}",
        ),
        ("epochs run", str(result.epochs_run)),
        # "Best" is by --save-monitor; the other metric is that epoch's, not its own best.
        ("best epoch", f"{fmt(result.best_epoch, 'd')} (by {result.monitor})"),
        # Chosen on the photos that score it: a little optimistic for photos it has not seen.
        ("val accuracy at best", accuracy),
        ("", "of the epoch chosen on these photos: a little optimistic"),
        ("val loss at best", fmt(best.get("val_loss"))),
        ("time per epoch", fmt(result.seconds_per_epoch, ".1f") + " s"),
        ("training images/s", fmt(result.images_per_second, ".1f")),
        ("total time", f"{result.seconds:.1f} s"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    return table


def build_command():
    """A function whose signature Typer reads: one keyword option per config field."""
    params = [
        inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
    ]
    for option in OPTIONS.values():
        default, kind = option.default, option.type
        if default is None:
            kind = kind | None  # None: not given, so the preset (or another option) decides
        if option.choices:
            kind = Literal[option.choices]  # type: ignore[valid-type]
        elif option.name == "milestones":
            # "150,190"; GarbageML's "--milestones 150 190" is joined in binsort.cli.main.
            kind, default = str, ",".join(str(m) for m in default)
        # A repeatable option (--root A --root B) shows one item, not Typer's "<list[str]>".
        metavar = "DIR" if option.name == "root" else None
        typer_option = typer.Option(help=option.help, rich_help_panel=option.panel, metavar=metavar)
        params.append(
            inspect.Parameter(
                option.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=default,
                annotation=Annotated[kind, typer_option],
            )
        )
    resume_option = typer.Option(
        help="Continue a run: its folder or a checkpoint. Options given here override its own.",
        rich_help_panel="Hardware and run",
    )
    params.append(
        inspect.Parameter(
            "resume",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[str | None, resume_option],
        )
    )

    def train(ctx: typer.Context, **kwargs: Any) -> None:
        resume = kwargs.pop("resume")
        _run(ctx, resume, kwargs)

    train.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    train.__annotations__ = {p.name: p.annotation for p in params}
    train.__doc__ = TRAIN_HELP
    return train


TRAIN_HELP = """Fine-tune a published network on an ImageFolder: by default EfficientNet-Lite0
from its ImageNet weights, offline. --weights none trains from scratch.

Runs go to OUT/NAME/version_N/ with TensorBoard logs, checkpoints (best.ckpt, last.ckpt),
results.csv, config.json and split.json. Flags are off unless given; with --resume, a flag's
--no- form (--no-cache) turns off one the run was started with.

Example: binsort train --root data/trashnet288 --cache --channels-last --workers 0

Several folders, one model (classes matched by folder name; the model's classes are their
union): binsort train --root data/trashnet288 --root collected
"""


def register(app: typer.Typer) -> None:
    app.command("train", cls=Command)(build_command())
