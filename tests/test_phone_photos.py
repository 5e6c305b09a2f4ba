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
from binsort.data.images import open_rgb
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


def test_the_budget_admits_phone_photos_and_refuses_bombs(tmp_path: Path) -> None:
    phone = tmp_path / "phone.png"
    phone.write_bytes(png_declaring(6_000, 8_000))  # 48 MP: the largest HEIC phones write
    with pytest.raises(BinsortError) as err:
        open_rgb(phone)  # the header passes; the 1-pixel body is what fails
    assert "too large" not in str(err.value)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_declaring(12_000, 12_000))  # 144 MB of grey: past a 20-MP budget
    with pytest.raises(BinsortError, match=r"refused, image too large \(12000 x 12000"):
        open_rgb(bomb, max_megapixels=20)
    bomb.write_bytes(png_declaring(30_000, 30_000))  # past Pillow's own limit too
    with pytest.raises(BinsortError, match=r"refused, image too large"):
        open_rgb(bomb)
    # The budget is per use: a caller that allows more gets past it (here to the 1-pixel body).
    with pytest.raises(BinsortError) as err:
        open_rgb(phone, max_megapixels=10)
    assert "over the 10-megapixel budget" in str(err.value)


def test_a_200_megapixel_phone_jpeg_decodes_at_reduced_scale(tmp_path: Path) -> None:
    """Past Pillow's own limit (179 MP) and the budget at full size, but a JPEG decodes at
    1/8 scale when the model needs a few hundred pixels."""
    photo = tmp_path / "200mp.jpg"
    Image.new("RGB", (16_320, 12_240), (90, 140, 60)).save(photo, quality=50)
    im = open_rgb(photo, min_side=352)
    assert 352 <= min(im.size) < 2 * 352 and im.getpixel((10, 10))[1] > 120
    with pytest.raises(BinsortError, match="too large"):
        open_rgb(photo)  # decoded whole it would take 800 MB
