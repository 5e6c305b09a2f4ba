"""``binsort predict`` and ``binsort.predict`` with the tiny trained checkpoints."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from binsort.bins import load_bin_map
from binsort.cli import app
from binsort.predict import find_photos, load_model, predict_photos
from conftest import CLASSES, make_image_folder

runner = CliRunner()
PSU_BINS = {"Glass", "Metal", "Mixed Paper"}  # the PSU bins of glass, metal and paper


@pytest.fixture(scope="module")
def checkpoint(trained_runs) -> Path:
    return trained_runs[0].best_checkpoint


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two photos per class in class folders, plus a hidden file and a text file."""
    root = make_image_folder(tmp_path_factory.mktemp("photos") / "photos", per_class=2, seed=5)
    (root / "glass" / ".hidden.jpg").write_bytes(b"not an image")
    (root / "notes.txt").write_text("skipped inside folders")
    return root


@pytest.fixture(scope="module")
def ensemble(trained_runs, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from binsort.models.checkpoint import load_members, save_ensemble

    a, b = (run.best_checkpoint for run in trained_runs)
    path = tmp_path_factory.mktemp("ensemble") / "pair.ensemble"
    return save_ensemble(load_members(a) + load_members(b), path)


def run_predict(*args: object):
    return runner.invoke(app, ["predict", *map(str, args)])


def test_find_photos(photos: Path, tmp_path: Path) -> None:
    skipped: list[tuple[str, str]] = []
    found = list(find_photos([photos], skipped))
    assert len(found) == 6
    assert [(Path(p).name, why) for p, why in skipped] == [("notes.txt", "not an image file name")]
    result = run_predict(photos / "glass", "-m", "nowhere.ckpt")
    assert "left out" not in result.output
    assert all(p.suffix == ".jpg" and not p.name.startswith(".") for p in found)
    # Named explicitly, a file is always tried, whatever its name.
    named = [photos / "notes.txt", tmp_path / "gone.jpg"]
    assert list(find_photos(named)) == named


def test_files_left_out_of_a_folder_are_listed(checkpoint: Path, photos: Path) -> None:
    result = run_predict(photos, "-m", checkpoint)
    assert result.exit_code == 0, result.output
    assert "left out 1 file(s)" in result.stderr and "notes.txt: not an image" in result.stderr


def test_one_photo_table(checkpoint: Path, photos: Path) -> None:
    result = run_predict(photos / "glass" / "glass_000.jpg", "--model", checkpoint)
    assert result.exit_code == 0, result.output
    assert "glass_000.jpg" in result.output
    assert checkpoint.name in result.output  # which model answered
    assert any(name in result.output for name in PSU_BINS)
    assert "1 classified, 0 failed" in result.output


def test_folder_table(checkpoint: Path, photos: Path) -> None:
    result = run_predict(photos, "--model", checkpoint, "--min-confidence", "0")
    assert result.exit_code == 0, result.output
    assert "6 classified, 0 failed" in result.output
    assert ".hidden" not in result.output and "notes.txt" not in result.stdout
    assert all(f"{name}_001.jpg" in result.output for name in CLASSES)
    assert any(name in result.output for name in CLASSES)
    assert any(name in result.output for name in PSU_BINS)


def test_csv(checkpoint: Path, photos: Path) -> None:
    result = run_predict(photos, "-m", checkpoint, "--format", "csv", "--top-k", "2")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))  # stdout holds nothing else
    assert len(rows) == 6
    assert "top2_probability" in rows[0] and "top3_class" not in rows[0]
    for row in rows:
        assert row["class"] in CLASSES and row["bin"] in PSU_BINS and row["error"] == ""
        assert row["top1_class"] == row["class"]
        assert 1 / 3 <= float(row["probability"]) <= 1
        assert float(row["top1_probability"]) >= float(row["top2_probability"])
    assert "6 classified" in result.stderr and checkpoint.name in result.stderr


