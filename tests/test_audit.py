"""binsort audit: planted duplicates, leaks, broken files and wrong labels are found, clean
photos are not flagged, and the audited folder is left byte for byte as it was."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageEnhance
from typer.testing import CliRunner

from binsort.audit import COLUMNS, audit
from binsort.cli import app
from binsort.config import NEAR_THRESHOLD
from conftest import make_image_folder

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (hidden ones too) and the SHA-256 of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def plant(root: Path) -> dict[str, str]:
    """Plant one of each problem in ``root`` (made by make_image_folder); returns their names."""
    src = root / "glass" / "glass_000.jpg"
    # An exact copy under another name in another class.
    shutil.copy(src, root / "metal" / "copied.jpg")
    # A PNG copy of a JPEG: other bytes, same pixels.
    Image.open(root / "paper" / "paper_001.jpg").save(root / "paper" / "as_png.png")
    # A resized, re-encoded copy, and a brightened one.
    im = Image.open(root / "glass" / "glass_002.jpg")
    big = im.resize((im.width * 3, im.height * 3), Image.BICUBIC)
    big.save(root / "glass" / "resized.jpg", quality=70)
    ImageEnhance.Brightness(Image.open(root / "glass" / "glass_003.jpg")).enhance(1.15).save(
        root / "glass" / "brighter.jpg", quality=90
    )
    # A copy with 3 % cut off each side.
    im = Image.open(root / "metal" / "metal_002.jpg")
    im.crop((2, 1, im.width - 2, im.height - 1)).save(root / "metal" / "cropped.jpg")
    # A truncated JPEG, a text file, a tiny image.
    data = (root / "metal" / "metal_000.jpg").read_bytes()
    (root / "metal" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (root / "metal" / "notes.txt").write_text("not a photo")
    Image.new("RGB", (20, 12), (150, 150, 160)).save(root / "metal" / "tiny.png")
    # Photos in the wrong class: a paper photo filed as glass, a metal one as paper.
    shutil.move(root / "paper" / "paper_007.jpg", root / "glass" / "paper_007.jpg")
    shutil.move(root / "metal" / "metal_007.jpg", root / "paper" / "metal_007.jpg")
    return {"moved": "paper_007.jpg metal_007.jpg"}


def folder(tmp_path: Path, per_class: int = 8) -> Path:
    return make_image_folder(tmp_path / "photos", per_class=per_class, size=(64, 48), seed=3)


def names(findings, issue: str) -> set[tuple[str, str | None]]:
    return {
        (Path(f.path).name, Path(f.other).name if f.other else None)
        for f in findings
        if f.issue == issue
    }


def test_duplicates_and_broken_files_are_found(tmp_path: Path) -> None:
    root = folder(tmp_path)
    plant(root)
    before = snapshot(root)
    result = audit([root], labels=False)
    assert snapshot(root) == before
    conflicts = names(result.findings, "label_conflict")
    # The exact copy is in another class: one of the two labels is wrong.
    assert ("copied.jpg", "glass_000.jpg") in {tuple(sorted(p)) for p in conflicts}
    dupes = {tuple(sorted(p)) for p in names(result.findings, "duplicate")}
    assert ("as_png.png", "paper_001.jpg") in dupes
    near = {tuple(sorted(p)) for p in names(result.findings, "near_duplicate")}
    assert ("glass_002.jpg", "resized.jpg") in near
    assert ("brighter.jpg", "glass_003.jpg") in near
    assert ("cropped.jpg", "metal_002.jpg") in near
    # No clean photo is paired with anything it was not copied from.
    planted = {"copied.jpg", "as_png.png", "resized.jpg", "brighter.jpg", "cropped.jpg"}
    pairs = [f for f in result.findings if f.other is not None]
    assert len(pairs) == 5
    assert all({Path(f.path).name, Path(f.other).name} & planted for f in pairs)
    unreadable = {Path(f.path).name: f.note for f in result.findings if f.issue == "unreadable"}
    assert set(unreadable) == {"truncated.jpg", "notes.txt"}
    odd = {Path(f.path).name: f.note for f in result.findings if f.issue == "odd"}
    assert list(odd) == ["tiny.png"] and "tiny" in odd["tiny.png"]
    assert result.small_classes == ["glass", "metal", "paper"]  # 8-10 photos each


def test_pairs_across_a_split_are_leaks(tmp_path: Path) -> None:
    root = folder(tmp_path)
    shutil.copy(root / "glass" / "glass_001.jpg", root / "glass" / "again.jpg")
    split = {"root": str(root), "seed": 0, "train": ["glass/glass_001.jpg"], "val": []}
    split["test"] = ["glass/again.jpg"]
    (tmp_path / "split.json").write_text(json.dumps(split))
    result = audit([root], labels=False, split=tmp_path / "split.json")
    (leak,) = [f for f in result.findings if f.issue == "leak"]
    assert {leak.part, leak.other_part} == {"train", "test"}
    assert [f for f in result.findings if f.other is not None] == [leak]


def test_second_audit_hashes_only_new_photos(tmp_path: Path) -> None:
    root = folder(tmp_path)
    first = audit([root], labels=False)
    assert (first.hashed, first.cached) == (24, 0)
    make_image_folder(root, per_class=1, size=(64, 48), seed=9, tag="_new")
    second = audit([root], labels=False)
    assert (second.hashed, second.cached) == (3, 24)
    # The cache lives outside the folder: nothing new there but the photos added above.
    assert not [p for p in root.rglob(".*")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """A tiny run on clean coloured photos, and a folder of new photos, two of them filed in
    the wrong class: the model separates the classes by colour."""
    from binsort.config import TrainConfig
    from binsort.train import fit

    base = tmp_path_factory.mktemp("audit_run")
    train_root = make_image_folder(base / "train", per_class=10, size=(36, 36), seed=1)
    cfg = TrainConfig.from_options(
        root=str(train_root), model="resnet18", weights=None, input_size=16, epochs=3,
        batch=4, workers=0, split=0.2, test_split=0.0, seed=1, out=str(base / "runs"),
        lr=3e-3,
    )  # fmt: skip
    return fit(cfg), train_root


def test_wrong_labels_are_found_with_held_out_photos(trained, tmp_path: Path) -> None:
    run, train_root = trained
    root = make_image_folder(tmp_path / "new", per_class=12, size=(36, 36), seed=5, tag="_new")
    shutil.move(root / "paper" / "paper_new_003.jpg", root / "glass" / "paper_new_003.jpg")
    shutil.move(root / "glass" / "glass_new_004.jpg", root / "metal" / "glass_new_004.jpg")
    before = snapshot(root)
    result = audit([root], model=run.run_dir, workers=1)
    assert snapshot(root) == before
    flagged = {Path(f.path).name: f for f in result.findings if f.issue == "label"}
    assert {"paper_new_003.jpg", "glass_new_004.jpg"} <= set(flagged)
    assert flagged["paper_new_003.jpg"].suggested == "paper"
    assert flagged["glass_new_004.jpg"].suggested == "glass"
    # A three-step model is unsure of some clean photos too (test_label_issues_... checks
    # that a model that separates the classes flags only the moved photos).
    # At 16 px a few of these synthetic photos look like noise to predict's screen.
    assert result.left_out_trained == 0 and 30 <= result.label_checked <= 36


def test_photos_the_model_trained_on_are_left_out(trained) -> None:
    run, train_root = trained
    before = snapshot(train_root)
    result = audit([train_root], model=run.run_dir, workers=1)
    split = json.loads((run.run_dir / "split.json").read_text())
    assert result.left_out_trained == len(split["train"])
    assert 0 < result.label_checked <= 30 - result.left_out_trained
    assert any("left out of the label check" in n for n in result.notes)
    assert snapshot(train_root) == before


def test_cli_refuses_a_folder_the_model_trained_on_entirely(trained, tmp_path: Path) -> None:
    run, train_root = trained
    split = json.loads((run.run_dir / "split.json").read_text())
    only = tmp_path / "trained_only"
    for rel in split["train"]:
        (only / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(train_root / rel, only / rel)
    result = runner.invoke(app, ["audit", str(only), "--model", str(run.run_dir)])
    assert result.exit_code == 1
    assert "in-sample probabilities hide label errors" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_cli_outputs(trained, tmp_path: Path) -> None:
    run, _ = trained
    root = folder(tmp_path)
    plant(root)
    before = snapshot(root)
    result = runner.invoke(app, ["audit", str(root), "--model", str(run.run_dir), "-f", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert tuple(rows[0]) == COLUMNS
    assert {"path", "issue", "other", "label", "suggested", "score"} <= set(COLUMNS)
    assert {r["issue"] for r in rows} >= {"label_conflict", "duplicate", "near_duplicate"}
    result = runner.invoke(app, ["audit", str(root), "--no-labels", "-f", "json"])
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert records and all(tuple(r) == COLUMNS for r in records)
    out = tmp_path / "report"
    result = runner.invoke(app, ["audit", str(root), "--no-labels", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "label_conflict" in result.output
    written = {p.name for p in out.iterdir()}
    assert written == {"findings.csv", "findings.json", "suspects.png", "audit.html"}
    assert "copied.jpg" in (out / "audit.html").read_text()
    assert Image.open(out / "suspects.png").size[0] > 0
    # A non-empty --out needs --force.
    again = runner.invoke(app, ["audit", str(root), "--no-labels", "--out", str(out)])
    assert again.exit_code == 1 and "--force" in again.output
    assert snapshot(root) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "missing.ckpt"], "missing.ckpt"),
        (["--no-labels", "--out", "{root}/glass/report"], "audit never writes there"),
        (["--no-labels", "--split", "nothing.json"], "nothing.json"),
    ],
)
def test_cli_errors_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    root = folder(tmp_path, per_class=2)
    args = [a.replace("{root}", str(root)) for a in args]
    result = runner.invoke(app, ["audit", str(root), *args])
    assert result.exit_code == 1, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_cli_refuses_classes_the_model_does_not_know(trained, tmp_path: Path) -> None:
    run, _ = trained
    root = make_image_folder(tmp_path / "x", classes=("glass", "cardboard"), per_class=2)
    result = runner.invoke(app, ["audit", str(root), "--model", str(run.run_dir)])
    assert result.exit_code == 1
    assert "cardboard" in result.output and "glass, metal, paper" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_cli_default_threshold_is_the_library_one() -> None:
    import inspect

    from binsort.cli.audit import audit as command

    assert inspect.signature(command).parameters["threshold"].default == NEAR_THRESHOLD


def test_label_issues_flag_only_the_moved_photos() -> None:
    import numpy as np

    from binsort.audit.labels import label_issues

    labels = np.repeat([0, 1, 2], 20)
    truth = labels.copy()
    truth[[3, 25]] = [2, 0]  # two photos filed in the wrong class
    # A model that separates the classes: every photo, moved or not, at 0.9 for its class.
    probs = np.full((60, 3), 0.05)
    probs[np.arange(60), truth] = 0.9
    verdict = label_issues(labels, probs)
    assert np.flatnonzero(verdict.flagged).tolist() == [3, 25]
    assert verdict.suggested[[3, 25]].tolist() == [2, 0]
    assert verdict.quality[3] < 0.1
