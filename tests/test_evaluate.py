"""``binsort evaluate`` and ``binsort.evaluate`` on the tiny trained runs of conftest."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from binsort.candidates import display_names
from binsort.cli import app
from binsort.errors import BinsortError
from binsort.evaluate import evaluate
from binsort.models.checkpoint import load_members, save_ensemble
from binsort.reporting import FIGURES, top_losses, write_outputs
from conftest import make_image_folder

runner = CliRunner()


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder no run trained on (another root, so the leakage guard stays quiet)."""
    return make_image_folder(
        tmp_path_factory.mktemp("held_out") / "images",
        per_class=3,
        size=(36, 36),
        seed=7,
        tag="_held",
    )


def run_evaluate(*args: object):
    return runner.invoke(app, ["evaluate", *map(str, args)])


def test_root_writes_table_report_json_and_figures(
    trained_runs: list, held_out: Path, tmp_path: Path
) -> None:
    ckpts = [r.last_checkpoint for r in trained_runs]
    out = tmp_path / "eval"
    result = run_evaluate(*ckpts, "--root", held_out, "--ensemble", "--out", out)
    assert result.exit_code == 0, result.output
    assert "weighted average" in result.output
    assert "ensemble" in result.output and "Classification report: ensemble" in result.output
    assert "weighted avg" in result.output and "macro avg" in result.output
    # Two runs' last.ckpt: the names show enough of the path to tell them apart.
    assert "seed1/" in result.output and "seed2/" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images"] == 9 and metrics["classes"] == ["glass", "metal", "paper"]
    assert len(metrics["models"]) == 2 and metrics["report_model"] == "ensemble"
    for entry in [*metrics["models"], metrics["ensemble"]]:
        assert set(entry["precision"]) == {"weighted", "macro"}
        assert 0 <= entry["accuracy"] <= 1 and 0 <= entry["ece"] <= 1
        assert sum(map(sum, entry["confusion_matrix"])) == 9
        assert set(entry["per_class"]["glass"]) == {"precision", "recall", "f1", "support"}
        assert set(entry["roc_auc"]) == {"glass", "metal", "paper"}
        assert entry["images_per_second"] > 0
    assert metrics["models"][0]["parameters"] > 1_000_000
    # How far to trust it: each accuracy's interval, and each model against the first, photo
    # by photo (never more disagreements than images; none for the first model itself).
    assert "95 % interval" in result.output and "1 vs 0: gains" in result.output
    for entry in [*metrics["models"], metrics["ensemble"]]:
        low, high = entry["accuracy_interval"]
        assert 0 <= low <= entry["accuracy"] <= high <= 1
    assert metrics["models"][0]["against_first"] is None
    for entry in (metrics["models"][1], metrics["ensemble"]):
        d = entry["against_first"]
        assert d["gains"] + d["losses"] <= 9 and 0 < d["p_value"] <= 1
    for name in FIGURES:
        assert (out / name).stat().st_size > 1000, name


def test_split_scores_the_recorded_test_list(trained_runs: list, tmp_path: Path) -> None:
    run = trained_runs[0]
    result = run_evaluate(
        run.best_checkpoint, "--split", run.run_dir, "--out", tmp_path, "--average", "macro"
    )
    assert result.exit_code == 0, result.output
    assert "macro average" in result.output
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["source"] == "split test list"
    assert metrics["images"] == run.test_size
    # A checkpoint works as --split too.
    args = ("-o", tmp_path, "--force")  # the same folder again
    result = run_evaluate(run.best_checkpoint, "--split", run.best_checkpoint, *args)
    assert result.exit_code == 0, result.output
    # So does the split record alone, copied away from its run (docs/trashnet-split.json).
    record = tmp_path / "copied-split.json"
    record.write_text((Path(run.run_dir) / "split.json").read_text())
    copied = tmp_path / "copied"
    result = run_evaluate(run.best_checkpoint, "--split", record, "-o", copied)
    assert result.exit_code == 0, result.output
    again = json.loads((copied / "metrics.json").read_text())
    assert again["images"] == metrics["images"]
    for key in ("accuracy", "nll", "confusion_matrix"):
        assert again["models"][0][key] == metrics["models"][0][key], key
    missing = run_evaluate(run.best_checkpoint, "--split", tmp_path / "none.json", *args)
    assert missing.exit_code == 1 and "none.json: no such file" in missing.output
    assert "Traceback" not in missing.output


