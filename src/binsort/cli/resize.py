"""``binsort resize``: shrink an image folder once so that training reads small JPEGs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from binsort.cli._common import EXIT_PARTIAL, console, err_console, user_errors


def resize(
    src: Annotated[
        Path, typer.Argument(help="Image folder to read (one sub-folder per class); never written.")
    ],
    dst: Annotated[
        Path,
        typer.Argument(help="Folder to write into; created if needed. Must not be inside SRC."),
    ],
    size: Annotated[
        int,
        typer.Option(
            "--size", "-s", help="Shorter side of the outputs, in pixels.", rich_help_panel="Output"
        ),
    ],
    quality: Annotated[
        int,
        typer.Option(
            "--quality", "-q", help="JPEG quality of the outputs (1-100).", rich_help_panel="Output"
        ),
    ] = 90,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            "-w",
            help="Processes to resize with; 0 or 1 works in this process (default: one per CPU).",
            show_default=False,
            rich_help_panel="Speed",
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Redo outputs that already exist instead of keeping them.",
            rich_help_panel="Output",
        ),
    ] = False,
) -> None:
    """Copy an image folder with each image's shorter side reduced to --size px.

    Keeps the class folders and file names and the aspect ratio. Never upscales:
    smaller images are re-encoded at their own size. Images are turned upright
    (EXIF orientation) and written as RGB JPEGs; cat.png becomes cat.jpg.
    SRC is never written. Safe to interrupt and re-run: existing outputs are
    kept (counted as already done) unless --overwrite is given.
    Hidden files are ignored; unreadable and non-image files are skipped and
    listed at the end.

    Exit codes: 0 every image was written or already done;
    3 some files were skipped (all others are still written); 2 a malformed command line;
    1 an error stopped the command (SRC missing, DST inside SRC, bad option).
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from binsort.data.resize import resize_folder

    progress_bar = Progress(
        TextColumn("resizing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    )
    task = progress_bar.add_task("resize", total=None)

    def on_progress(done: int, total: int) -> None:
        progress_bar.update(task, completed=done, total=total)

    with user_errors(), progress_bar:
        result = resize_folder(
            src,
            dst,
            size,
            quality=quality,
            workers=workers,
            overwrite=overwrite,
            progress=on_progress,
        )

    _render(result, dst, size)
    if result.skipped:
        raise typer.Exit(EXIT_PARTIAL)


def _render(result, dst: Path, size: int) -> None:
    from rich.markup import escape
    from rich.table import Table

    console.print(
        f"[bold green]{result.written}[/] written, [bold]{result.already_done}[/] already done, "
        f"[bold {'yellow' if result.skipped else 'green'}]{len(result.skipped)}[/] skipped "
        f"(shorter side {size} px) in {escape(str(dst))}",
        highlight=False,
        soft_wrap=True,
    )
    if result.cleaned:
        console.print(f"removed {result.cleaned} temporary file(s) left by an interrupted run")
    if result.skipped:
        table = Table(title="Skipped files", title_justify="left", show_lines=False)
        table.add_column("path", overflow="fold")
        table.add_column("reason", overflow="fold")
        for path, reason in result.skipped:
            table.add_row(escape(path), escape(reason))
        console.print(table)