def test_json_to_file(checkpoint: Path, photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    result = run_predict(photos, "-m", checkpoint, "--top-k", "5", "--output", out)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    rows = json.loads(out.read_text())
    assert len(rows) == 6
    for row in rows:
        assert set(row) >= {"path", "class", "probability", "bin", "bin_note", "uncertain"}
        assert len(row["top"]) == 3  # --top-k beyond the class count gives every class
        assert sum(t["probability"] for t in row["top"]) == pytest.approx(1, abs=1e-4)
        assert row["top"][0] == {"class": row["class"], "probability": row["probability"]}
        assert row["error"] is None


def test_output_never_replaces_a_file_unasked(
    checkpoint: Path, photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "rows.csv"
    out.write_text("the user's own notes")
    result = run_predict(photos, "-m", checkpoint, "-o", out)
    assert result.exit_code == 1 and f"{out} exists; pass --force" in result.output
    assert out.read_text() == "the user's own notes"
    result = run_predict(photos, "-m", checkpoint, "-o", out, "--force")
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("path,")
    # A photo being classified is never the output, --force or not.
    photo = tmp_path / "photo.jpg"
    photo.write_bytes((photos / "glass" / "glass_000.jpg").read_bytes())
    before = photo.read_bytes()
    result = run_predict(photo, "-m", checkpoint, "-f", "json", "-o", photo, "--force")
    assert result.exit_code == 1 and "is one of the photos to classify" in result.output
    assert photo.read_bytes() == before
    for bad, message in [(tmp_path, "is a folder"), (tmp_path / "no" / "r.csv", "no such folder")]:
        result = run_predict(photos, "-m", checkpoint, "-f", "csv", "-o", bad)
        assert result.exit_code == 1 and message in result.output, result.output
        assert "Traceback" not in result.output


def test_uncertain_shows_two_bins(checkpoint: Path, photos: Path) -> None:
    args = (photos / "metal", "-m", checkpoint, "--min-confidence", "0.99")
    table = run_predict(*args)
    assert table.exit_code == 0, table.output
    assert "not sure: " in table.output and " or " in table.output
    rows = json.loads(run_predict(*args, "-f", "json").stdout)
    assert all(row["uncertain"] for row in rows)
    assert all(row["other_bin"] in PSU_BINS - {row["bin"]} for row in rows)
    sure = json.loads(run_predict(*args[:3], "--min-confidence", "0", "-f", "json").stdout)
    assert not any(row["uncertain"] for row in sure)
    assert all(row["other_bin_probability"] <= row["bin_probability"] for row in sure)


def test_bad_files_among_good_ones(checkpoint: Path, photos: Path, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes((photos / "glass" / "glass_000.jpg").read_bytes()[:60])  # truncated
    missing = tmp_path / "missing.jpg"
    text = tmp_path / "readme.txt"
    text.write_text("hello")
    good = photos / "paper"
    args = [corrupt, good, missing, text, "-m", checkpoint, "--batch", "2", "--workers", "2"]

    result = run_predict(*args, "-f", "json")
    assert result.exit_code == 3, result.output
    rows = {Path(row["path"]).name: row for row in json.loads(result.stdout)}
    assert len(rows) == 5
    assert "not a readable image" in rows["corrupt.jpg"]["error"]
    assert "not a readable image" in rows["readme.txt"]["error"]
    assert rows["missing.jpg"]["error"] == "no such file"
    assert rows["missing.jpg"]["class"] is None and rows["missing.jpg"]["top"] == []
    assert all(rows[f"paper_00{i}.jpg"]["class"] in CLASSES for i in (0, 1))

    table = run_predict(*args)
    assert table.exit_code == 3, table.output
    assert "no such file" in table.output and "2 classified, 3 failed" in table.output
    assert "Traceback" not in table.output


def test_ensemble_as_model(ensemble: Path, photos: Path) -> None:
    result = run_predict(photos, "--model", ensemble, "-f", "csv")
    assert result.exit_code == 0, result.output
    assert len(list(csv.DictReader(io.StringIO(result.stdout)))) == 6
    assert "ensemble of 2" in result.stderr and ensemble.name in result.stderr


def test_library_streams_and_tta(checkpoint: Path, photos: Path) -> None:
    model = load_model(checkpoint)
    bin_map = load_bin_map("psu", classes=model.classes)
    rows = predict_photos(find_photos([photos]), model, bin_map, batch=4, workers=0, tta="flip")
    assert iter(rows) is rows  # a generator: rows come batch by batch
    first = next(rows)
    assert first.error is None and first.bin.name in PSU_BINS
    assert len(list(rows)) == 5


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--top-k", "0"], "--top-k must be at least 1"),
        (["--min-confidence", "1.5"], "--min-confidence must be between 0 and 1"),
        (["--tta", "spin"], "--tta must be one of none, flip, flip5crop"),
        (["--format", "xml"], "--format must be one of table, csv, json"),
        (["--output", "x.txt"], "--output needs --format csv or json"),
        (["--batch", "0"], "--batch must be at least 1"),
    ],
)
def test_bad_options(checkpoint: Path, photos: Path, option: list[str], message: str) -> None:
    result = run_predict(photos, "-m", checkpoint, *option)
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output


def test_bad_model_and_no_model(photos: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("binsort.predict.default_model_path", lambda: None)  # a build without
    result = run_predict(photos)
    assert result.exit_code == 1, result.output
    assert "no --model given, and this build of binsort has no default model" in result.output
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    result = run_predict(photos, "-m", junk)
    assert result.exit_code == 1 and "refused to load" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


def test_no_photos(checkpoint: Path, tmp_path: Path) -> None:
    result = run_predict(tmp_path, "-m", checkpoint)
    assert result.exit_code == 1 and "no photos found" in result.output, result.output


def test_classes_that_share_a_bin_add_up() -> None:
    from binsort.predict import _decide

    psu = load_bin_map("psu")
    classes = ["cardboard", "glass", "paper"]
    bins = [psu.bin_for(c) for c in classes]
    # 45% paper + 44% cardboard: unsure of the class, sure of the bin (Mixed Paper, 0.89).
    sure = _decide("a.jpg", [0.44, 0.11, 0.45], classes, bins, top_k=2, min_confidence=0.5)
    assert (sure.label, sure.bin.name, sure.uncertain) == ("paper", "Mixed Paper", False)
    assert sure.bin_probability == pytest.approx(0.89)
    assert sure.top == [("paper", 0.45), ("cardboard", 0.44)]
    # Glass is the likeliest class (0.45), Mixed Paper the likeliest bin (0.2 + 0.35).
    unsure = _decide("b.jpg", [0.2, 0.45, 0.35], classes, bins, top_k=1, min_confidence=0.6)
    assert unsure.label == "glass" and unsure.uncertain
    assert (unsure.bin.name, unsure.other_bin.name) == ("Mixed Paper", "Glass")
    assert unsure.bin_probability == pytest.approx(0.55)
    assert unsure.other_bin_probability == pytest.approx(0.45)
    assert unsure.bin == psu.bin_for("paper")  # the note of the likelier class of that bin


def test_a_run_folder_is_a_model(trained_runs, photos: Path) -> None:
    """-m RUN_DIR answers with the run's best checkpoint."""
    run = trained_runs[0].run_dir
    by_folder = run_predict(photos / "glass", "-m", run, "-f", "json")
    assert by_folder.exit_code == 0, by_folder.output
    by_file = run_predict(photos / "glass", "-m", run / "checkpoints" / "best.ckpt", "-f", "json")
    strip = [{k: v for k, v in r.items() if k != "model"} for r in json.loads(by_file.stdout)]
    assert [{k: v for k, v in r.items() if k != "model"} for r in json.loads(by_folder.stdout)] == (
        strip
    )


def test_csv_and_json_say_which_model_and_bins_answered(checkpoint: Path, photos: Path) -> None:
    import csv as csv_module
    import hashlib

    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    rows = json.loads(run_predict(photos / "glass", "-m", checkpoint, "-f", "json").stdout)
    assert all(r["model_sha256"] == digest and r["bin_map"] == "psu" for r in rows)
    assert all(r["model_file"] == str(checkpoint) and "resnet18" in r["model"] for r in rows)
    text = run_predict(photos / "glass", "-m", checkpoint, "-f", "csv").stdout
    table = list(csv_module.DictReader(text.splitlines()))
    assert table and all(r["model_sha256"] == digest for r in table)
