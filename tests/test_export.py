"""``binsort export`` to ONNX, and ``binsort predict`` with the exported file (no torch)."""

from __future__ import annotations

import copy
import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from binsort.bins import load_bin_map
from binsort.cli import app
from binsort.data.images import open_rgb
from binsort.data.transforms import eval_transform
from binsort.errors import BinsortError
from binsort.evaluate import evaluate
from binsort.export import HALF_TOLERANCE, INT8_TOLERANCE, export_onnx
from binsort.models.checkpoint import load_members, save_ensemble
from binsort.onnx_model import OnnxModel, describe_members, to_batch
from binsort.predict import TorchModel, predict_photos
from conftest import make_image_folder

runner = CliRunner()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("export") / "photos", per_class=3, seed=9)


@pytest.fixture(scope="module")
def mixed_ensemble(trained_runs, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two members at 32 px and one at 24 px (resnet18 takes any size), temperatures set."""
    a, b = (load_members(run.last_checkpoint)[0] for run in trained_runs)
    small = copy.copy(b)
    small.input_size = 24  # what binsort ensemble --input-size 24 does
    small.temperature = 1.7
    a.temperature = 0.8
    path = tmp_path_factory.mktemp("mixed") / "mixed.ensemble"
    return save_ensemble([a, b, small], path)


@pytest.fixture(scope="module")
def exported(trained_runs, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first trained run's last checkpoint as ONNX, for the tests that only read it."""
    out = tmp_path_factory.mktemp("exported") / "model.onnx"
    return export_onnx(trained_runs[0].last_checkpoint, out).path


def predict_csv(model: Path, photos: Path, *extra: str) -> list[dict]:
    result = runner.invoke(app, ["predict", str(photos), "-m", str(model), "-f", "csv", *extra])
    assert result.exit_code == 0, result.output
    return list(csv.DictReader(io.StringIO(result.stdout)))


def assert_same_answers(expected: list[dict], got: list[dict]) -> None:
    assert [r["path"] for r in got] == [r["path"] for r in expected]
    assert [r["class"] for r in got] == [r["class"] for r in expected]
    for a, b in zip(expected, got, strict=True):
        assert abs(float(a["probability"]) - float(b["probability"])) < 1e-4


@pytest.mark.parametrize("tta", ["none", "flip"])
def test_exported_checkpoint_answers_like_the_checkpoint(
    trained_runs, photos: Path, tmp_path: Path, tta: str
) -> None:
    checkpoint = trained_runs[0].last_checkpoint
    out = tmp_path / "model.onnx"

    result = runner.invoke(app, ["export", str(checkpoint), "-o", str(out)])

    assert result.exit_code == 0, result.output
    assert "largest difference from PyTorch" in result.output
    model = OnnxModel(out)
    assert model.classes == load_members(checkpoint)[0].classes
    assert model.input_sizes == [32]
    assert_same_answers(
        predict_csv(checkpoint, photos, "--tta", tta), predict_csv(out, photos, "--tta", tta)
    )


def test_ensemble_of_two_input_sizes(mixed_ensemble: Path, photos: Path, tmp_path: Path) -> None:
    result = export_onnx(mixed_ensemble, tmp_path / "mixed.onnx")

    assert result.members == 3 and result.input_sizes == [24, 32]
    assert result.max_difference < 1e-4
    model = OnnxModel(result.path)
    assert [m["temperature"] for m in model.members] == [0.8, 1.0, 1.7]
    assert model.describe() == "mixed.onnx (ensemble of 3: 3× resnet18, ONNX)"
    assert_same_answers(predict_csv(mixed_ensemble, photos), predict_csv(result.path, photos))
    # Internal tensors get short names (module paths cost ~115 kB a member); the interface not.
    graph = onnx.load(str(result.path)).graph
    assert [v.name for v in graph.input] == ["images_24", "images_32"]
    assert [v.name for v in graph.output] == ["probabilities"]
    internal = [n for node in graph.node for n in node.output if n != "probabilities"]
    assert internal and all(len(n) <= 6 and "/" not in n for n in internal)


def test_a_repeated_member_is_stored_once_with_its_weight(
    trained_runs, photos: Path, tmp_path: Path
) -> None:
    """Greedy selection stores a member chosen twice twice; the graph holds it once."""
    a, b = (load_members(run.last_checkpoint)[0] for run in trained_runs)
    weighted = save_ensemble([a, b, a], tmp_path / "aba.ensemble")
    plain = export_onnx(save_ensemble([a, b], tmp_path / "ab.ensemble"), tmp_path / "ab.onnx")

    result = export_onnx(weighted, tmp_path / "aba.onnx")

    assert result.members == 2
    assert [m["weight"] for m in OnnxModel(result.path).members] == [2, 1]
    assert result.bytes < plain.bytes * 1.01  # not a third copy of a's weights
    # The PyTorch path runs a twice; the graph weights it twice: the same answers.
    assert_same_answers(predict_csv(weighted, photos), predict_csv(result.path, photos))


def test_evaluate_counts_the_members_inside_an_exported_ensemble(
    trained_runs, tmp_path: Path
) -> None:
    from binsort.evaluate import evaluate

    a, b = (load_members(run.last_checkpoint)[0] for run in trained_runs)
    pair = export_onnx(save_ensemble([a, b], tmp_path / "ab.ensemble"), tmp_path / "ab.onnx")
    run = trained_runs[0]

    result = evaluate([pair.path, run.last_checkpoint], split=run.run_dir, ensemble=True)

    # The file is one model in the mean, its two members averaged inside it.
    assert result.ensemble is not None and result.ensemble.arch == "2 models, 3 members"


def test_descriptions_count_each_architecture_once() -> None:
    assert describe_members("a.ckpt", ["resnet18"]) == "a.ckpt (resnet18)"
    assert (
        describe_members("b.onnx", ["resnet18", "mobilenet_v3_small", "resnet18"], "ONNX")
        == "b.onnx (ensemble of 3: 2× resnet18, mobilenet_v3_small, ONNX)"
    )


def test_preprocessing_matches_the_eval_transform() -> None:
    """The numpy path feeds the ONNX model the very pixels torchvision feeds the checkpoint."""
    rng = np.random.default_rng(0)
    for w, h, size in [(97, 61, 32), (40, 90, 24), (64, 64, 64), (51, 50, 17)]:
        im = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        expected = eval_transform(size)(im).numpy()
        np.testing.assert_array_equal(to_batch([im], size)[0], expected)


def test_predict_with_onnx_never_imports_torch(exported: Path, photos: Path):
    code = (
        "import sys\n"
        "from binsort.cli import app\n"
        f"sys.argv = ['binsort', 'predict', {str(photos)!r}, '-m', {str(exported)!r}, "
        "'-f', 'json']\n"
        "try:\n"
        "    app(prog_name='binsort')\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "heavy = sorted(m for m in ('torch', 'torchvision', 'lightning') if m in sys.modules)\n"
        "print('IMPORTED', heavy, file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "IMPORTED []" in done.stderr
    assert len(json.loads(done.stdout)) == 9


def test_existing_output_is_kept_unless_force(trained_runs, tmp_path: Path) -> None:
    out = tmp_path / "model.onnx"
    out.write_bytes(b"the user's file")
    args = ["export", str(trained_runs[0].last_checkpoint), "-o", str(out)]

    result = runner.invoke(app, args)

    assert result.exit_code == 1 and "exists; pass --force" in result.output
    assert out.read_bytes() == b"the user's file"
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0
    assert OnnxModel(out).classes
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # no temporary left


@pytest.mark.parametrize(
    ("name", "message"),
    [("model.pt", "must end in .onnx"), ("missing/model.onnx", "no such folder")],
)
def test_bad_output_names(trained_runs, tmp_path: Path, name: str, message: str) -> None:
    result = runner.invoke(
        app, ["export", str(trained_runs[0].last_checkpoint), "-o", str(tmp_path / name)]
    )
    assert result.exit_code == 1 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


def test_onnx_files_binsort_did_not_make(photos: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07 not a model")
    plain = tmp_path / "plain.onnx"
    torch.onnx.export(torch.nn.Conv2d(3, 2, 3), (torch.rand(1, 3, 8, 8),), str(plain), dynamo=False)
    for path, message in [(junk, "not a readable ONNX model"), (plain, "binsort's metadata")]:
        for args in (
            ["predict", str(photos), "-m", str(path)],
            ["evaluate", str(path), "--root", str(photos), "-o", str(tmp_path / "eval")],
        ):
            result = runner.invoke(app, args)
            assert result.exit_code == 1 and message in result.output, result.output
            assert "Traceback" not in result.output


def test_a_file_exported_with_flip_predicts_with_flip(
    trained_runs, exported: Path, photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "flip.onnx"
    args = ["export", str(trained_runs[0].last_checkpoint), "-o", str(out), "--tta", "flip"]

    result = runner.invoke(app, args, terminal_width=200)

    assert result.exit_code == 0, result.output
    assert "predicts with --tta flip" in result.output
    assert OnnxModel(out).tta == "flip" and OnnxModel(exported).tta == "none"
    # No --tta: the file's own; --tta none still turns it off.
    assert_same_answers(predict_csv(exported, photos, "--tta", "flip"), predict_csv(out, photos))
    assert_same_answers(predict_csv(exported, photos), predict_csv(out, photos, "--tta", "none"))
    said = runner.invoke(app, ["predict", str(photos), "-m", str(out)], terminal_width=200)
    assert "flip.onnx (resnet18, ONNX) with --tta flip" in said.output
    said = runner.invoke(app, ["predict", str(photos), "-m", str(exported)], terminal_width=200)
    assert "--tta" not in said.output
    # evaluate scores every model with its own --tta, and says so when a file asks for another.
    run = trained_runs[0]
    scored = runner.invoke(
        app,
        ["evaluate", str(out), "--split", str(run.run_dir), "-o", str(tmp_path / "e1")],
        terminal_width=200,
    )
    assert "flip.onnx answers with --tta flip in predict; scored here with --tta none" in (
        scored.output
    )
    scored = runner.invoke(
        app,
        [
            "evaluate",
            str(out),
            "--split",
            str(run.run_dir),
            "--tta",
            "flip",
            "-o",
            str(tmp_path / "e2"),
        ],
    )
    assert "answers with --tta" not in scored.output


def test_a_file_asking_for_unknown_test_time_augmentation_is_refused(
    exported: Path, photos: Path, tmp_path: Path
) -> None:
    proto = onnx.load(str(exported))
    (entry,) = [p for p in proto.metadata_props if p.key == "binsort"]
    entry.value = json.dumps({**json.loads(entry.value), "tta": "flip5crop"})
    edited = tmp_path / "edited.onnx"
    onnx.save(proto, str(edited))

    result = runner.invoke(app, ["predict", str(photos), "-m", str(edited)])

    assert result.exit_code == 1 and "unknown --tta 'flip5crop'" in result.output
    assert "Traceback" not in result.output


def test_export_refuses_test_time_augmentation_the_graph_cannot_do(
    trained_runs, tmp_path: Path
) -> None:
    out = tmp_path / "m.onnx"
    args = ["export", str(trained_runs[0].last_checkpoint), "-o", str(out)]

    result = runner.invoke(app, [*args, "--tta", "flip5crop"])

    assert result.exit_code == 2 and not out.exists()
    with pytest.raises(BinsortError, match="--tta must be one of none, flip"):
        export_onnx(trained_runs[0].last_checkpoint, out, tta="flip5crop")
    assert not out.exists()


def test_a_file_predicts_with_the_views_its_members_were_calibrated_for(
    trained_runs, photos: Path, tmp_path: Path
) -> None:
    members = [load_members(run.last_checkpoint)[0] for run in trained_runs]
    for member, t in zip(members, (0.7, 1.3), strict=True):
        member.temperature, member.tta = t, "flip"  # what ensemble --calibrate --tta flip stores
    calibrated = save_ensemble(members, tmp_path / "flip.ensemble")
    assert [m.tta for m in load_members(calibrated)] == ["flip", "flip"]
    out = tmp_path / "m.onnx"

    result = runner.invoke(app, ["export", str(calibrated), "-o", str(out)])

    assert result.exit_code == 0, result.output
    assert OnnxModel(out).tta == "flip" and "WARNING" not in result.output
    # The ensemble file itself answers with those views too, in predict and serve.
    assert TorchModel(calibrated).tta == "flip"
    assert TorchModel(trained_runs[0].last_checkpoint).tta == "none"
    assert_same_answers(predict_csv(calibrated, photos), predict_csv(out, photos))
    assert_same_answers(predict_csv(calibrated, photos, "--tta", "flip"), predict_csv(out, photos))
    # Asked for other views: done, with a warning that the confidences do not fit them.
    result = runner.invoke(
        app, ["export", str(calibrated), "-o", str(out), "--force", "--tta", "none"]
    )
    assert result.exit_code == 0, result.output
    assert OnnxModel(out).tta == "none"
    assert "temperatures were fitted for --tta flip" in " ".join(result.output.split())
    # An uncalibrated checkpoint has no views to keep to: none, and no warning.
    plain = export_onnx(trained_runs[0].last_checkpoint, tmp_path / "p.onnx", tta="flip")
    assert plain.tta == "flip" and plain.warnings == []
    assert export_onnx(trained_runs[0].last_checkpoint, tmp_path / "q.onnx").tta == "none"


def test_an_ensemble_file_with_unknown_calibration_views_is_refused(
    trained_runs, tmp_path: Path
) -> None:
    member = load_members(trained_runs[0].last_checkpoint)[0]
    member.tta = "sideways"
    damaged = save_ensemble([member], tmp_path / "bad.ensemble")
    with pytest.raises(BinsortError, match="damaged ensemble file \\(tta 'sideways'\\)"):
        load_members(damaged)


def test_flip5crop_needs_a_checkpoint(exported: Path, photos: Path) -> None:
    result = runner.invoke(app, ["predict", str(photos), "-m", str(exported), "--tta", "flip5crop"])
    assert result.exit_code == 1 and "flip5crop needs a checkpoint" in result.output


@pytest.mark.parametrize(
    ("flag", "weights", "most_of_full", "tolerance", "same_classes"),
    [
        ("--half", "float16", 0.55, HALF_TOLERANCE, True),
        # int8 rounds more coarsely: a near-tie between two classes may flip.
        ("--int8", "int8", 0.3, INT8_TOLERANCE, False),
    ],
)
def test_smaller_weights_shrink_the_file_and_stay_close(
    trained_runs,
    photos: Path,
    tmp_path: Path,
    flag: str,
    weights: str,
    most_of_full: float,
    tolerance: float,
    same_classes: bool,
) -> None:
    checkpoint = trained_runs[0].last_checkpoint
    full = export_onnx(checkpoint, tmp_path / "full.onnx")
    small = tmp_path / "small.onnx"

    result = runner.invoke(app, ["export", str(checkpoint), "-o", str(small), flag])

    assert result.exit_code == 0, result.output
    assert f"{weights} weights" in result.output
    assert small.stat().st_size < most_of_full * full.bytes
    assert OnnxModel(small).metadata["weights"] == weights
    expected, got = predict_csv(full.path, photos), predict_csv(small, photos)
    assert [r["path"] for r in got] == [r["path"] for r in expected]
    if same_classes:
        assert [r["class"] for r in got] == [r["class"] for r in expected]
    for a, b in zip(expected, got, strict=True):
        assert abs(float(a["probability"]) - float(b["probability"])) < tolerance


def test_a_graph_wrong_for_one_image_alone_is_refused(
    trained_runs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """serve runs one photo at a time: the check covers a batch of one, not only of two."""
    run = OnnxModel.run

    def wrong_alone(self: OnnxModel, feeds: dict) -> np.ndarray:
        got = run(self, feeds)
        return got + 0.01 if len(next(iter(feeds.values()))) == 1 else got

    monkeypatch.setattr(OnnxModel, "run", wrong_alone)
    out = tmp_path / "m.onnx"

    with pytest.raises(BinsortError, match="differs from PyTorch's by 1.00e-02"):
        export_onnx(trained_runs[0].last_checkpoint, out)
    assert not out.exists()


def test_half_and_int8_together_are_refused(trained_runs, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    args = ["export", str(trained_runs[0].last_checkpoint), "-o", str(out), "--half", "--int8"]

    result = runner.invoke(app, args)

    assert result.exit_code == 1 and "choose one" in result.output
    assert not out.exists()


@pytest.mark.parametrize("tta", ["none", "flip5crop"])
def test_evaluate_scores_an_exported_file_as_its_checkpoint(
    trained_runs, exported: Path, tta: str
) -> None:
    from binsort.evaluate import evaluate

    run = trained_runs[0]
    result = evaluate([run.last_checkpoint, exported], split=run.run_dir, tta=tta, calibrate=True)

    checkpoint, onnx_row = result.rows
    assert onnx_row.arch == "resnet18 (ONNX)"
    assert onnx_row.accuracy == checkpoint.accuracy
    assert onnx_row.confusion_matrix == checkpoint.confusion_matrix
    assert abs(onnx_row.nll - checkpoint.nll) < 1e-4
    # A temperature on the file's log-probabilities is one on the member's logits.
    assert abs(onnx_row.temperature - checkpoint.temperature) < 1e-3
    assert 0.9 * checkpoint.parameters < onnx_row.parameters <= checkpoint.parameters
    # The file records its checkpoint's split, so nothing warns that it does not.
    assert not [w for w in result.warnings if "records no training split" in w]


def test_an_exported_file_records_its_split_and_evaluate_uses_it(
    trained_runs, exported: Path, tmp_path: Path
) -> None:
    run = trained_runs[0]
    recorded = json.loads((run.run_dir / "split.json").read_text())
    assert OnnxModel(exported).metadata["split"] == load_members(run.last_checkpoint)[0].split
    assert OnnxModel(exported).metadata["split"]["test"] == recorded["test"]

    # The file is its own --split, like a checkpoint...
    by_file = runner.invoke(
        app, ["evaluate", str(exported), "--split", str(exported), "-o", str(tmp_path / "a")]
    )
    by_run = runner.invoke(
        app, ["evaluate", str(exported), "--split", str(run.run_dir), "-o", str(tmp_path / "b")]
    )
    assert by_file.exit_code == by_run.exit_code == 0, by_file.output + by_run.output
    scores = [json.loads((tmp_path / d / "metrics.json").read_text()) for d in "ab"]
    assert scores[0]["images"] == len(recorded["test"]) == scores[1]["images"]
    assert scores[0]["models"][0]["accuracy"] == scores[1]["models"][0]["accuracy"]
    # ...and the leakage guard knows its training images, as it knows a checkpoint's.
    argv = ["evaluate", str(exported), "--root", recorded["root"], "-o", str(tmp_path / "c")]
    leaked = runner.invoke(app, argv)
    assert leaked.exit_code == 1 and "were used to train model.onnx" in leaked.output
    assert "Traceback" not in leaked.output


def test_members_trained_on_a_resized_copy_and_the_originals_record_one_split(
    trained_runs, tmp_path: Path
) -> None:
    """Same photo lists under two folders (binsort resize keeps the names): one split."""
    a, b = (load_members(trained_runs[0].last_checkpoint)[0] for _ in range(2))
    b.hparams = {**b.hparams, "split": {**b.hparams["split"], "root": "/data/trashnet288"}}
    path = save_ensemble([a, b], tmp_path / "two-roots.ensemble")
    exported = export_onnx(path, tmp_path / "two-roots.onnx").path
    assert OnnxModel(exported).metadata["split"] == a.split


def test_members_of_different_splits_record_none(
    trained_runs, mixed_ensemble: Path, tmp_path: Path
) -> None:
    from binsort.imagesets import read_split

    exported = export_onnx(mixed_ensemble, tmp_path / "mixed.onnx").path
    assert "split" not in OnnxModel(exported).metadata
    with pytest.raises(BinsortError, match="records no train/validation/test split"):
        read_split(exported)


def test_evaluate_scores_an_onnx_file_whose_members_take_two_sizes(
    mixed_ensemble: Path, photos: Path, tmp_path: Path
) -> None:
    exported = export_onnx(mixed_ensemble, tmp_path / "mixed.onnx").path

    for tta in ("none", "flip"):
        result = evaluate([exported], root=photos, tta=tta)

        # The same probabilities as predict's path through the file, photo by photo.
        images = [open_rgb(result.images.root / path) for path, _ in result.images.samples]
        expected = OnnxModel(exported).probabilities(images, tta=tta)
        assert result.report_probs.numpy() == pytest.approx(expected, abs=1e-5)
        # predict, file or ensemble: each member resizes the decoded photo once (no 32-px
        # copy in between for the 24-px member).
        paths = [result.images.root / path for path, _ in result.images.samples]
        for model in (OnnxModel(exported), TorchModel(mixed_ensemble)):
            assert model.input_sizes == [24, 32]
            bins = load_bin_map("psu", classes=model.classes)
            rows = predict_photos(paths, model, bins, top_k=len(model.classes), tta=tta)
            got = [[dict(row.top)[c] for c in model.classes] for row in rows]
            assert np.array(got) == pytest.approx(expected, abs=1e-4)
    argv = ["evaluate", str(exported), "--root", str(photos), "-o", str(tmp_path / "eval")]
    assert runner.invoke(app, argv).exit_code == 0


@pytest.mark.parametrize("command", ["ensemble", "export"])
def test_commands_that_need_checkpoints_say_so_for_onnx(
    exported: Path, tmp_path: Path, command: str
) -> None:

    out = tmp_path / ("out.onnx" if command == "export" else "out.ensemble")

    result = runner.invoke(app, [command, str(exported), "-o", str(out)])

    assert result.exit_code == 1
    assert "an exported ONNX model; this needs the checkpoint" in result.output
    assert not out.exists()


def test_a_few_photos_skip_graph_optimisation_and_answer_the_same(photos: Path) -> None:
    import onnxruntime as ort

    from binsort.predict import FEW_PHOTOS, load_model

    few, many = load_model(None, photos=FEW_PHOTOS), load_model(None, photos=FEW_PHOTOS + 1)
    level = ort.GraphOptimizationLevel
    assert few.session.get_session_options().graph_optimization_level == level.ORT_DISABLE_ALL
    assert many.session.get_session_options().graph_optimization_level != level.ORT_DISABLE_ALL
    images = [Image.open(p).convert("RGB") for p in sorted(photos.rglob("*.*"))[:4]]
    assert images
    assert np.abs(few.probabilities(images) - many.probabilities(images)).max() < 1e-4


def test_evaluate_command_with_an_onnx_file_and_a_checkpoint(
    trained_runs, exported: Path, tmp_path: Path
) -> None:
    run = trained_runs[0]
    out = tmp_path / "evaluation"

    result = runner.invoke(
        app,
        ["evaluate", str(exported), str(run.last_checkpoint), "--ensemble"]
        + ["--split", str(run.run_dir), "--out", str(out)],
        terminal_width=200,
    )

    assert result.exit_code == 0, result.output
    assert "resnet18 (ONNX)" in result.output and "records no training split" not in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    onnx_row, checkpoint_row = metrics["models"]
    assert onnx_row["accuracy"] == checkpoint_row["accuracy"] == metrics["ensemble"]["accuracy"]
    assert (out / "confusion_matrix.png").is_file()
