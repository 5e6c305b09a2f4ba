"""``binsort predict``: which bin each photo goes into, as a table, CSV or JSON.

The work is ``binsort.predict.predict_photos`` (a stream of rows); this module parses the
options, writes the rows as they come (CSV and JSON) or collects them into a rich table, and
turns the outcome into an exit code.
"""

from __future__ import annotations

import contextlib
import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated

import typer

from binsort.cli._common import (
    EXIT_PARTIAL,
    BinsOption,
    MaxMegapixels,
    ModelOption,
    ReplaceOutput,
    console,
    err_console,
    user_errors,
)
from binsort.config import (
    MAX_MEGAPIXELS,
    PREDICT_BATCH,
    PREDICT_MIN_CONFIDENCE,
    PREDICT_TOP_K,
    PREDICT_WORKERS,
)
from binsort.errors import BinsortError, check_choice
from binsort.files import refuse_to_replace, replacing

if TYPE_CHECKING:
    from rich.table import Table

FORMATS = ("table", "csv", "json")


def predict(
    paths: Annotated[
        list[Path],
        typer.Argument(
            metavar="PATH", help="Photos, or folders searched recursively.", show_default=False
        ),
    ],
    model: ModelOption = None,
    bins: BinsOption = "psu",
    top_k: Annotated[
        int,
        typer.Option("--top-k", "-k", help="Classes to list per photo.", rich_help_panel="Answer"),
    ] = PREDICT_TOP_K,
    min_confidence: Annotated[
        float,
        typer.Option(
            "--min-confidence",
            help="Below this probability of its bin (0-1) a photo is marked uncertain "
            "and its two most likely bins are shown.",
            rich_help_panel="Answer",
        ),
    ] = PREDICT_MIN_CONFIDENCE,
    tta: Annotated[
        str | None,
        typer.Option(
            "--tta",
            help="Test-time augmentation: none, flip or flip5crop (flip5crop needs a "
            "checkpoint or an ensemble file).",
            show_default="the model's own: what export --tta recorded in an ONNX file, else none",
            rich_help_panel="Model",
        ),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            help="table, csv or json (default: table, or the --output file's suffix).",
            show_default=False,
            rich_help_panel="Output",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write the csv or json here instead of stdout.",
            show_default=False,
            rich_help_panel="Output",
        ),
    ] = None,
    force: ReplaceOutput = False,
    sort_into: Annotated[
        Path | None,
        typer.Option(
            help="Also copy each photo into a folder here per bin (or class, --sort-by): "
            "'not sure' and 'not recognised' get their own. Photos are copied, never moved, "
            "and nothing is overwritten.",
            show_default=False,
            rich_help_panel="Output",
        ),
    ] = None,
    sort_by: Annotated[
        str,
        typer.Option(
            help="What --sort-into's folders are: bin or class.", rich_help_panel="Output"
        ),
    ] = "bin",
    batch: Annotated[
        int, typer.Option("--batch", help="Photos per forward pass.", rich_help_panel="Speed")
    ] = PREDICT_BATCH,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            "-w",
            help="Threads that decode photos; 0 decodes inline.",
            rich_help_panel="Speed",
        ),
    ] = PREDICT_WORKERS,
    max_megapixels: MaxMegapixels = MAX_MEGAPIXELS,
) -> None:
    """Sort photos of waste into bins: class, probability, top-k classes and the bin.

    Folders are searched recursively; hidden files are ignored and files without an
    image extension inside folders are left out and listed, but a file named on the
    command line is always tried. A photo that cannot be read (missing, not an image, corrupt)
    gets its own error row and the others are still classified; so does one refused as too
    large to decode (--max-megapixels) or shaped like no photo (a strip over 20:1).
    With --format csv or json only the data goes to stdout; messages go to stderr.

    Exit codes: 0 every photo was classified;
    3 some photos could not be read (their rows say why; the others are classified);
    2 a malformed command line;
    1 an error stopped the command (bad model, bad bin map, bad option).
    """
    with user_errors():
        failed = _run(
            paths,
            model,
            bins,
            top_k,
            min_confidence,
            tta,
            fmt,
            output,
            force,
            batch,
            workers,
            sort_into,
            sort_by,
            max_megapixels,
        )
    if failed:
        raise typer.Exit(EXIT_PARTIAL)


