"""``binsort train --teacher``: knowledge distillation from a checkpoint or ensemble file."""

import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from binsort.cli import app
from binsort.models.teacher import distillation_loss, load_teacher
from conftest import TINY_TRAIN

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")


def student(tmp_path, root, *args):
    argv = ["train", "--root", str(root), "--out", str(tmp_path / "runs"), *TINY_TRAIN, *args]
    return runner.invoke(app, argv)


def recorded(run) -> dict:
    return json.loads((run.run_dir / "split.json").read_text())


def test_distillation_loss_is_the_tempered_kl_divergence():
    torch.manual_seed(0)
    logits = torch.randn(5, 4, requires_grad=True)
    teacher = torch.softmax(torch.randn(5, 4), dim=1)
    # At T = 1 it is KL(teacher || student), averaged over the batch.
    expected = (teacher * (teacher.log() - torch.log_softmax(logits, 1))).sum(1).mean()
    assert torch.allclose(distillation_loss(logits, teacher, 1.0), expected, atol=1e-6)
    # A student that already answers like the teacher has nothing left to learn.
    same = distillation_loss(teacher.log(), teacher, 1.0)
    assert abs(float(same)) < 1e-6
    # At T = 2 both answers are softened (p ** 1/2, renormalised) and the term scaled by T².
    soft_t = torch.softmax(teacher.log() / 2, 1)
    soft_s = torch.log_softmax(logits / 2, 1)
    expected = 4 * (soft_t * (soft_t.log() - soft_s)).sum(1).mean()
    loss = distillation_loss(logits, teacher, 2.0)
    assert torch.allclose(loss, expected, atol=1e-6)
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_a_teacher_answers_like_its_ensemble_file(trained_runs, tmp_path):
    from binsort.models.checkpoint import load_members

    first, second = (r.last_checkpoint for r in trained_runs)
    path = tmp_path / "pair.ensemble"
    result = runner.invoke(app, ["ensemble", str(first), str(second), "-o", str(path)])
    assert result.exit_code == 0, result.output
    classes = ["glass", "metal", "paper"]
    teacher = load_teacher(path, classes)
    images = torch.rand(6, 3, 32, 32)
    members = load_members(path)
    with torch.no_grad():
        expected = torch.stack(
            [torch.softmax(m.model(images) / m.temperature, 1) for m in members]
        ).mean(0)
    assert torch.allclose(teacher.probabilities(images), expected, atol=1e-6)
    # A bf16-mixed student's autocast does not reach the teacher: its answer stays float32.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.allclose(teacher.probabilities(images), expected, atol=1e-6)
    assert all(not p.requires_grad for m, _ in teacher.members for p in m.model.parameters())
    with pytest.raises(Exception, match="its classes"):
        load_teacher(path, ["metal", "glass", "paper"])


def test_a_student_learns_from_its_teacher_and_stores_only_itself(trained_runs, tmp_path):
    teacher_run = trained_runs[0]
    split = recorded(teacher_run)
    root = split["root"]
    # The teacher's own split (seed 1): nothing it trained on is held out from the student.
    args = ["--split", "0.2", "--test-split", "0.2", "--seed", "1", "--epochs", "4"]
    result = student(
        tmp_path,
        root,
        *args,
        "--teacher",
        str(teacher_run.last_checkpoint),
        "--name",
        "kd",
        "--distill-weight",
        "1",
        "--distill-temperature",
        "2",
    )
    assert result.exit_code == 0, result.output
    assert "trained on" not in result.output  # the teacher saw none of the held-out photos
    last = tmp_path / "runs" / "kd" / "version_0" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    config = ckpt["hyper_parameters"]["config"]
    assert config["teacher"] == str(teacher_run.last_checkpoint)
    assert config["distill_weight"] == 1.0 and config["distill_temperature"] == 2.0
    # The teacher's weights stay out of the student's checkpoint.
    assert all(k.startswith(("model.", "train_acc", "val_acc")) for k in ckpt["state_dict"])
    plain = torch.load(teacher_run.last_checkpoint, weights_only=True)
    assert len(ckpt["state_dict"]) == len(plain["state_dict"])
    history = next(v for k, v in ckpt["callbacks"].items() if "History" in k)["rows"]
    assert all(math.isfinite(row["train_distill_loss"]) for row in history)
    # Trained on the teacher's answers only, the student has come closer to them.
    assert history[-1]["train_distill_loss"] < history[0]["train_distill_loss"]


