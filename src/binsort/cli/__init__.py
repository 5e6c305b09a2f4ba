"""The ``binsort`` command: one small module per subcommand (parse, call the library, render).

Nothing here imports torch or Lightning at module level, so ``binsort --help`` is instant; each
command imports the library code it calls inside its body.
"""

from __future__ import annotations

import sys
import warnings

import typer

from binsort.cli import audit, ensemble, evaluate, export, predict, resize, serve, train
from binsort.cli._common import Command

app = typer.Typer(
    name="binsort",
    help="Train, compare and use image classifiers that sort a photo of waste into the right bin.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Docstrings are paragraphs: markdown joins their lines, so help reflows to the terminal.
    rich_markup_mode="markdown",
)


def _version(value: bool) -> None:
    if value:
        from binsort import __version__

        typer.echo(f"binsort {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False,
        "--version",
        help="Print binsort's version and exit.",
        callback=_version,
        is_eager=True,
    ),
) -> None:
    """Train, compare and use image classifiers that sort a photo of waste into the right bin."""


app.command("resize", cls=Command)(resize.resize)
app.command("evaluate", cls=Command)(evaluate.evaluate)
app.command("ensemble", cls=Command)(ensemble.ensemble)
app.command("predict", cls=Command)(predict.predict)
app.command("export", cls=Command)(export.export)
app.command("serve", cls=Command)(serve.serve)
app.command("audit", cls=Command)(audit.audit)
train.register(app)


def _join_nargs(argv: list[str], options: tuple[str, ...] = ("--milestones",)) -> list[str]:
    """Accept ``--milestones 150 190`` (GarbageML's argparse habit) as ``--milestones 150,190``."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        out.append(argv[i])
        if argv[i] in options:
            values = []
            while i + 1 < len(argv) and argv[i + 1].replace(",", "").isdigit():
                values.append(argv[i + 1])
                i += 1
            if values:
                out.append(",".join(values))
        i += 1
    return out


def main() -> None:
    # Each decode is held to binsort's own budget (binsort.data.images); Pillow's warning
    # about images past its process-wide limit would only repeat that on stderr.
    warnings.filterwarnings("ignore", message=r"Image size \(\d+ pixels\) exceeds limit")
    app(args=_join_nargs(sys.argv[1:]), prog_name="binsort")