def _run(
    paths,
    model,
    bins,
    top_k,
    min_confidence,
    tta,
    fmt,
    output,
    force,
    batch,
    workers,
    sort_into,
    sort_by,
    max_megapixels,
) -> int:
    """Classify and write (and copy, with --sort-into); returns the number of photos that failed."""
    from binsort.bins import load_bin_map
    from binsort.predict import (
        answer_source,
        describe_model,
        find_photos,
        load_model,
        predict_photos,
    )

    fmt = _choose_format(fmt, output)
    sorter = None
    if sort_into is not None:
        from binsort.sorting import Sorter

        sorter = Sorter(sort_into, sort_by, inputs=paths)
    left_out: list[tuple[str, str]] = []
    photos = list(find_photos(paths, left_out))  # paths only: the images are streamed
    if not photos:
        why = ""
        if left_out:
            path, reason = left_out[0]
            why = f" ({len(left_out)} file(s) left out, e.g. {path}: {reason})"
        raise BinsortError(f"no photos found in {', '.join(map(str, paths))}{why}")
    if output is not None:
        _check_output(output, force, photos)
    loaded = load_model(model, photos=len(photos))
    classes = loaded.classes
    bin_map = load_bin_map(bins, classes=classes)
    rows = predict_photos(
        photos,
        loaded,
        bin_map,
        batch=batch,
        workers=workers,
        top_k=top_k,
        min_confidence=min_confidence,
        tta=tta,
        max_megapixels=max_megapixels,
    )
    about = f"model: {describe_model(loaded, model is None, tta)}; bins: {bin_map.source}"
    unrecognised = []

    def counted(rows):
        for row in rows:
            if row.not_recognised is not None:
                unrecognised.append(row.path)
            yield row

    with _progress(len(photos), show=len(photos) > batch) as advance:
        rows = counted(advance(rows))
        if sorter is not None:
            rows = sorter.copy_each(rows)
        if fmt == "table":
            table, failed, notes = _table(rows, min(top_k, len(classes)))
        else:
            with _open_output(output) as out:
                write = _write_csv if fmt == "csv" else _write_json
                source = answer_source(model, loaded, bin_map)
                failed = write(rows, out, min(top_k, len(classes)), source)
    if left_out:
        err_console.print(f"[yellow]left out {len(left_out)} file(s) inside the folders:[/]")
        for path, reason in left_out[:20]:
            err_console.print(f"  {path}: {reason}", highlight=False, markup=False)
        if len(left_out) > 20:
            err_console.print(f"  ... and {len(left_out) - 20} more", highlight=False)
    summary = f"{len(photos) - failed - len(unrecognised)} classified, {failed} failed"
    if unrecognised:
        summary += f", {len(unrecognised)} not recognised as photos of an item"
    if sorter is not None:
        summary += f"; copied {len(sorter.copied)} into {sort_into}"
    if fmt == "table":
        # Above the table, not its title: a title wraps to the table's width.
        console.print(about, highlight=False, markup=False)
        console.print(table)
        for note in notes:
            console.print(note, highlight=False, markup=False, soft_wrap=True)
        console.print(summary, highlight=False, soft_wrap=True)
    else:
        # stdout holds only the data; the summary and the model's name go to stderr.
        where = f" -> {output}" if output else ""
        err_console.print(f"{summary} ({about}){where}", highlight=False, soft_wrap=True)
    return failed


def _choose_format(fmt: str | None, output: Path | None) -> str:
    if fmt is None:
        suffix = output.suffix.lower().lstrip(".") if output else ""
        fmt = suffix if suffix in ("csv", "json") else "table"
    check_choice("--format", fmt, FORMATS)
    if fmt == "table" and output is not None:
        raise BinsortError("--output needs --format csv or json (the table is for reading)")
    return fmt


