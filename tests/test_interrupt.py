"""Interrupted work: training killed with SIGKILL or stopped with Ctrl-C, resizing killed.

Each test runs the real ``binsort`` console script in a subprocess (its own session, so a kill
reaches every process it started), interrupts it at a known point and checks what is left
on disk and that running again finishes the job as if nothing had happened.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from binsort.cli import app
from binsort.data.resize import resize_folder
from conftest import TINY_TRAIN

runner = CliRunner()
EPOCHS = 5
# A schedule that depends on the planned epochs, so its state after resuming is telling.
TINY = [
    *TINY_TRAIN,
    *("--split", "0.25", "--seed", "3", "--opt", "adam", "--lr", "1e-3"),
    *("--scheduler", "cosine", "--warmup-epochs", "1", "--epochs", str(EPOCHS)),
]
TIMEOUT = 180  # seconds: generous, the CPU may be shared with other work


def binsort_command() -> list[str]:
    """The installed console script (``python -m binsort.cli`` has no ``__main__``)."""
    script = Path(sys.executable).parent / "binsort"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from binsort.cli import main; main()"]


pytestmark = pytest.mark.usefixtures("one_thread")


def start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [*binsort_command(), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # a process group of its own: killpg reaches its workers
        preexec_fn=as_if_from_a_terminal,
    )


def as_if_from_a_terminal() -> None:
    """Ctrl-C handled as in a terminal's foreground job. A shell starts background jobs
    (``make test &``, ``nohup``) with SIGINT ignored, children inherit that, and Python then
    keeps ignoring it, which is right for binsort (its user asked for it) but not for a test
    of what Ctrl-C does."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_until(condition, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"binsort exited ({process.returncode}) before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def saved_epoch(path: Path) -> int:
    """The epoch stored in a checkpoint, or -1 while there is none (saves are atomic)."""
    if not path.is_file():
        return -1
    try:
        return torch.load(path, map_location="cpu", weights_only=True)["epoch"]
    except (OSError, RuntimeError, EOFError):  # replaced while being read
        return -1


class Saves:
    """Counts the saves of a checkpoint by its inode, which each atomic save replaces.

    A stat is cheap, so the signal lands within milliseconds of the save it waits for;
    loading the checkpoint to read its epoch took long enough on a busy CPU for a tiny run
    to finish in between.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: set[int] = set()

    def __call__(self) -> int:
        with contextlib.suppress(FileNotFoundError):
            self.seen.add(self.path.stat().st_ino)
        return len(self.seen)


def train_args(root: Path, out: Path) -> list[str]:
    return ["train", "--root", str(root), "--out", str(out), *TINY]


def progress_of(ckpt: dict) -> dict:
    """What must match between a resumed and an uninterrupted run: counters, not weights."""
    (optimizer,) = ckpt["optimizer_states"]
    (scheduler,) = ckpt["lr_schedulers"]
    history = next(v for k, v in ckpt["callbacks"].items() if "History" in k)
    return {
        "epoch": ckpt["epoch"],
        "global_step": ckpt["global_step"],
        "optimizer_steps": sorted({int(s["step"]) for s in optimizer["state"].values()}),
        "lr": [group["lr"] for group in optimizer["param_groups"]],
        "scheduler_last_epoch": scheduler["last_epoch"],
        "scheduler_last_lr": scheduler["_last_lr"],
        "history_epochs": [row["epoch"] for row in history["rows"]],
    }


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The image folder and the final ``last.ckpt`` progress of a run that was left alone."""
    from conftest import make_image_folder

    base = tmp_path_factory.mktemp("interrupt")
    root = make_image_folder(base / "images")
    result = runner.invoke(app, train_args(root, base / "runs"))
    assert result.exit_code == 0, result.output
    last = base / "runs" / "default" / "version_0" / "checkpoints" / "last.ckpt"
    return root, progress_of(torch.load(last, weights_only=True))