def test_part_val_scores_the_recorded_validation_list(
    trained_runs: list, held_out: Path, tmp_path: Path
) -> None:
    run = trained_runs[0]
    result = run_evaluate(
        run.best_checkpoint, "--split", run.run_dir, "--part", "val", "-o", tmp_path
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    split = json.loads((Path(run.run_dir) / "split.json").read_text())
    assert metrics["source"] == "split val list"
    assert metrics["images"] == len(split["val"]) and split["val"] != split["test"]
    # Validation images are also what --calibrate fits on: scoring them too is refused.
    again = ("-o", tmp_path, "--force")
    both = run_evaluate(
        run.best_checkpoint, "--split", run.run_dir, "--part", "val", "--calibrate", *again
    )
    assert both.exit_code == 1 and "Traceback" not in both.output
    folder = run_evaluate(run.best_checkpoint, "--root", held_out, "--part", "val", *again)
    assert folder.exit_code == 1 and "needs --split" in folder.output


def test_ensemble_of_identical_members_equals_the_member(
    trained_runs: list, held_out: Path
) -> None:
    ckpt = trained_runs[0].last_checkpoint
    result = evaluate([ckpt, ckpt], root=held_out, ensemble=True)
    one, ens = result.rows[0], result.ensemble
    assert ens is not None
    for key in ("accuracy", "ece", "nll"):
        assert getattr(ens, key) == pytest.approx(getattr(one, key))
    for key in ("precision", "recall", "f1"):
        assert getattr(ens, key) == pytest.approx(getattr(one, key))
    assert ens.confusion_matrix == one.confusion_matrix


def test_ensemble_file_members_are_weighted(
    trained_runs: list, held_out: Path, tmp_path: Path
) -> None:
    a, b = (load_members(r.last_checkpoint)[0] for r in trained_runs)
    save_ensemble([a, a, b], tmp_path / "ens.pt")
    result = evaluate([tmp_path / "ens.pt"], root=held_out, ensemble=True)
    assert [r.weight for r in result.rows] == [2, 1]  # the repeat is run once, counted twice
    assert result.ensemble is not None and result.ensemble.arch == "3 members"


def test_tta_flip_and_report_model(trained_runs: list, held_out: Path, tmp_path: Path) -> None:
    ckpts = [r.last_checkpoint for r in trained_runs]
    args = ["--root", held_out, "--tta", "flip", "--report-model", 1, "-o", tmp_path]
    result = run_evaluate(*ckpts, *args)
    assert result.exit_code == 0, result.output
    assert "TTA flip" in result.output
    assert json.loads((tmp_path / "metrics.json").read_text())["tta"] == "flip"
    result = run_evaluate(*ckpts, "--root", held_out, "--report-model", 5, "-o", tmp_path / "b")
    assert result.exit_code == 1 and "--report-model" in result.output


def test_calibrate_on_the_split_validation_list(trained_runs: list, tmp_path: Path) -> None:
    run = trained_runs[0]
    args = ["--split", run.run_dir, "--calibrate", "--ensemble", "-o", tmp_path]
    result = run_evaluate(run.last_checkpoint, *args)
    assert result.exit_code == 0, result.output
    assert "ECE pre" in result.output
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    model = metrics["models"][0]
    assert metrics["calibrated"] and model["temperature"] != 1.0
    assert metrics["source"] == "split test list"
    assert model["ece_before"] is not None and metrics["ensemble"]["ece_before"] is not None
    # The ensemble row's T is the factor its members' temperatures share; one member at its
    # own fitted temperature needs none.
    assert metrics["ensemble"]["temperature"] == pytest.approx(1.0, abs=0.02)


def test_calibrate_needs_images(trained_runs: list, held_out: Path) -> None:
    with pytest.raises(BinsortError, match="--calibration-root"):
        evaluate([trained_runs[0].last_checkpoint], root=held_out, calibrate=True)
    # Calibrating on the evaluated images themselves is refused.
    with pytest.raises(BinsortError, match="calibration image"):
        evaluate(
            [trained_runs[0].last_checkpoint],
            root=held_out,
            calibrate=True,
            calibration_root=held_out,
        )


def test_leakage_guard(trained_runs: list, tmp_path: Path) -> None:
    run = trained_runs[0]
    root = load_members(run.last_checkpoint)[0].split["root"]
    result = run_evaluate(run.last_checkpoint, "--root", root, "-o", tmp_path)
    assert result.exit_code == 1, result.output
    assert "were used to train" in result.output and "e.g." in result.output
    assert "Traceback" not in result.output
    result = run_evaluate(run.last_checkpoint, "--root", root, "--allow-overlap", "-o", tmp_path)
    assert result.exit_code == 0, result.output
    assert "WARNING" in result.output
    assert json.loads((tmp_path / "metrics.json").read_text())["warnings"]


def test_leakage_guard_sees_copies_of_the_training_folder(
    trained_runs: list, tmp_path: Path
) -> None:
    """A copy under another root, and a resized copy with another extension, hold the same
    training photos: both are refused."""
    import shutil

    from binsort.data.resize import resize_folder

    run = trained_runs[0]
    root = Path(load_members(run.last_checkpoint)[0].split["root"])
    copy = shutil.copytree(root, tmp_path / "copy")
    result = run_evaluate(run.last_checkpoint, "--root", copy, "-o", tmp_path / "a")
    assert result.exit_code == 1 and "were used to train" in result.output, result.output
    png = tmp_path / "png"
    for path in copy.rglob("*.jpg"):
        (png / path.parent.name).mkdir(parents=True, exist_ok=True)
        Image.open(path).save(png / path.parent.name / (path.stem + ".png"))
    resized = tmp_path / "resized"
    resize_folder(png, resized, 24)
    result = run_evaluate(run.last_checkpoint, "--root", resized, "-o", tmp_path / "b")
    assert result.exit_code == 1 and "were used to train" in result.output, result.output


def test_different_class_lists_are_refused(
    trained_runs: list, held_out: Path, tmp_path: Path
) -> None:
    member = load_members(trained_runs[0].last_checkpoint)[0]
    other = replace(member, classes=["a", "b", "c"], hparams={**member.hparams})
    other.hparams["classes"] = ["a", "b", "c"]
    save_ensemble([other], tmp_path / "other.pt")
    result = run_evaluate(member.path, tmp_path / "other.pt", "--root", held_out, "-o", tmp_path)
    assert result.exit_code == 1, result.output
    assert "different class lists" in result.output and "Traceback" not in result.output


def test_not_a_checkpoint_is_refused(held_out: Path, tmp_path: Path) -> None:
    bogus = tmp_path / "model.ckpt"
    bogus.write_text("not a checkpoint")
    result = run_evaluate(bogus, "--root", held_out, "-o", tmp_path)
    assert result.exit_code == 1, result.output
    assert "model.ckpt" in result.output and "Traceback" not in result.output


def test_folder_problems(trained_runs: list, tmp_path: Path) -> None:
    ckpt = trained_runs[0].last_checkpoint
    root = make_image_folder(tmp_path / "imgs", classes=("glass", "metal", "wood"), per_class=2)
    result = run_evaluate(ckpt, "--root", root, "-o", tmp_path / "e")
    assert result.exit_code == 1 and "wood" in result.output
    # An unreadable image is left out and listed; a missing class folder is fine.
    root = make_image_folder(tmp_path / "ok", classes=("glass", "paper"), per_class=2, tag="_new")
    (root / "glass" / "broken.jpg").write_bytes(b"not a jpeg")
    result = run_evaluate(ckpt, "--root", root, "-o", tmp_path / "e")
    assert result.exit_code == 0, result.output
    assert "broken.jpg" in result.output
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["images"] == 4


def test_split_without_test_images(trained_runs: list, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    split = json.loads((trained_runs[0].run_dir / "split.json").read_text())
    (run_dir / "split.json").write_text(json.dumps({**split, "test": []}))
    result = run_evaluate(trained_runs[0].last_checkpoint, "--split", run_dir, "-o", tmp_path)
    assert result.exit_code == 1 and "no test images" in result.output


def test_write_outputs_with_a_single_model(trained_runs: list, held_out: Path, tmp_path: Path):
    result = evaluate([trained_runs[0].last_checkpoint], root=held_out)
    assert result.report_index == 0 and result.ensemble is None
    written = write_outputs(result, tmp_path / "out")
    assert {p.name for p in written} == {"metrics.json", *FIGURES}


def test_display_names() -> None:
    paths = [Path("runs/a/v0/last.ckpt"), Path("runs/b/v0/last.ckpt"), Path("x/best.ckpt")]
    assert display_names(paths) == ["a/v0/last.ckpt", "b/v0/last.ckpt", "x/best.ckpt"]
    assert display_names([Path("m.ckpt"), Path("m.ckpt")]) == ["m.ckpt (0)", "m.ckpt (1)"]


def test_out_keeps_an_earlier_evaluation_without_force(
    trained_runs: list, held_out: Path, tmp_path: Path
) -> None:
    ckpt = trained_runs[0].last_checkpoint
    out = tmp_path / "eval"
    assert run_evaluate(ckpt, "--root", held_out, "-o", out).exit_code == 0
    (out / "metrics.json").write_text("mine")
    again = run_evaluate(ckpt, "--root", held_out, "-o", out)
    assert again.exit_code == 1 and "--force" in again.output and "Traceback" not in again.output
    assert (out / "metrics.json").read_text() == "mine"
    forced = run_evaluate(ckpt, "--root", held_out, "-o", out, "--force")
    assert forced.exit_code == 0 and json.loads((out / "metrics.json").read_text())["images"]


def test_sample_grid_shows_the_highest_losses_first() -> None:
    labels = torch.tensor([0, 1, 1, 0])
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.05, 0.95], [0.01, 0.99]])
    # Image 3 is the most confidently wrong, then image 1 (wrong, less sure), then the rights.
    assert top_losses(probs, labels, 3) == [3, 1, 0]


