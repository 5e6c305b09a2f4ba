"""Non-photos (noise, blank frames, a transparent PNG) are marked "not recognised" instead of
getting a confident bin; real photos pass."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from binsort.cli import app
from binsort.data.images import open_rgb, resize_shorter
from binsort.screening import screen

runner = CliRunner()
EXAMPLES = Path(__file__).parents[1] / "examples"


def non_photos(folder: Path) -> dict[str, str]:
    """File name -> the reason expected."""
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (384, 512, 3)).astype(np.uint8)).save(folder / "n.png")
    Image.new("RGB", (512, 384), (255, 255, 255)).save(folder / "white.jpg")
    Image.new("RGB", (512, 384), (0, 0, 0)).save(folder / "black.jpg")
    Image.new("RGBA", (512, 384), (0, 0, 0, 0)).save(folder / "clear.png")
    return {"n.png": "noise", "white.jpg": "blank", "black.jpg": "blank", "clear.png": "blank"}


def test_real_photos_pass_the_screen() -> None:
    photos = sorted(EXAMPLES.rglob("*.jpg"))
    assert len(photos) == 54
    flagged = [p for p in photos if screen(resize_shorter(open_rgb(p), 224)) is not None]
    assert flagged == []


def test_predict_marks_non_photos_not_recognised(trained_runs, tmp_path: Path) -> None:
    expected = non_photos(tmp_path)
    model = trained_runs[0].best_checkpoint
    result = runner.invoke(app, ["predict", str(tmp_path), "-m", str(model), "-f", "json"])
    assert result.exit_code == 0, result.output
    rows = {Path(r["path"]).name: r for r in json.loads(result.stdout)}
    assert set(rows) == set(expected)
    for name, reason in expected.items():
        row = rows[name]
        assert reason in row["not_recognised"] and row["bin"] is None and row["error"] is None
    table = runner.invoke(app, ["predict", str(tmp_path), "-m", str(model)])
    assert "not recognised" in table.output and "4 not recognised" in table.output
