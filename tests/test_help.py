"""Every command's --help shows what its options say, defaults included."""

from __future__ import annotations

import pytest
import typer.main
from rich.text import Text
from typer.testing import CliRunner

from binsort.cli import app

runner = CliRunner()
COMMANDS = ["resize", "train", "evaluate", "ensemble", "predict", "export", "serve", "audit"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_text_has_no_rich_markup(command: str) -> None:
    # Typer renders help with rich, which silently drops "[anything]" as a markup tag: a
    # "[default: ...]" written into a help string vanished from the screen.
    command_ = typer.main.get_command(app).commands[command]
    texts = [command_.help or ""] + [getattr(p, "help", None) or "" for p in command_.params]
    assert [t for t in texts if Text.from_markup(t).plain != t] == []


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        ("predict", "the bundled model"),
        ("ensemble", "twice the number of models"),
        ("evaluate", "the ensemble with --ensemble"),
    ],
)
def test_help_shows_descriptive_defaults(command: str, shown: str) -> None:
    result = runner.invoke(app, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert shown in result.output


def test_version() -> None:
    from binsort import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"binsort {__version__}"


@pytest.mark.parametrize("command", COMMANDS)
def test_help_fits_80_columns(command: str) -> None:
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line for line in lines if len(line) > 80] == []
    # Rich cuts a cell that does not fit with an ellipsis; Typer's type names are noise.
    assert "…" not in result.output
    assert "<bool>" not in result.output and "<list[" not in result.output
    # Every option sits in a named panel, as train's do; only --help is left in "Options".
    options = (
        result.output.split("─ Options ─")[1].split("╰")[0]
        if "─ Options ─" in result.output
        else ""
    )
    assert [line for line in options.splitlines() if "--" in line and "--help" not in line] == []


def test_help_leaves_out_no_forms_but_they_still_parse() -> None:
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "80"})
    assert "--no-imbalance" not in result.output
    # The --no- forms are only hidden from help: resuming a run started with --cache without it.
    train = typer.main.get_command(app).commands["train"]
    cache = next(p for p in train.params if p.name == "cache")
    ctx = train.make_context("train", ["--no-cache"], resilient_parsing=True)
    assert "--no-cache" in cache.secondary_opts and ctx.params["cache"] is False
