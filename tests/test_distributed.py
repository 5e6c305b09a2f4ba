"""Training across processes: two CPU processes with DDP (gloo), as on two GPUs or two nodes.

Lightning's ``ddp`` strategy starts the other ranks by running the same command line again, so
the test runs the real ``binsort`` console script in a subprocess (``CliRunner`` runs inside
pytest, whose command line would be re-run instead). It checks that the run ends normally,
that one process reports it, and that the logged validation accuracy is the accuracy over the
whole validation set, each image counted once, although each rank scored only its share.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import TINY_TRAIN, make_image_folder

TIMEOUT = 300


def binsort_script() -> Path:
    script = Path(sys.executable).parent / "binsort"
    if not script.is_file():
        pytest.skip("the binsort console script is not installed next to this Python")
    return script


def accuracy_on(checkpoint: Path, root: Path, paths: list[str]) -> tuple[int, int]:
    """(right, total) of the checkpoint's model on ``paths``, as evaluate computes it."""
    from binsort.data.images import open_rgb
    from binsort.inference import probabilities
    from binsort.models.checkpoint import load_checkpoint

    member = load_checkpoint(checkpoint)
    images = [open_rgb(root / p) for p in paths]
    labels = torch.tensor([member.classes.index(p.split("/")[0]) for p in paths])
    predicted = probabilities([member], images)[0].argmax(1)
    return int((predicted == labels).sum()), len(paths)


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_logs_the_whole_validation_accuracy(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "images", per_class=10, size=(24, 24))
    argv = [
        *("train", "--root", str(root), "--out", str(tmp_path / "runs"), "--name", "ddp"),
        *TINY_TRAIN,
        *("--epochs", "2", "--split", "0.3", "--imbalance", "--save-top-k", "2"),
        *("--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"),
    ]
    # One thread per process: two ranks share two cores.
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "OMP_NUM_THREADS": "1"}
    env.pop("MASTER_PORT", None)  # Lightning picks a free port
    done = subprocess.run(
        [str(binsort_script()), *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=TIMEOUT,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    # Rank 1 trains too but does not report; the one report names rank 0's run folder.
    assert done.stdout.count("Training finished") == 1, done.stdout
    run = tmp_path / "runs" / "ddp" / "version_0"
    assert f"Training finished: {run.relative_to(tmp_path)}" in done.stdout or str(run) in (
        done.stdout
    )
    assert sorted(p.name for p in run.parent.iterdir()) == ["version_0"]

    split = json.loads((run / "split.json").read_text())
    val = split["val"]
    assert len(val) == 9  # 3 per class: the ranks score 5 and 4 of them, nothing padded
    checkpoints = sorted((run / "checkpoints").glob("epoch*.ckpt")) + [
        run / "checkpoints" / "last.ckpt"
    ]
    checked = 0
    for path in checkpoints:
        ckpt = torch.load(path, weights_only=True)
        assert ckpt["hyper_parameters"]["config"]["ema"] is False  # the saved weights validated
        history = next(v for k, v in ckpt["callbacks"].items() if "History" in k)["rows"]
        row = next(r for r in history if r["epoch"] == ckpt["epoch"])
        right, total = accuracy_on(path, root, val)
        assert row["val_accuracy"] == pytest.approx(right / total, abs=1e-6), (path.name, right)
        # The counts behind its interval are summed over the ranks too.
        assert (row["val_correct"], row["val_photos"]) == (right, total), path.name
        checked += 1
    assert checked >= 2
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 1
    # Each rank takes ceil(21 / 2) = 11 class-balanced draws a epoch: 2 batches of 4 each.
    assert last["global_step"] == 2 * 2


@pytest.mark.slow
def test_freeze_epochs_under_ddp_train_the_head_first(tmp_path: Path) -> None:
    """DDP fixes the parameters it reduces when it wraps the model: the head-only phase keeps
    every gradient through the reduction and drops the backbone's before the step. The stem
    and first stage (--freeze-stages 1) never ask for one, so DDP leaves them out."""
    from binsort.models.factory import build_model

    root = make_image_folder(tmp_path / "images", per_class=8, size=(24, 24))
    start = tmp_path / "start.pt"
    torch.save(build_model("timm/resnet18", 1000, [0.5] * 3, [0.5] * 3).net.state_dict(), start)
    argv = [
        *("train", "--root", str(root), "--out", str(tmp_path / "runs"), "--name", "freeze"),
        *("--model", "timm/resnet18", "--weights", str(start), "--input-size", "16"),
        *("--batch", "4", "--workers", "0", "--epochs", "2", "--freeze-epochs", "1"),
        "--freeze-stages=1",
        *("--split", "0.25", "--save-top-k", "-1", "--warmup-epochs", "0"),
        *("--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"),
    ]
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "OMP_NUM_THREADS": "1"}
    env.pop("MASTER_PORT", None)
    done = subprocess.run(
        [str(binsort_script()), *argv], capture_output=True, text=True, env=env, timeout=TIMEOUT
    )
    assert done.returncode == 0, done.stdout + done.stderr

    initial = torch.load(start, weights_only=True)
    folder = tmp_path / "runs" / "freeze" / "version_0" / "checkpoints"

    def weights(epoch: int) -> dict[str, torch.Tensor]:
        (path,) = folder.glob(f"epoch{epoch:03d}-*.ckpt")
        state = torch.load(path, weights_only=True)["state_dict"]
        return {
            k.removeprefix("model.net."): v
            for k, v in state.items()
            if k.startswith("model.net.") and not k.endswith(STATISTICS)
        }

    first, second = weights(0), weights(1)
    backbone = [k for k in first if not k.startswith("fc.")]
    assert all(torch.equal(first[k], initial[k]) for k in backbone)  # frozen in epoch 0
    assert not torch.equal(first["fc.weight"], second["fc.weight"])
    assert any(not torch.equal(second[k], initial[k]) for k in backbone)  # learning in epoch 1
    fixed = [k for k in backbone if k.startswith(("conv1.", "bn1.", "layer1."))]
    assert fixed and all(torch.equal(second[k], initial[k]) for k in fixed)
    assert not torch.equal(second["layer2.0.conv1.weight"], initial["layer2.0.conv1.weight"])


# Batch-norm statistics change in any training epoch; they are not parameters.
STATISTICS = ("running_mean", "running_var", "num_batches_tracked")
