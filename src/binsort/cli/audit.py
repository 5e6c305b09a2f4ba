"""``binsort audit``: the duplicates, leaks, odd files and likely wrong labels of photo folders.

The work is ``binsort.audit.audit``; this module parses the options, checks --out before the
passes start, and renders the result: counts and the worst findings as rich tables, every
finding as CSV or JSON, and with --out the files ``binsort.audit.outputs`` writes.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from binsort.cli._common import ModelOption, console, err_console, print_warnings, user_errors
from binsort.config import NEAR_THRESHOLD, PREDICT_BATCH, PREDICT_WORKERS
from binsort.errors import BinsortError, check_choice

FORMATS = ("table", "csv", "json")
SHOWN = 20  # worst findings in the table; CSV, JSON and --out have every one


def audit(
    roots: Annotated[
        list[Path],
        typer.Argument(
            metavar="ROOT",
            help="ImageFolders (ROOT/<class>/<photo>); several are audited as one set.",
            show_default=False,
        ),
    ],
    model: ModelOption = None,
    split: Annotated[
        Path | None,
        typer.Option(
            help="Pairs across its parts are leaks: a run folder, its split.json, a checkpoint "
            "or an export of one.",
            show_default="the model's recorded split",
            rich_help_panel="Checks",
        ),
    ] = None,
    labels: Annotated[
        bool,
        typer.Option(
            help="Check labels with the model (--no-labels: files and duplicates only).",
            rich_help_panel="Checks",
        ),
    ] = True,
    threshold: Annotated[
        int,
        typer.Option(
            help="Near duplicates: perceptual hashes at most this many bits (of 256) apart.",
            rich_help_panel="Checks",
        ),
    ] = NEAR_THRESHOLD,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="table, or csv or json: every finding to stdout.",
            rich_help_panel="Output",
        ),
    ] = "table",
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Folder for findings.csv, findings.json, suspects.png and audit.html.",
            show_default=False,
            rich_help_panel="Output",
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(help="Write into a non-empty --out folder.", rich_help_panel="Output"),
    ] = False,
    cache: Annotated[
        Path | None,
        typer.Option(
            help="The hash cache: unchanged photos are not decoded again.",
            show_default="$XDG_CACHE_HOME/binsort/audit.sqlite3",
            rich_help_panel="Speed",
        ),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Hash every photo afresh.", rich_help_panel="Speed")
    ] = False,
    workers: Annotated[
        int, typer.Option(help="Threads that decode photos.", rich_help_panel="Speed")
    ] = PREDICT_WORKERS,
    batch: Annotated[
        int, typer.Option(help="Photos per forward pass.", rich_help_panel="Speed")
    ] = PREDICT_BATCH,
) -> None:
    """Find the duplicates, leaks, odd files and likely wrong labels in photo folders.

    Reports unreadable and odd files (tiny, odd shape, blank or noise), exact duplicates
    (the same pixels, whatever the name or format), near duplicates (resized, re-encoded,
    cropped, brightened), pairs across two classes (one label is wrong) or across a split's
    parts (leaks), likely wrong labels (cleanlab, from the model's answers for photos it never
    trained on) and classes too small to validate. Nothing in the folders is changed.

    Example: binsort audit data/trashnet --split docs/trashnet-split.json --out audit

    Exit codes: 0 audited (findings or not); 1 an error stopped the command; 2 a bad option.
    """
    from binsort.audit import audit as run_audit
    from binsort.audit.core import refuse_output

    with user_errors():
        check_choice("--format", fmt, FORMATS)
        if out is not None:
            refuse_output(out, roots)
            if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
                raise BinsortError(f"{out} exists and is not empty; pass --force to write there")
        with _progress() as progress:
            result = run_audit(
                roots,
                model=model,
                split=split,
                labels=labels,
                threshold=threshold,
                cache=None if no_cache else (cache or "default"),
                workers=workers,
                batch=batch,
                progress=progress,
            )
        written = []
        if out is not None:
            from binsort.audit.outputs import write_outputs

            written = write_outputs(result, out)
    print_warnings(result.notes)
    if fmt != "table":
        from binsort.audit.outputs import write_csv, write_json

        (write_csv if fmt == "csv" else write_json)(result.findings, sys.stdout)
        err_console.print(_summary(result), highlight=False, soft_wrap=True)
    else:
        from binsort.audit.report import counts_table, findings_table

        console.print(counts_table(result))
        if result.findings:
            console.print(findings_table(result.findings[:SHOWN], wide=console.width >= 120))
        console.print(_summary(result), highlight=False, soft_wrap=True)
    if written:
        err_console.print(f"wrote {len(written)} files to {out}", highlight=False)


def _summary(result) -> str:
    text = (
        f"{result.photos} photos in {len(result.classes)} classes; hashed {result.hashed} "
        f"({result.cached} from the cache) in {result.hash_seconds:.1f} s"
    )
    if result.model is not None:
        text += (
            f"; labels of {result.label_checked} checked by {result.model} in "
            f"{result.model_seconds:.1f} s"
        )
    if result.split_source:
        text += f"; leaks against {result.split_source}"
    return text + f"; near duplicates: at most {result.threshold} bits apart"


def _progress():
    import contextlib

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    )
    tasks: dict[str, int] = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.update(tasks[stage], completed=done, total=total)

    @contextlib.contextmanager
    def running():
        with bar:
            yield update

    return running()