@pytest.mark.slow
def test_sigkill_during_training_then_resume_matches_an_uninterrupted_run(
    uninterrupted: tuple[Path, dict], tmp_path: Path
) -> None:
    root, expected = uninterrupted
    run = tmp_path / "runs" / "default" / "version_0"
    last = run / "checkpoints" / "last.ckpt"
    process = start(*train_args(root, tmp_path / "runs"))
    saves = Saves(last)
    wait_until(lambda: saves() >= 2, process, "the second checkpoint")
    assert process.poll() is None, "training finished before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=TIMEOUT)
    killed_at = saved_epoch(last)
    assert 1 <= killed_at < EPOCHS - 1
    assert not (run / "checkpoints" / "interrupted.ckpt").exists()  # SIGKILL runs no handler

    result = runner.invoke(app, ["train", "--resume", str(run)])

    assert result.exit_code == 0, result.output
    assert f"epochs run              │ {EPOCHS}" in result.output
    assert progress_of(torch.load(last, weights_only=True)) == expected
    assert not (tmp_path / "runs" / "default" / "version_1").exists()  # same run folder


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_saves_a_checkpoint_and_resume_finishes_the_run(
    uninterrupted: tuple[Path, dict], tmp_path: Path, sig: signal.Signals
) -> None:
    """Ctrl-C (SIGINT to the foreground process group) or SIGTERM (``kill``, a scheduler's
    time limit): a checkpoint between two batches, one line saying how to go on, exit 1."""
    root, expected = uninterrupted
    run = tmp_path / "runs" / "default" / "version_0"
    checkpoints = run / "checkpoints"
    process = start(*train_args(root, tmp_path / "runs"))
    wait_until(lambda: (checkpoints / "last.ckpt").exists(), process, "a checkpoint")
    assert process.poll() is None, "training finished before the signal"
    os.killpg(process.pid, sig)
    out, err = process.communicate(timeout=TIMEOUT)

    assert process.returncode == 1, (out, err)
    assert "Traceback" not in out + err
    (message,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert "training interrupted at epoch" in message
    assert f"binsort train --resume {run}" in message
    interrupted = torch.load(checkpoints / "interrupted.ckpt", weights_only=True)
    assert interrupted["hyper_parameters"]["config"]["epochs"] == EPOCHS
    # Stopped between two batches: every parameter has been stepped as often as the run.
    assert progress_of(interrupted)["optimizer_steps"] == [interrupted["global_step"]]

    result = runner.invoke(app, ["train", "--resume", str(run)])

    assert result.exit_code == 0, result.output
    final = progress_of(torch.load(checkpoints / "last.ckpt", weights_only=True))
    assert final == expected
    # A run that finished removes its interrupted.ckpt, so a later --resume cannot pick it.
    assert not (checkpoints / "interrupted.ckpt").exists()


def wait_dead(pid: int) -> None:
    """Until ``pid`` has exited (a zombie counts: it is dead, only not reaped yet)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.02)


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
def test_sigkill_during_resize_leaves_only_whole_files_and_a_rerun_finishes(
    tmp_path: Path,
) -> None:
    """tests/test_resize.py fakes a killed worker's leftover; this kills a real run."""
    src = tmp_path / "src"
    rng = np.random.default_rng(0)
    # Enough images that the kill lands midway even when a busy CPU slows the polling: with 60,
    # a run on a loaded machine once wrote them all between the poll and the kill.
    classes, per_class = ("glass", "metal"), 100
    total = len(classes) * per_class
    for cls in classes:
        (src / cls).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)  # noise: slow to code
            Image.fromarray(pixels).save(src / cls / f"{cls}_{i:03d}.jpg", quality=95)
    dst = tmp_path / "dst"
    process = start("resize", str(src), str(dst), "--size", "120", "--workers", "2")
    wait_until(lambda: len(list(dst.rglob("*.jpg"))) >= 3, process, "the first outputs")
    assert process.poll() is None, "resize finished before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=TIMEOUT)
    for temp in dst.rglob(".*.tmp-*"):  # the killed workers' files: wait until they are dead
        wait_dead(int(temp.name.rpartition("-")[2]))

    finals = sorted(dst.rglob("*.jpg"))
    assert 3 <= len(finals) < total, "the kill did not land midway"
    for path in finals:  # every file under a final name decodes to the end
        with Image.open(path) as im:
            im.load()
            assert im.size == (160, 120)

    result = runner.invoke(app, ["resize", str(src), str(dst), "--size", "120", "--workers", "0"])

    assert result.exit_code == 0, result.output
    assert f"{total - len(finals)} written, {len(finals)} already done" in result.output
    clean = resize_folder(src, tmp_path / "clean", size=120, workers=0)
    assert clean.written == total
    # Temporary files of the killed run are gone and the outputs equal a clean run's.
    assert tree_hashes(dst) == tree_hashes(tmp_path / "clean")
