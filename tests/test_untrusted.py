"""Untrusted model files: checkpoints and ensemble files are read without running their code.

A pickle can name any Python callable and have it called while it is read. binsort reads
model files with ``torch.load(weights_only=True)``, which accepts tensors and plain values
only, so a crafted file is refused before anything in it runs. Every command that reads a
model file is tried with such a file (it would create a marker file when run), and with
files that load safely but are not binsort checkpoints.
"""

from __future__ import annotations

import pathlib
import pickle
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from binsort.cli import app
from conftest import make_image_folder

runner = CliRunner()


class Payload:
    """Unpickling this calls ``Path.touch(marker)``: proof that the file's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def malicious_files(folder: Path, marker: Path) -> dict[str, Path]:
    """The same payload hidden in the shapes binsort reads, written without running it."""
    files = {
        # A Lightning-like checkpoint whose hyperparameters are the payload.
        "checkpoint": (folder / "model.ckpt", {"hyper_parameters": Payload(marker)}),
        # An ensemble file whose member is the payload.
        "ensemble": (folder / "ensemble.pt", {"format": "binsort-ensemble", "members": [None]}),
    }
    files["ensemble"][1]["members"][0] = Payload(marker)
    out = {}
    for name, (path, data) in files.items():
        torch.save(data, path)
        out[name] = path
    # A plain pickle (not torch's zip format) under a checkpoint's name.
    plain = folder / "plain-pickle.ckpt"
    plain.write_bytes(pickle.dumps({"state_dict": Payload(marker)}))
    out["plain pickle"] = plain
    return out


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("untrusted") / "images", per_class=2)


def commands(model: Path, photos: Path, out: Path) -> dict[str, list[str]]:
    """Every way a model file reaches binsort."""
    return {
        "evaluate": ["evaluate", str(model), "--root", str(photos), "-o", str(out / "eval")],
        "ensemble": ["ensemble", str(model), "-o", str(out / "ens.pt")],
        "predict": ["predict", str(photos), "--model", str(model)],
        "export": ["export", str(model), "-o", str(out / "model.onnx")],
        "train --resume": ["train", "--resume", str(model)],
        "train --weights": [
            *("train", "--root", str(photos), "--weights", str(model)),
            *("--out", str(out / "runs"), "--workers", "0"),
        ],
    }


def assert_one_line_error(result, *words: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for word in words:
        assert word in lines[0], result.output


@pytest.mark.parametrize("kind", ["checkpoint", "ensemble", "plain pickle"])
@pytest.mark.parametrize(
    "command",
    ["evaluate", "ensemble", "predict", "export", "train --resume", "train --weights"],
)
def test_crafted_pickles_are_refused_without_running(
    photos: Path, tmp_path: Path, kind: str, command: str
) -> None:
    marker = tmp_path / "MARKER"
    model = malicious_files(tmp_path, marker)[kind]

    result = runner.invoke(app, commands(model, photos, tmp_path)[command])

    assert_one_line_error(result, model.name, "refused to load")
    if kind != "plain pickle":  # torch's own format: the refusal names what it would call
        assert "could run code" in result.output
    assert not marker.exists()
    assert not (tmp_path / "ens.pt").exists() and not (tmp_path / "runs").exists()
    assert not (tmp_path / "model.onnx").exists()


def test_evaluate_split_from_a_crafted_checkpoint_is_refused(
    trained_runs: list, tmp_path: Path
) -> None:
    marker = tmp_path / "MARKER"
    model = malicious_files(tmp_path, marker)["checkpoint"]
    good = trained_runs[0].last_checkpoint

    result = runner.invoke(app, ["evaluate", str(good), "--split", str(model), "-o", str(tmp_path)])

    assert_one_line_error(result, "model.ckpt", "refused to load")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("member", "expected"),
    [
        (["not", "a", "mapping"], "a member is not a mapping"),
        ({"hyper_parameters": [1]}, "it has no hyper_parameters"),
    ],
)
def test_a_damaged_ensemble_as_split_is_a_clear_error(
    trained_runs: list, tmp_path: Path, member, expected: str
) -> None:
    bad = tmp_path / "bad.ensemble"
    torch.save({"format": "binsort-ensemble", "version": 1, "members": [member]}, bad)
    good = trained_runs[0].last_checkpoint

    result = runner.invoke(app, ["evaluate", str(good), "--split", str(bad), "-o", str(tmp_path)])

    assert_one_line_error(result, "bad.ensemble", expected)


def other_programs_files(folder: Path, real: Path) -> dict[str, tuple[Path, str]]:
    """Files that load safely but are not binsort models, and what the error must name."""
    from binsort.models.factory import build_model

    cases: dict[str, tuple[Path, str]] = {}

    def save(name: str, data, expected: str) -> None:
        torch.save(data, folder / name)
        cases[name] = (folder / name, expected)

    net = build_model("resnet18", 3, [0.5] * 3, [0.5] * 3)
    save("state-dict.pt", net.state_dict(), "it has no hyper_parameters")
    save("tensor.pt", torch.zeros(3), "it holds a Tensor")
    save("foreign.ckpt", {"epoch": 3, "model": net.state_dict()}, "it has no hyper_parameters")
    data = torch.load(real, weights_only=True)
    del data["hyper_parameters"]["classes"]
    save("no-classes.ckpt", data, "missing classes")
    data = torch.load(real, weights_only=True)
    del data["hyper_parameters"]["config"]["input_size"]
    del data["hyper_parameters"]["mean"]
    save("no-size.ckpt", data, "missing mean, config.input_size")
    data = torch.load(real, weights_only=True)
    data["hyper_parameters"]["std"] = "wide"
    save("bad-std.ckpt", data, "std is not three numbers")
    data = torch.load(real, weights_only=True)
    data["state_dict"] = {k: v for k, v in data["state_dict"].items() if "fc" not in k}
    save("no-head.ckpt", data, "weights do not fit resnet18")
    ensemble = {"format": "binsort-ensemble", "version": 1, "members": [{"temperature": 1.0}]}
    save("empty-member.pt", ensemble, "it has no hyper_parameters")
    (folder / "empty.ckpt").write_bytes(b"")
    cases["empty.ckpt"] = (folder / "empty.ckpt", "empty or cut short")
    (folder / "notes.ckpt").write_text("weights: see the wiki\n")
    cases["notes.ckpt"] = (folder / "notes.ckpt", "refused to load")
    whole = real.read_bytes()
    (folder / "cut.ckpt").write_bytes(whole[: len(whole) // 2])
    cases["cut.ckpt"] = (folder / "cut.ckpt", "damaged")
    return cases


@pytest.mark.parametrize("command", ["evaluate", "ensemble", "predict", "export"])
def test_files_of_other_programs_are_clear_errors(
    trained_runs: list, photos: Path, tmp_path: Path, command: str
) -> None:
    cases = other_programs_files(tmp_path, trained_runs[0].last_checkpoint)
    for path, expected in cases.values():
        result = runner.invoke(app, commands(path, photos, tmp_path)[command])
        assert_one_line_error(result, path.name, expected)
