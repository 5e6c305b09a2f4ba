"""Every command's --help shows what its options say, defaults included."""

from __future__ import annotations

import pytest
import typer.main
from rich.text import Text
from typer.testing import CliRunner

from binsort.cli import app

runner = CliRunner()
COMMANDS = ["resize", "train", "evaluate", "ensemble", "predict", "export"]


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