def test_a_teacher_that_trained_on_the_students_held_out_images_is_a_warning(
    trained_runs, tmp_path
):
    teacher_run, other = trained_runs
    root = recorded(teacher_run)["root"]
    # The student takes the other run's split (seed 2): its validation and test images are
    # partly the teacher's training images.
    args = ["--split", "0.2", "--test-split", "0.2", "--seed", "2", "--epochs", "1"]
    result = student(
        tmp_path,
        root,
        *args,
        "--limit-batches",
        "1",
        "--teacher",
        str(teacher_run.last_checkpoint),
    )
    assert result.exit_code == 0, result.output
    taught = set(recorded(teacher_run)["train"])
    held_out = recorded(other)
    for name, part in (("validation", "val"), ("test", "test")):
        common = taught & set(held_out[part])
        if common:
            assert f"trained on {len(common)} of this run's {name} images" in result.output
    assert "WARNING" in result.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["--distill-weight", "1.5"], "--distill-weight must be in [0, 1]"),
        (["--distill-temperature", "0"], "--distill-temperature must be positive"),
        (["--teacher", "nowhere.ckpt"], "--teacher nowhere.ckpt: no such checkpoint or ensemble"),
    ],
)
def test_bad_distillation_options_are_one_line_errors(image_folder, tmp_path, args, message):
    result = student(tmp_path, image_folder, "--epochs", "1", *args)
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output


def test_a_teacher_of_other_classes_is_refused(trained_runs, tmp_path):
    from conftest import make_image_folder

    root = make_image_folder(tmp_path / "other", classes=("cardboard", "glass", "metal"))
    result = student(
        tmp_path, root, "--epochs", "1", "--teacher", str(trained_runs[0].last_checkpoint)
    )
    assert result.exit_code == 1
    assert "its classes (glass, metal, paper)" in result.output
    assert not (tmp_path / "runs").exists() or not list(Path(tmp_path / "runs").rglob("*.ckpt"))


def test_an_exported_file_teaches_at_its_own_input_size(trained_runs, tmp_path):
    """An ONNX teacher (the bundled model is one) answers the student's crop resized to the
    file's fixed input size, with the file's own probabilities."""
    import torch.nn.functional as F

    from binsort.onnx_model import OnnxModel, input_name

    teacher_run = trained_runs[0]
    path = tmp_path / "teacher.onnx"
    exported = runner.invoke(app, ["export", str(teacher_run.last_checkpoint), "-o", str(path)])
    assert exported.exit_code == 0, exported.output
    teacher = load_teacher(path, ["glass", "metal", "paper"])
    images = torch.rand(4, 3, 16, 16)
    onnx = OnnxModel(path)
    resized = F.interpolate(images, size=(32, 32), mode="bilinear", antialias=True)
    expected = torch.from_numpy(onnx.run({input_name(32): resized.numpy()}))
    assert torch.allclose(teacher.probabilities(images), expected, atol=1e-5)

    # A 16-px student learns from it, and the file's recorded split counts for the leak check.
    split = recorded(teacher_run)
    args = ["--split", "0.2", "--test-split", "0.2", "--seed", "1", "--epochs", "1"]
    result = student(tmp_path, split["root"], *args, "--teacher", str(path), "--name", "kd")
    assert result.exit_code == 0, result.output
    assert "trained on" not in result.output
    result = student(tmp_path, split["root"], "--seed", "2", "--teacher", str(path))
    assert result.exit_code == 0, result.output
    assert "trained on" in result.output  # another split: the teacher saw held-out photos


def test_the_bundled_model_is_the_teacher_named_default(image_folder, tmp_path):
    from binsort.predict import default_model_path

    if default_model_path() is None:
        pytest.skip("this build has no bundled model")
    # Its classes are TrashNet's six, not this folder's three: refused in one line.
    result = student(tmp_path, image_folder, "--teacher", "default", "--epochs", "1")
    assert result.exit_code == 1
    assert "--teacher" in result.output and "its classes" in result.output


def test_the_bundled_teacher_runs_as_pytorch_networks_off_the_cpu(monkeypatch):
    """onnxruntime runs on the CPU only: on another device the file's networks are rebuilt in
    PyTorch and answer what the file answers; on the CPU (faster there), or where they would
    not answer alike, the file teaches."""
    from binsort.models import teacher as teaching
    from binsort.models.onnx_member import OnnxModule
    from binsort.predict import default_model_path

    if default_model_path() is None:
        pytest.skip("this build has no bundled model")
    trashnet = ["cardboard", "glass", "metal", "paper", "plastic", "trash"]
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    file = load_teacher("default", trashnet).to("cpu")
    assert [type(m.model) for m, _ in file.members] == [OnnxModule]

    rebuilt = teaching.rebuilt_teacher(file)

    assert rebuilt is not None and len(rebuilt.members) == 5
    assert not any(isinstance(m.model, OnnxModule) for m, _ in rebuilt.members)
    expected = file.probabilities(images)
    assert torch.allclose(rebuilt.probabilities(images), expected, atol=1e-5)
    assert "cardboard/cardboard10.jpg" in rebuilt.members[0][0].split["train"]  # for the guard
    moved = load_teacher("default", trashnet).to("meta")  # any device but the CPU
    assert len(moved.members) == 5
    assert all(p.device.type == "meta" for m, _ in moved.members for p in m.model.parameters())
    monkeypatch.setattr(teaching, "REBUILT_TOLERANCE", -1.0)  # no rebuilt network passes
    kept = load_teacher("default", trashnet).to("meta")
    assert [type(m.model) for m, _ in kept.members] == [OnnxModule]
