"""``binsort predict --sort-into``: photos copied into a folder per bin or class, never moved
and never overwriting."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from binsort.cli import app
from binsort.predict import Prediction
from binsort.sorting import NOT_RECOGNISED, NOT_SURE, Sorter
from conftest import make_image_folder

runner = CliRunner()


@pytest.fixture(scope="module")
def checkpoint(trained_runs) -> Path:
    return trained_runs[0].best_checkpoint


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    root = make_image_folder(tmp_path / "camera", per_class=2, seed=9)
    Image.new("RGB", (64, 64), "white").save(root / "blank.png")  # not a photo of an item
    (root / "broken.jpg").write_bytes(b"not an image")
    return root


def predict(*args: object):
    return runner.invoke(app, ["predict", *map(str, args)])


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_copies_into_bin_folders_and_leaves_the_photos(checkpoint: Path, photos: Path) -> None:
    before = tree(photos)
    out = photos.parent / "sorted"
    result = predict(photos, "-m", checkpoint, "--sort-into", out, "-f", "json")
    assert result.exit_code == 3, result.output  # broken.jpg could not be read
    rows = {Path(r["path"]).name: r for r in json.loads(result.stdout)}
    assert tree(photos) == before  # copied, not moved
    copied = tree(out)
    assert len(copied) == len(rows) - 1  # everything but the unreadable file
    for name, row in rows.items():
        if row["error"]:
            assert not any(key.endswith(name) for key in copied)
            continue
        folder = NOT_RECOGNISED if row["not_recognised"] else row["bin"]
        if row["uncertain"]:
            folder = NOT_SURE
        source = next(photos.rglob(name))
        assert copied[f"{folder}/{name}"] == source.read_bytes()
    assert f"copied {len(copied)} into" in result.stderr


def test_never_overwrites_and_sorts_by_class(checkpoint: Path, photos: Path) -> None:
    out = photos.parent / "sorted"
    args = (photos / "glass", "-m", checkpoint, "--sort-into", out, "--min-confidence", "0")
    assert predict(*args).exit_code == 0
    first = tree(out)
    assert predict(*args).exit_code == 0
    second = tree(out)
    # The first copies are untouched; the second run's copies got numbered names beside them.
    assert {k: second[k] for k in first} == first and len(second) == 2 * len(first)
    assert all(Path(k).stem.endswith("-1") for k in set(second) - set(first))
    by_class = predict(
        photos / "glass",
        "-m",
        checkpoint,
        "--sort-into",
        out / "c",
        "--sort-by",
        "class",
        "-f",
        "json",
    )
    rows = json.loads(by_class.stdout)
    assert sorted(tree(out / "c")) == sorted(f"{r['class']}/{Path(r['path']).name}" for r in rows)


@pytest.mark.parametrize(
    ("where", "message"),
    [("inside", "is inside"), ("file", "is a file, not a folder")],
)
def test_bad_destinations(checkpoint: Path, photos: Path, where: str, message: str) -> None:
    dest = photos / "sorted" if where == "inside" else photos / "glass" / "x.jpg"
    if where == "file":
        dest = photos.parent / "a-file"
        dest.write_text("mine")
    result = predict(photos, "-m", checkpoint, "--sort-into", dest)
    assert result.exit_code == 1 and message in result.output
    assert not (photos / "sorted").exists() and (where != "file" or dest.read_text() == "mine")


def test_folder_names_are_safe(tmp_path: Path) -> None:
    photo = tmp_path / "a.jpg"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(photo)
    from binsort.bins import Bin

    row = Prediction(str(photo), label="paper", bin=Bin(name="Paper/Card: ..", note=""))
    sorter = Sorter(tmp_path / "out")
    list(sorter.copy_each([row]))
    assert sorter.copied == [(str(photo), tmp_path / "out" / "Paper-Card-" / "a.jpg")]
