"""Bin maps: the built-in PSU map, TOML and JSON files, and clear errors for bad ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from binsort.bins import BUILTIN_MAPS, Bin, load_bin_map
from binsort.cli import app
from binsort.errors import BinsortError

TOML_MAP = """
name = "Test town"

[bins]
paper = "Paper"

[bins.glass]
bin = "Glass"
note = "No window glass."

[bins.metal]
bin = "Cans"
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_builtin_psu_map() -> None:
    psu = load_bin_map("psu", classes=["glass", "metal", "paper"])
    assert psu is BUILTIN_MAPS["psu"]
    assert psu.bin_for("paper").name == psu.bin_for("cardboard").name == "Mixed Paper"
    assert "beside the bin" in psu.bin_for("cardboard").note
    assert psu.bin_for("glass").name == "Glass"
    assert psu.bin_for("metal").name == "Metal"
    assert psu.bin_for("plastic").name == "Plastic Bottles, Jugs & Jars"
    assert "bottle-shaped" in psu.bin_for("plastic").note
    assert psu.bin_for("trash").name == "Landfill"


def test_toml_file(tmp_path: Path) -> None:
    bin_map = load_bin_map(write(tmp_path / "town.toml", TOML_MAP), classes=["glass", "paper"])
    assert bin_map.title == "Test town"
    assert bin_map.bins == {
        "paper": Bin("Paper"),
        "glass": Bin("Glass", "No window glass."),
        "metal": Bin("Cans"),
    }


def test_json_file(tmp_path: Path) -> None:
    data = {"bins": {"glass": {"bin": "Glass", "note": "Rinse."}, "metal": "Metal"}}
    path = write(tmp_path / "town.json", json.dumps(data))
    bin_map = load_bin_map(str(path))
    assert bin_map.source == str(path)
    assert bin_map.bins == {"glass": Bin("Glass", "Rinse."), "metal": Bin("Metal")}


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("missing.toml", None, "no such bin map file"),
        ("bad.toml", "[bins\nglass = 1", "not valid TOML"),
        ("bad.json", "{", "not valid JSON"),
        ("list.json", "[1, 2]", "expected a table"),
        ("nobins.toml", 'name = "x"', "non-empty 'bins' table"),
        ("typo.toml", '[bin]\nglass = "Glass"', "unknown key(s) bin"),
        ("entry.json", '{"bins": {"glass": 3}}', "bins.glass: expected a bin name"),
        ("empty.toml", '[bins.glass]\nnote = "x"', "bins.glass: 'bin' must be"),
        ("notes.toml", '[bins.glass]\nbin = "G"\nnotes = "x"', "unknown key(s) notes"),
        ("map.yaml", "bins: {}", "must end in .toml or .json"),
    ],
)
def test_bad_files(tmp_path: Path, name: str, text: str | None, message: str) -> None:
    path = tmp_path / name
    if text is not None:
        write(path, text)
    with pytest.raises(BinsortError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_bin_map(path)


def test_unknown_builtin_name() -> None:
    with pytest.raises(BinsortError, match="unknown bin map 'moon'.*psu"):
        load_bin_map("moon")


def test_map_missing_a_model_class(tmp_path: Path) -> None:
    path = write(tmp_path / "town.toml", '[bins]\nglass = "Glass"')
    with pytest.raises(BinsortError, match="no bin for the model's class\\(es\\) 'metal', 'paper'"):
        load_bin_map(path, classes=["glass", "metal", "paper"])


# The CLI: a bad map stops the command before any photo is read, in one line, exit code 1.


@pytest.fixture(scope="module")
def checkpoint(trained_runs) -> Path:
    return trained_runs[0].best_checkpoint


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.toml", "[bins\n", "not valid TOML"),
        ("short.toml", '[bins]\nglass = "Glass"', "no bin for the model's class(es) 'metal'"),
        ("missing.json", None, "no such bin map file"),
    ],
)
def test_cli_rejects_bad_bin_map(
    tmp_path: Path, image_folder: Path, checkpoint: Path, name: str, text: str | None, message: str
) -> None:
    path = tmp_path / name
    if text is not None:
        write(path, text)
    result = CliRunner().invoke(
        app, ["predict", str(image_folder), "--model", str(checkpoint), "--bins", str(path)]
    )
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_cli_uses_a_custom_map(tmp_path: Path, image_folder: Path, checkpoint: Path) -> None:
    path = write(tmp_path / "town.toml", TOML_MAP)
    result = CliRunner().invoke(
        app,
        [
            "predict",
            str(image_folder / "metal"),
            "-m",
            str(checkpoint),
            "-b",
            str(path),
            "-f",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert {row["bin"] for row in rows} <= {"Paper", "Glass", "Cans"}
