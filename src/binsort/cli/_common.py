"""What every command shares: the consoles and the one place user errors become messages."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperArgument, TyperCommand

from binsort.errors import BinsortError

console = Console()
err_console = Console(stderr=True)

# Exit codes, one table for every command (docs/reliability.md): 0 done; 1 an error stopped
# the command; 2 a malformed command line (Click's own); 3 some inputs could not be used and
# were listed, the rest was done; 130 interrupted before anything was saved.
EXIT_PARTIAL = 3

# Scoring options shared by evaluate and ensemble, so their help and defaults cannot drift.
Batch = Annotated[int, typer.Option(help="Images per batch.", rich_help_panel="Speed")]
Workers = Annotated[
    int,
    typer.Option(
        help="DataLoader worker processes (0 decodes in this process).", rich_help_panel="Speed"
    ),
]
# ensemble and export write one file, --output, and replace it only when told to.
ReplaceOutput = Annotated[
    bool, typer.Option(help="Replace --output if it exists.", rich_help_panel="Output")
]


class _Argument(TyperArgument):
    # Typer puts the annotation ("<list[Path]>") beside an argument's name; the name (PATH)
    # and its help already say what goes there.
    def display_type_rich(self, ctx: click.Context) -> str | None:
        return None


class Command(TyperCommand):
    """Typer's command with help rows that fit 80 columns.

    A flag shows no "<bool>" type, and its "--no-" form is left out of the help (it still
    parses: ``train --resume RUN --no-cache`` turns a stored flag off). Those two columns are
    what squeezed the help text into cut-off cells.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if type(param) is TyperArgument:
                param.__class__ = _Argument
            elif getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""

    def get_help_option(self, ctx: click.Context) -> click.Option | None:
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        hidden = {p: p.secondary_opts for p in self.params if getattr(p, "is_flag", False)}
        for param in hidden:
            param.secondary_opts = []
        try:
            super().format_help(ctx, formatter)
        finally:
            for param, opts in hidden.items():
                param.secondary_opts = opts


# The model and bin map that answer, in predict and serve.
ModelOption = Annotated[
    Path | None,
    typer.Option(
        "--model",
        "-m",
        help="A checkpoint (.ckpt), a run folder (its best checkpoint), an ensemble file or an "
        "exported .onnx model.",
        show_default="the bundled model",
        rich_help_panel="Model",
    ),
]
# Each decode's memory budget, in predict and serve (binsort.data.images).
MaxMegapixels = Annotated[
    float,
    typer.Option(
        "--max-megapixels",
        help="Refuse a photo whose decoding would take more than this many megapixels of "
        "memory (4 bytes each); larger JPEGs decode at reduced size and pass.",
        rich_help_panel="Limits",
    ),
]
BinsOption = Annotated[
    str,
    typer.Option(
        "--bins",
        "-b",
        help="A built-in bin map (psu) or a .toml or .json bin map file.",
        rich_help_panel="Model",
    ),
]


# The image options of evaluate and ensemble: one wording of what a split is and what --root
# and --allow-overlap do; each command says what it uses the images for.
def root_option(use: str) -> Any:
    return typer.Option(
        help=f"{use} Give --root again to use several folders as one set (classes matched by "
        "folder name). With --split: the image root to find the split's files in, instead of "
        "the recorded one (a run on several folders: each, in the order it was trained with).",
        metavar="DIR",  # not Typer's "<list[Path]>": one folder per --root
        show_default=False,
        rich_help_panel="Images",
    )


def split_option(use: str) -> Any:
    return typer.Option(
        help=f"{use} a training run recorded: its run folder, its split.json (or a copy of "
        "it), one of its checkpoints or an export of one.",
        show_default=False,
        rich_help_panel="Images",
    )


def allow_overlap_option(use: str) -> Any:
    return typer.Option(
        help=f"{use} images a model was trained on anyway (with a warning).",
        rich_help_panel="Images",
    )


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