def _check_output(output: Path, force: bool, photos: list[Path]) -> None:
    """Refuse, before the model loads, an --output that would replace a file without --force,
    or one of the photos being classified even with it."""
    if output.is_dir():
        raise BinsortError(f"--output {output} is a folder; name a file such as results.csv")
    if not output.parent.is_dir():
        raise BinsortError(f"{output.parent}: no such folder")
    if output.exists():
        target = output.resolve()
        if any(photo.resolve() == target for photo in photos):
            raise BinsortError(f"--output {output} is one of the photos to classify")
    refuse_to_replace(output, force)


@contextlib.contextmanager
def _progress(total: int, show: bool):
    """A progress bar on stderr (a TTY only, more than one batch); yields a row-counting wrapper."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    bar = Progress(
        "classifying",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=not (show and err_console.is_terminal),
    )
    task = bar.add_task("predict", total=total)

    def advance(rows):
        for row in rows:
            bar.advance(task)
            yield row

    with bar:
        yield advance


@contextlib.contextmanager
def _open_output(output: Path | None) -> Iterator[IO[str]]:
    """stdout, or ``output`` written under a temporary name and renamed once complete."""
    if output is None:
        yield sys.stdout
        return
    with replacing(output) as tmp, tmp.open("w", encoding="utf-8", newline="") as out:
        yield out


def _write_csv(rows, out: IO[str], top_k: int, source: dict) -> int:
    from binsort.predict import csv_header, csv_row

    writer = csv.writer(out)
    writer.writerow(csv_header(top_k))
    failed = 0
    for row in rows:
        writer.writerow(csv_row(row, top_k, source))
        failed += row.error is not None
    return failed


def _write_json(rows, out: IO[str], top_k: int, source: dict) -> int:
    """A JSON list written one object per line as rows arrive (valid JSON once complete)."""
    from binsort.predict import as_record

    failed = 0
    out.write("[")
    for i, row in enumerate(rows):
        record = {**as_record(row), **source}
        out.write(("," if i else "") + "\n  " + json.dumps(record, ensure_ascii=False))
        failed += row.error is not None
    out.write("\n]\n")
    return failed


def _table(rows, top_k: int) -> tuple[Table, int, list[str]]:
    """The photos as a table that fits 80 columns: file names (full paths are in CSV/JSON) and
    the bin with its probability; each bin's note is returned to be shown once, below."""
    from rich.markup import escape
    from rich.table import Table

    wide = console.width >= 110  # room for the top-k classes too
    table = Table()
    table.add_column("photo", overflow="fold")
    table.add_column("class", no_wrap=True)
    table.add_column("p", justify="right", no_wrap=True)
    table.add_column("bin", overflow="fold")
    table.add_column("bin p", justify="right", no_wrap=True)
    if wide:
        table.add_column(f"top {top_k}")
    failed = 0
    notes: dict[str, str] = {}
    for row in rows:
        name = escape(Path(row.path).name)
        if row.error is not None:
            failed += 1
            table.add_row(name, "[red]error[/]", "", escape(row.error), "", *([""] * wide))
            continue
        if row.not_recognised is not None:
            cells = [name, "[yellow]?[/]", "", f"[yellow]not recognised:[/] {row.not_recognised}"]
            table.add_row(*cells, "", *([""] * wide))
            continue
        if row.uncertain:
            shown = [row.bin.name] + ([row.other_bin.name] if row.other_bin else [])
            bin_cell = f"[yellow]not sure: {escape(' or '.join(shown))}[/]"
        else:
            bin_cell = escape(row.bin.name)
        for b in (row.bin, row.other_bin if row.uncertain else None):
            if b is not None and b.note:
                notes.setdefault(b.name, b.note)
        cells = [name, escape(row.label), f"{row.probability:.2f}", bin_cell]
        cells.append(f"{row.bin_probability:.2f}")
        if wide:
            cells.append(escape(", ".join(f"{c} {p:.2f}" for c, p in row.top)))
        table.add_row(*cells)
    return table, failed, [f"{b}: {n}" for b, n in notes.items()]
