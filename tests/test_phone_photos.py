"""Photos as phones take them: HEIC files from iPhones, and very large photos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from binsort.cli import app
from binsort.data.folder import scan_folder
from binsort.data.images import MAX_PIXELS, open_rgb
from binsort.errors import BinsortError
from conftest import COLOURS, png_declaring, smooth_noise

runner = CliRunner()


def heic_folder(root: Path) -> Path:
    """Two HEIC photos per class, coloured by class like the other test folders."""
    rng = np.random.default_rng(3)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(2):
            pixels = np.clip(np.array(colour) + smooth_noise(rng, (40, 30), 20), 0, 255)
            pixels = pixels.astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"IMG_{i:04d}.HEIC")
    return root


def test_heic_photos_are_found_and_read(tmp_path: Path) -> None:
    root = heic_folder(tmp_path / "phone")
    images = scan_folder(root, check=True)
    assert len(images.samples) == 6 and not images.skipped
    im = open_rgb(root / "glass" / "IMG_0000.HEIC")
    assert im.mode == "RGB" and im.size == (40, 30)


def test_predict_sorts_a_folder_of_heic_photos(trained_runs, tmp_path: Path) -> None:
    root = heic_folder(tmp_path / "phone")
    model = trained_runs[0].best_checkpoint
    result = runner.invoke(app, ["predict", str(root), "-m", str(model), "-f", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 6 and all(row["error"] is None and row["bin"] for row in rows)


def test_the_pixel_limit_admits_phone_photos_and_refuses_bombs(tmp_path: Path) -> None:
    assert MAX_PIXELS >= 200_000_000  # the largest phone sensors of today
    phone = tmp_path / "phone.png"
    phone.write_bytes(png_declaring(12_000, 9_000))  # 108 MP: past Pillow's own 89 MP limit
    with pytest.raises(BinsortError) as err:
        open_rgb(phone)  # the header passes; the 1-pixel body is what fails
    assert "too large" not in str(err.value)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_declaring(30_000, 30_000))
    with pytest.raises(BinsortError, match=r"refused, image too large \(over 250 megapixels\)"):
        open_rgb(bomb)
