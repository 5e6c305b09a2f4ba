"""scripts/gpu-default.sh, run on the CPU at toy size.

A task that is lent a GPU has 15 minutes of it, start included, so the script it runs there
must already work: every step of it (figures, the probe that fits the epoch count, members
side by side, packing, calibration, export, what comes back) runs here on tiny images.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from binsort.models.checkpoint import load_members
from binsort.onnx_model import OnnxModel
from conftest import make_image_folder

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu-default.sh"


def run_script(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        cwd=REPO,
        env={**os.environ, "PYTHON": sys.executable, "DEVICE": "cpu", **env},
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.slow
def test_all_phases_bring_back_figures_and_a_candidate(tmp_path: Path) -> None:
    data = make_image_folder(tmp_path / "data", per_class=10, size=(40, 36))
    out, runs = tmp_path / "out", tmp_path / "runs"
    result = run_script(
        "all",
        DATA=str(data),
        SIZE="32",
        BATCH="4",
        MEMBERS="4",
        BUDGET="2",
        OUT=str(out),
        RUNS=str(runs),
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    figures = (out / "figures.txt").read_text()
    for arch in ("resnet18", "shufflenet_v2_x1_0"):
        assert f"{arch}, 32px, batch 4" in figures
        assert f"binsort train {arch} cache:" in figures
    assert figures.count("(a) compute only") == 2 and figures.count("(c) --cache") == 2
    assert "binsort train resnet18 loader:" in figures

    log = (out / "log.txt").read_text()
    assert "probe: " in log and "side by side ->" in log
    # Four members: one file of three and one of one (the tool brings back 16 MiB a file).
    packed = [load_members(out / f"members-{i}.ensemble") for i in (1, 2)]
    assert [len(m) for m in packed] == [3, 1]
    # Members alternate the two augmentation recipes and share one split.
    members = [m for file in packed for m in file]
    rotations = [m.hparams["config"]["rotation"] for m in members]
    assert rotations == [20.0, 10.0, 20.0, 10.0]
    assert all(m.split == members[0].split for m in members)

    candidate = OnnxModel(out / "candidate.onnx")
    assert len(candidate.archs) == 4 and candidate.classes == ["glass", "metal", "paper"]
    with tarfile.open(out / "runs.tar.gz") as tar:
        names = tar.getnames()
    assert any(n.endswith("member-101/version_0/split.json") for n in names)
    assert not any(n.endswith((".ckpt", ".ensemble")) for n in names)


def test_bad_phase_and_missing_data_are_one_line(tmp_path: Path) -> None:
    bad = run_script("everything", OUT=str(tmp_path / "out"))
    assert bad.returncode == 2 and bad.stderr.strip().startswith("usage:")
    missing = run_script("train", DATA=str(tmp_path / "none"), OUT=str(tmp_path / "out"))
    assert missing.returncode == 1 and len(missing.stderr.strip().splitlines()) == 1
    assert "binsort resize" in missing.stderr
