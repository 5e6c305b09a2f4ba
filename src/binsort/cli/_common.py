"""What every command shares: the consoles and the one place user errors become messages."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from binsort.errors import BinsortError

console = Console()
err_console = Console(stderr=True)

# Exit codes, one table for every command (docs/reliability.md): 0 done; 1 an error stopped
# the command; 2 a malformed command line (Click's own); 3 some inputs could not be used and
# were listed, the rest was done; 130 interrupted before anything was saved.
EXIT_PARTIAL = 3

# Scoring options shared by evaluate and ensemble, so their help and defaults cannot drift.
Batch = Annotated[int, typer.Option(help="Images per batch.")]
Workers = Annotated[
    int, typer.Option(help="DataLoader worker processes (0 decodes in this process).")
]


def print_warnings(warnings: list[str]) -> None:
    """A library result's warnings, one yellow line each on stderr."""
    for warning in warnings:
        # Escaped like errors: "x.ensemble[member 0]" is text, not rich markup.
        err_console.print(
            f"[bold yellow]WARNING:[/] {escape(warning)}", highlight=False, soft_wrap=True
        )


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn errors the user can fix into one red line on stderr and exit code 1."""
    try:
        yield
    except BinsortError as exc:
        # Escaped: a file name like "bottle [red].jpg" is text, not rich markup.
        err_console.print(
            f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
        )
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]")
        raise typer.Exit(130) from None
    except OSError as exc:
        # Disk full, permission denied and the like: the user's environment, not a bug.
        err_console.print(
            f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
        )
        raise typer.Exit(1) from None