def test_a_model_of_two_folders_is_guarded_on_each(two_folder_run, tmp_path: Path) -> None:
    """Photos of either folder it trained on are refused, from that folder alone too."""
    run, a, b = two_folder_run
    assert load_members(run.last_checkpoint)[0].classes == ["glass", "landfill", "metal", "paper"]
    result = run_evaluate(run.last_checkpoint, "--root", b, "-o", tmp_path / "b")
    assert result.exit_code == 1, result.output
    assert "were used to train" in result.output and "e.g. landfill/" in result.output
    result = run_evaluate(run.last_checkpoint, "--root", a, "--root", b, "-o", tmp_path / "ab")
    assert result.exit_code == 1 and "were used to train" in result.output, result.output
    assert f"e.g. {a}/" in result.output  # a photo of several folders is named by its path
    args = ("--root", b, "--allow-overlap", "-o", tmp_path / "c")
    result = run_evaluate(run.last_checkpoint, *args)
    assert result.exit_code == 0 and "WARNING" in result.output, result.output


def test_two_folders_are_scored_as_one_set(two_folder_run, tmp_path: Path) -> None:
    run, _, _ = two_folder_run
    held_a = make_image_folder(tmp_path / "ha", per_class=2, size=(36, 36), tag="_ha")
    held_b = make_image_folder(
        tmp_path / "hb", ("paper", "landfill"), per_class=3, size=(36, 36), tag="_hb"
    )
    out = tmp_path / "out"
    result = run_evaluate(run.last_checkpoint, "--root", held_a, "--root", held_b, "-o", out)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images"] == 12 and metrics["roots"] == [str(held_a), str(held_b)]
    support = {c: v["support"] for c, v in metrics["models"][0]["per_class"].items()}
    assert support == {"glass": 2, "landfill": 3, "metal": 2, "paper": 5}


def test_the_split_of_two_folders_is_read_back(two_folder_run, tmp_path: Path) -> None:
    run, a, b = two_folder_run
    split = json.loads((Path(run.run_dir) / "split.json").read_text())
    assert {p.split(":")[0] for p in split["test"]} == {"0", "1"}
    result = evaluate([run.last_checkpoint], split=run.run_dir)
    assert len(result.images.samples) == len(split["test"]) and result.images.roots == [a, b]
    # The folders may have moved: give each again, in order.
    moved = [tmp_path / "a", tmp_path / "b"]
    for old, new in zip((a, b), moved, strict=True):
        new.symlink_to(old, target_is_directory=True)
    result = evaluate([run.last_checkpoint], split=run.run_dir, root=moved)
    assert len(result.images.samples) == len(split["test"]) and result.images.roots == moved
    with pytest.raises(BinsortError, match="records 2 image folder"):
        evaluate([run.last_checkpoint], split=run.run_dir, root=moved[0])
