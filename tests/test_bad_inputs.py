"""A corpus of awkward and broken inputs, run through ``resize``, ``train``, ``evaluate`` and
``predict``: usable images are converted and used, unusable ones are skipped with a reason
(or the command stops with one line), and nothing ends in a traceback.

The corpus (``write_corpus``) is an ImageFolder of three classes. ``glass`` holds the broken
files beside four good photos, ``metal`` one image of every odd format, ``paper`` plain
photos; ``trash`` is an empty class folder. Exit codes are those documented in
docs/reliability.md.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from binsort.cli import app
from conftest import COLOURS, TINY_TRAIN, make_image_folder, png_declaring, smooth_noise

runner = CliRunner()

UNICODE_NAME = "Flasche grün über Ærø 01.jpg"  # spaces and non-ASCII letters

# Files that are not usable, with a word their listed reason must contain.
BROKEN = {
    "glass/zero-bytes.jpg": "not a readable image",
    "glass/truncated.jpg": "not a readable image",
    "glass/random bytes [draft].jpg": "not a readable image",  # brackets: not markup
    "glass/bomb.png": "too large",
}
NOT_IMAGES = {"glass/notes.txt": "not an image file"}
HIDDEN = ("glass/.DS_Store",)
ODD_FORMATS = (
    "metal/grey-L.png",
    "metal/palette-P.png",
    "metal/rgba.png",
    "metal/cmyk.jpg",
    "metal/grey16.png",
    "metal/webp.webp",
    "metal/tiff.tiff",
)
ROTATED = "glass/exif-rotated.jpg"  # stored 48x24 landscape, displayed 24x48 portrait
GOOD_PER_CLASS = 4


def _pixels(colour: tuple[int, int, int], size: tuple[int, int], seed: int) -> np.ndarray:
    noise = smooth_noise(np.random.default_rng(seed), size, 25)
    return np.clip(np.array(colour, dtype=np.int16) + noise, 0, 255).astype(np.uint8)


def write_corpus(root: Path, empty_class: str | None = "trash") -> Path:
    """Write the bad-inputs ImageFolder under ``root`` and return ``root``."""
    make_image_folder(root, per_class=GOOD_PER_CLASS, size=(40, 30))
    glass, metal = root / "glass", root / "metal"
    buffer = io.BytesIO()  # big enough that the first half still holds the JPEG's headers
    Image.fromarray(_pixels(COLOURS["glass"], (200, 150), 5)).save(buffer, "JPEG")
    good = buffer.getvalue()

    (glass / "zero-bytes.jpg").write_bytes(b"")
    (glass / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (glass / "random bytes [draft].jpg").write_bytes(np.random.default_rng(1).bytes(3000))
    (glass / "notes.txt").write_text("a text file among the photos\n")
    (glass / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(64))
    (glass / "bomb.png").write_bytes(png_declaring(30000, 30000))
    Image.fromarray(_pixels(COLOURS["glass"], (40, 30), 7)).save(glass / UNICODE_NAME)

    # Left half blue, right half red; EXIF orientation 6: shown rotated 90 degrees clockwise,
    # so upright it is 24 wide and 48 high with the blue half on top.
    rotated = Image.new("RGB", (48, 24), (200, 0, 0))
    rotated.paste((0, 0, 200), (0, 0, 24, 24))
    exif = rotated.getexif()
    exif[0x0112] = 6
    rotated.save(root / ROTATED, exif=exif)

    rgb = Image.fromarray(_pixels(COLOURS["metal"], (40, 30), 3))
    rgb.convert("L").save(metal / "grey-L.png")
    rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(metal / "palette-P.png")
    rgba = rgb.convert("RGBA")
    rgba.putalpha(200)
    rgba.save(metal / "rgba.png")
    rgb.convert("CMYK").save(metal / "cmyk.jpg")
    grey16 = np.asarray(rgb.convert("L"), dtype=np.uint16) * 257
    Image.fromarray(grey16).save(metal / "grey16.png")
    rgb.save(metal / "webp.webp")
    rgb.save(metal / "tiff.tiff")

    # A link to its own parent folder: following it would walk forever.
    (glass / "loop").symlink_to(glass, target_is_directory=True)
    if empty_class:
        (root / empty_class).mkdir()
    return root


USABLE = {
    *(f"{c}/{c}_{i:03d}.jpg" for c in ("glass", "metal", "paper") for i in range(GOOD_PER_CLASS)),
    f"glass/{UNICODE_NAME}",
    ROTATED,
    *ODD_FORMATS,
}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "corpus")


def file_hashes(root: Path) -> dict[str, str]:
    """Every file under ``root`` (links to folders not followed: the loop)."""
    found = {}
    for folder, _, names in os.walk(root, followlinks=False):
        for name in names:
            path = Path(folder) / name
            found[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def listed_reasons(output: str, paths) -> dict[str, str]:
    """For each path, the output line that names it (the CLI lists one file per line)."""
    lines = output.splitlines()
    return {p: next((line for line in lines if p in line), "") for p in paths}


def run_resize(root: Path, tmp_path: Path, trained_runs) -> tuple:
    from binsort.data.resize import output_name

    before = file_hashes(root)
    dst = tmp_path / "small"
    result = runner.invoke(app, ["resize", str(root), str(dst), "--size", "16", "--workers", "0"])
    assert file_hashes(root) == before, "resize changed a source file"
    used = {
        rel for rel in before if (dst / Path(rel).parent / output_name(Path(rel).name)).is_file()
    }
    for out in dst.rglob("*.jpg"):
        with Image.open(out) as im:
            assert (im.format, im.mode, min(im.size)) == ("JPEG", "RGB", 16)
    with Image.open(dst / ROTATED) as im:  # upright: portrait, the blue half on top
        assert im.size == (16, 32)
        assert im.getpixel((8, 4))[2] > 150 and im.getpixel((8, 28))[0] > 150
    assert not (dst / "trash").exists() and not (dst / "glass" / "loop").exists()
    return result, used, listed_reasons(result.output, {**BROKEN, **NOT_IMAGES})


def run_train(root: Path, tmp_path: Path, trained_runs) -> tuple:
    (root / "trash").rmdir()  # training needs images in every class: tested on its own below
    argv = ["train", "--root", str(root), "--out", str(tmp_path / "runs"), "--epochs", "1"]
    result = runner.invoke(app, [*argv, "--split", "0.3", *TINY_TRAIN])
    split = json.loads((tmp_path / "runs" / "default" / "version_0" / "split.json").read_text())
    used = set(split["train"]) | set(split["val"]) | set(split["test"])
    assert split["classes"] == ["glass", "metal", "paper"]
    listed = listed_reasons(result.output, {**BROKEN, **NOT_IMAGES})
    recorded = dict(split["skipped"])
    assert all(word in recorded[path] for path, word in {**BROKEN, **NOT_IMAGES}.items())
    return result, used, listed


def run_evaluate(root: Path, tmp_path: Path, trained_runs) -> tuple:
    (root / "trash").rmdir()  # a folder the model has no class for is an error (below)
    model = trained_runs[0].last_checkpoint
    # The corpus's good images share class and file names with the run's training images.
    argv = ["evaluate", str(model), "--root", str(root), "-o", str(tmp_path / "eval")]
    result = runner.invoke(app, [*argv, "--allow-overlap"])
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["images"] == len(USABLE)
    recorded = {item["path"]: item["reason"] for item in metrics["skipped"]}
    assert set(recorded) == {*BROKEN, *NOT_IMAGES}
    # metrics.json does not list the scored files: its count says every usable one was.
    return result, USABLE, listed_reasons(result.output, {**BROKEN, **NOT_IMAGES})


def run_predict(root: Path, tmp_path: Path, trained_runs) -> tuple:
    model = trained_runs[0].last_checkpoint
    out = tmp_path / "predictions.json"
    result = runner.invoke(app, ["predict", str(root), "--model", str(model), "-o", str(out)])
    rows = {Path(r["path"]).relative_to(root).as_posix(): r for r in json.loads(out.read_text())}
    used = {path for path, row in rows.items() if row["error"] is None}
    assert all(rows[path]["class"] in ("glass", "metal", "paper") for path in used)
    # Inside folders only image names are tried: notes.txt and .DS_Store are not photos.
    assert set(rows) == USABLE | set(BROKEN)
    return result, used, {path: rows[path]["error"] for path in BROKEN}


COMMANDS = {
    # command: (runner, exit code, files listed as skipped with their reasons)
    "resize": (run_resize, 3, {**BROKEN, **NOT_IMAGES}),
    "train": (run_train, 0, {**BROKEN, **NOT_IMAGES}),
    "evaluate": (run_evaluate, 0, {**BROKEN, **NOT_IMAGES}),
    "predict": (run_predict, 3, BROKEN),
}


@pytest.mark.slow
@pytest.mark.parametrize("command", list(COMMANDS))
def test_corpus_through_each_command(
    command: str, corpus: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    run, exit_code, expected = COMMANDS[command]
    # evaluate and predict need a model: the shared session runs (trained once per session).
    models = request.getfixturevalue("trained_runs") if command in ("evaluate", "predict") else []

    result, used, listed = run(corpus, tmp_path, models)

    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    assert used == USABLE
    for path, word in expected.items():
        assert word in listed[path], (path, listed[path])
    assert "DS_Store" not in result.output and "loop" not in result.output


def test_usable_images_are_upright_rgb(corpus: Path) -> None:
    """The one decoding path (``open_rgb``) that every command uses, on each odd format."""
    from binsort.data.images import open_rgb

    root = corpus
    for rel in (*ODD_FORMATS, f"glass/{UNICODE_NAME}"):
        im = open_rgb(root / rel)
        assert (im.mode, im.size) == ("RGB", (40, 30)), rel
    grey = np.asarray(open_rgb(root / "metal/grey16.png"), dtype=float)
    assert 100 < grey.mean() < 200  # 16-bit scaled to 8, not clipped to white
    rgba = np.asarray(open_rgb(root / "metal/rgba.png"), dtype=float)
    assert rgba.mean() > np.asarray(open_rgb(root / "metal/metal_000.jpg"), dtype=float).mean()
    upright = open_rgb(root / ROTATED)
    assert upright.size == (24, 48)
    assert upright.getpixel((12, 6))[2] > 150 and upright.getpixel((12, 42))[0] > 150


@pytest.mark.parametrize("command", ["resize", "train", "evaluate", "predict"])
def test_empty_class_folder(command: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    root = make_image_folder(tmp_path / "images", per_class=3, tag="_new")
    (root / "trash").mkdir()
    if command == "resize":  # nothing to copy: no folder is made for it
        result = runner.invoke(app, ["resize", str(root), str(tmp_path / "s"), "--size", "16"])
        assert result.exit_code == 0, result.output
        assert "9 written" in result.output and not (tmp_path / "s" / "trash").exists()
    elif command == "train":
        argv = ["train", "--root", str(root), "--out", str(tmp_path / "runs"), *TINY_TRAIN]
        result = runner.invoke(app, argv)
        assert result.exit_code == 1, result.output
        assert "class folder(s) with no usable images: trash" in result.output
        assert len(result.output.strip().splitlines()) == 1
    elif command == "evaluate":
        model = str(request.getfixturevalue("trained_runs")[0].last_checkpoint)
        result = runner.invoke(app, ["evaluate", model, "--root", str(root), "-o", str(tmp_path)])
        assert result.exit_code == 1, result.output  # a class the model does not know
        assert "trash are not among the model's classes" in result.output
        (root / "trash").rmdir()
        for photo in (root / "paper").iterdir():  # a known class with no images: not scored
            photo.unlink()
        argv = ["evaluate", model, "--root", str(root), "-o", str(tmp_path), "--force"]
        result = runner.invoke(app, argv)
        assert result.exit_code == 0, result.output
        assert json.loads((tmp_path / "metrics.json").read_text())["images"] == 6
    else:
        model = str(request.getfixturevalue("trained_runs")[0].last_checkpoint)
        result = runner.invoke(app, ["predict", str(root / "trash"), "--model", model])
        assert result.exit_code == 1, result.output
        assert "no photos found" in result.output
    assert "Traceback" not in result.output
