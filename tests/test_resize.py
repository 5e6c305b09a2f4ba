"""``binsort resize`` and ``binsort.data.resize.resize_folder`` on tiny synthetic folders."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from binsort.cli import app
from binsort.data.resize import output_name, resize_folder, target_size
from binsort.errors import BinsortError
from conftest import make_image_folder

runner = CliRunner()


def run_resize(*args: str):
    return runner.invoke(app, ["resize", *map(str, args)])


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def noise_image(size: tuple[int, int], seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def test_shorter_side_and_aspect_ratio(tmp_path: Path) -> None:
    src = make_image_folder(tmp_path / "src", per_class=2, size=(80, 60))
    noise_image((30, 90)).save(src / "glass" / "tall.jpg")
    noise_image((10, 8)).save(src / "glass" / "tiny.jpg")  # smaller than --size: not upscaled
    dst = tmp_path / "dst"

    result = run_resize(src, dst, "--size", "24", "--workers", "1")

    assert result.exit_code == 0, result.output
    assert "8 written" in result.output
    outputs = sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*") if p.is_file())
    assert outputs == sorted(p.relative_to(src).as_posix() for p in src.rglob("*.jpg"))
    with Image.open(dst / "metal" / "metal_000.jpg") as im:
        assert (im.size, im.mode, im.format) == ((32, 24), "RGB", "JPEG")
    with Image.open(dst / "glass" / "tall.jpg") as im:
        assert im.size == (24, 72)
    with Image.open(dst / "glass" / "tiny.jpg") as im:
        assert im.size == (10, 8)


def test_target_size_and_output_name() -> None:
    assert target_size(4000, 3000, 256) == (341, 256)
    assert target_size(3000, 4000, 256) == (256, 341)
    assert target_size(100, 50, 256) == (100, 50)
    assert target_size(5000, 1, 1) == (5000, 1)
    assert output_name("a.JPG") == "a.JPG"
    assert output_name("a.jpeg") == "a.jpeg"
    assert output_name("a.png") == "a.jpg"
    assert output_name("a.b.webp") == "a.b.jpg"


def test_collisions_ignore_case(tmp_path: Path) -> None:
    src = tmp_path / "src" / "glass"
    src.mkdir(parents=True)
    for name in ("b.webp", "a.png", "a.JPG", "b.bmp"):
        noise_image((30, 30)).save(src / name)

    result = resize_folder(src.parent, tmp_path / "dst", size=20, workers=0)

    assert result.written == 2
    assert result.skipped == [
        ("glass/a.png", "output name glass/a.jpg is already taken by glass/a.JPG"),
        ("glass/b.webp", "output name glass/b.jpg is already taken by glass/b.bmp"),
    ]
    assert sorted(p.name for p in (tmp_path / "dst" / "glass").iterdir()) == ["a.JPG", "b.jpg"]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    src = tmp_path / "src" / "paper"
    src.mkdir(parents=True)
    im = Image.new("RGB", (60, 30), (200, 0, 0))
    im.paste((0, 0, 200), (0, 0, 30, 30))  # left half blue, right half red
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    im.save(src / "rotated.jpg", exif=exif)
    dst = tmp_path / "dst"

    result = resize_folder(src.parent, dst, size=20, workers=0)

    assert (result.written, result.skipped) == (1, [])
    with Image.open(dst / "paper" / "rotated.jpg") as out:
        assert out.size == (20, 40)
        assert out.getexif().get(0x0112) in (None, 1)
        top, bottom = out.getpixel((10, 5)), out.getpixel((10, 35))
    assert top[2] > 150 and top[0] < 80  # the blue half is now on top
    assert bottom[0] > 150 and bottom[2] < 80


def test_png_becomes_jpg_and_collisions_are_reported(tmp_path: Path) -> None:
    src = make_image_folder(tmp_path / "src", per_class=2, fmt="PNG")
    rgba = Image.new("RGBA", (40, 30), (0, 0, 0, 0))
    rgba.save(src / "glass" / "clear.png")
    noise_image((40, 30), 1).save(src / "metal" / "metal_000.jpg")  # same output as the .png
    dst = tmp_path / "dst"

    result = resize_folder(src, dst, size=20, workers=0)

    assert result.written == 7
    assert result.skipped == [
        (
            "metal/metal_000.png",
            "output name metal/metal_000.jpg is already taken by metal/metal_000.jpg",
        )
    ]
    assert not list(dst.rglob("*.png"))
    with Image.open(dst / "glass" / "glass_000.jpg") as im:
        assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (27, 20))
    with Image.open(dst / "glass" / "clear.jpg") as im:
        assert min(im.getpixel((5, 5))) >= 245  # transparency on white
    with (
        Image.open(dst / "metal" / "metal_000.jpg") as im,
        Image.open(src / "metal" / "metal_000.jpg") as original,
    ):
        # The kept file is the resized .jpg source, not the .png.
        expected = np.asarray(original.resize((27, 20)), dtype=np.int16)
        assert np.abs(np.asarray(im, dtype=np.int16) - expected).mean() < 40


def test_rerun_skips_done_files(tmp_path: Path) -> None:
    src = make_image_folder(tmp_path / "src", per_class=2)
    dst = tmp_path / "dst"
    first = run_resize(src, dst, "--size", "16", "--workers", "0")
    assert first.exit_code == 0, first.output
    assert "6 written, 0 already done" in first.output
    old = {p: p.stat().st_mtime_ns for p in dst.rglob("*.jpg")}
    past = 1_000_000_000 * 1_000_000_000
    for p in old:
        os.utime(p, ns=(past, past))

    again = run_resize(src, dst, "--size", "16", "--workers", "0")

    assert again.exit_code == 0, again.output
    assert "0 written, 6 already done" in again.output
    assert all(p.stat().st_mtime_ns == past for p in old)

    forced = run_resize(src, dst, "--size", "16", "--workers", "0", "--overwrite")
    assert forced.exit_code == 0, forced.output
    assert "6 written, 0 already done" in forced.output
    assert all(p.stat().st_mtime_ns != past for p in old)


def test_temp_leftover_is_not_done_and_is_cleaned(tmp_path: Path) -> None:
    src = make_image_folder(tmp_path / "src", classes=("glass",), per_class=2)
    dst = tmp_path / "dst"
    (dst / "glass").mkdir(parents=True)
    # What a run killed mid-write leaves: a partial file under a temporary name of a dead pid.
    leftover = dst / "glass" / ".glass_000.jpg.tmp-999999999"
    leftover.write_bytes(b"\xff\xd8\xff partial")

    result = resize_folder(src, dst, size=16, workers=0)

    assert (result.written, result.already_done, result.cleaned) == (2, 0, 1)
    assert not leftover.exists()
    assert sorted(p.name for p in (dst / "glass").iterdir()) == ["glass_000.jpg", "glass_001.jpg"]
    with Image.open(dst / "glass" / "glass_000.jpg") as im:
        im.load()


def test_bad_files_are_skipped_with_exit_code_2(tmp_path: Path) -> None:
    src = make_image_folder(tmp_path / "src", per_class=2)
    rng = np.random.default_rng(0)
    (src / "glass" / "corrupt.jpg").write_bytes(rng.bytes(500))
    (src / "glass" / "empty.jpg").write_bytes(b"")
    (src / "paper" / "notes.txt").write_text("not a photo")
    (src / "paper" / ".DS_Store").write_bytes(b"\0\0")  # hidden: ignored silently
    (src / ".cache").mkdir()
    noise_image((20, 20)).save(src / ".cache" / "hidden.jpg")
    dst = tmp_path / "dst"

    result = run_resize(src, dst, "--size", "16", "--workers", "0")

    assert result.exit_code == 3, result.output
    assert "6 written" in result.output and "3 skipped" in result.output
    assert "glass/corrupt.jpg" in result.output
    assert "glass/empty.jpg" in result.output
    assert "paper/notes.txt" in result.output and "not an image file" in result.output
    assert "DS_Store" not in result.output and "hidden" not in result.output
    assert "Traceback" not in result.output
    assert len(list(dst.rglob("*.jpg"))) == 6
    assert not (dst / ".cache").exists()


def test_reasons_in_library_result(tmp_path: Path) -> None:
    src = make_image_folder(tmp_path / "src", classes=("glass",), per_class=1)
    (src / "glass" / "empty.jpg").write_bytes(b"")
    (src / "glass" / "notes.txt").write_text("x")

    result = resize_folder(src, tmp_path / "dst", size=16, workers=0)

    assert not result.ok
    assert [path for path, _ in result.skipped] == ["glass/empty.jpg", "glass/notes.txt"]
    reasons = dict(result.skipped)
    assert reasons["glass/notes.txt"] == "not an image file"
    assert reasons["glass/empty.jpg"].startswith("not a readable image")
    assert str(src) not in reasons["glass/empty.jpg"]


@pytest.mark.parametrize("where", ["same", "inside"])
def test_dst_in_src_is_refused(tmp_path: Path, where: str) -> None:
    src = make_image_folder(tmp_path / "src", classes=("glass",), per_class=1)
    before = tree_hashes(src)
    dst = src if where == "same" else src / "small"

    result = run_resize(src, dst, "--size", "16")

    assert result.exit_code == 1, result.output
    assert "error:" in result.output and "source folder" in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert tree_hashes(src) == before


def test_missing_src_and_bad_options_exit_1(tmp_path: Path) -> None:
    src = make_image_folder(tmp_path / "src", classes=("glass",), per_class=1)
    missing = run_resize(tmp_path / "nope", tmp_path / "dst", "--size", "16")
    assert missing.exit_code == 1, missing.output
    assert "does not exist" in missing.output and "Traceback" not in missing.output

    a_file = src / "glass" / "glass_000.jpg"
    not_a_folder = run_resize(a_file, tmp_path / "dst", "--size", "16")
    assert not_a_folder.exit_code == 1, not_a_folder.output

    for option in (["--size", "0"], ["--size", "16", "--quality", "0"]):
        bad = run_resize(src, tmp_path / "dst", *option)
        assert bad.exit_code == 1, bad.output
        assert "Traceback" not in bad.output
    with pytest.raises(BinsortError, match="workers"):
        resize_folder(src, tmp_path / "dst", size=16, workers=-1)
    assert not (tmp_path / "dst").exists()


def test_src_inside_dst_never_writes_into_src(tmp_path: Path) -> None:
    dst = tmp_path / "data"
    src = make_image_folder(dst / "raw", classes=("glass",), per_class=1)
    noise_image((40, 30)).save(src / "glass" / "x.jpg")
    # A class folder named like SRC's own path would map raw/x.jpg onto SRC's glass/x.jpg.
    (src / "raw" / "glass").mkdir(parents=True)
    noise_image((40, 30), 2).save(src / "raw" / "glass" / "x.jpg")
    before = tree_hashes(src)

    result = resize_folder(src, dst, size=16, workers=0)

    assert result.written == 2
    assert result.skipped == [
        ("raw/glass/x.jpg", "output raw/glass/x.jpg would be written inside SRC")
    ]
    assert tree_hashes(src) == before


def test_source_files_unchanged(tmp_path: Path) -> None:
    src = make_image_folder(tmp_path / "src", per_class=3, fmt="PNG")
    make_image_folder(src, per_class=2, seed=1)
    before = tree_hashes(src)

    result = run_resize(src, tmp_path / "dst", "--size", "16", "--workers", "0")

    assert result.exit_code == 3, result.output  # x_000.png and x_000.jpg share an output name
    assert tree_hashes(src) == before


def test_symlink_loop_does_not_hang(tmp_path: Path) -> None:
    src = make_image_folder(tmp_path / "src", classes=("glass",), per_class=1)
    try:
        (src / "glass" / "loop").symlink_to(src, target_is_directory=True)
    except OSError:
        pytest.skip("symlinks not supported here")

    result = resize_folder(src, tmp_path / "dst", size=16, workers=0)

    assert (result.written, result.skipped) == (1, [])


def test_workers_2_matches_workers_1(tmp_path: Path) -> None:
    src = make_image_folder(tmp_path / "src", per_class=4, size=(64, 48))
    (src / "metal" / "broken.jpg").write_bytes(b"nope")
    progress: list[tuple[int, int]] = []

    serial = resize_folder(src, tmp_path / "one", size=20, workers=1)
    parallel = resize_folder(
        src, tmp_path / "two", size=20, workers=2, progress=lambda d, t: progress.append((d, t))
    )

    assert (
        (serial.written, serial.skipped)
        == (parallel.written, parallel.skipped)
        == (
            12,
            [("metal/broken.jpg", serial.skipped[0][1])],
        )
    )
    assert tree_hashes(tmp_path / "one") == tree_hashes(tmp_path / "two")
    assert progress[0] == (0, 13) and progress[-1] == (13, 13)


def test_help_documents_exit_codes() -> None:
    result = runner.invoke(app, ["resize", "--help"])
    assert result.exit_code == 0, result.output
    assert "Exit codes" in result.output and "--quality" in result.output
