"""The model bundled in the package: present, small, and answering ``binsort predict``."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from binsort.cli import app
from binsort.onnx_model import OnnxModel
from binsort.predict import default_model_path

runner = CliRunner()
HELD_OUT = Path(__file__).parents[1] / "examples" / "held-out"
TRASHNET = ["cardboard", "glass", "metal", "paper", "plastic", "trash"]


def test_it_ships_and_is_small() -> None:
    path = default_model_path()
    assert path is not None and path.name == "default-model.onnx"
    assert path.stat().st_size <= 25_000_000  # 25 MB
    model = OnnxModel(path)
    assert model.classes == TRASHNET
    # Fine-tuned EfficientNet-Lite members, rebuilt by name from timm, int8 weights.
    # Trained at 224 (crops of the third), 260 (the first) and 288 px, every member is fed
    # 352-px images.
    assert [(m["arch"], m["input_size"]) for m in model.members] == [
        ("timm/tf_efficientnet_lite2", 352),
        ("timm/tf_efficientnet_lite2", 352),
        ("timm/tf_efficientnet_lite0", 352),
        ("timm/tf_efficientnet_lite1", 352),
        ("timm/tf_efficientnet_lite0", 352),
    ]
    assert model.metadata["weights"] == "int8"


def test_predict_without_model_uses_it() -> None:
    result = runner.invoke(app, ["predict", str(HELD_OUT), "--format", "json"])

    assert result.exit_code == 0, result.output
    assert "the default model, default-model.onnx" in result.stderr
    rows = json.loads(result.stdout)
    assert sorted(Path(r["path"]).name for r in rows) == sorted(
        p.name for p in HELD_OUT.iterdir() if p.suffix == ".jpg"
    )
    for row in rows:
        assert row["error"] is None and row["class"] in TRASHNET and row["bin"]
        top = [t["probability"] for t in row["top"]]
        assert top == sorted(top, reverse=True) and sum(top) <= 1 + 1e-5
        assert 0 < row["probability"] == top[0] <= 1


def test_it_records_the_split_its_members_trained_on() -> None:
    """The split the docs' figures come from: evaluate knows the training photos of the file."""
    recorded = OnnxModel(default_model_path()).metadata["split"]
    committed = json.loads((Path(__file__).parents[1] / "docs" / "trashnet-split.json").read_text())
    assert recorded == committed
    assert [len(recorded[part]) for part in ("train", "val", "test")] == [1644, 183, 321]
    assert not set(recorded["train"]) & set(recorded["test"])


def test_evaluate_scores_it_as_default(tmp_path: Path) -> None:
    """'default' names the bundled model; its training photos are still refused."""
    import shutil

    root = tmp_path / "mine"
    for photo in HELD_OUT.glob("*.jpg"):  # test-split photos: never trained on
        cls = photo.stem.rstrip("0123456789")
        (root / cls).mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, root / cls / photo.name)
    out = tmp_path / "eval"
    result = runner.invoke(app, ["evaluate", "default", "--root", str(root), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "default-model.onnx" in result.output
    assert json.loads((out / "metrics.json").read_text())["images"] == 6
    trained = (Path(__file__).parents[1] / "examples" / "trashnet-sample").resolve()
    again = ["evaluate", "default", "--root", str(trained), "--out", str(tmp_path / "again")]
    result = runner.invoke(app, again)
    assert result.exit_code == 1 and "were used to train default-model.onnx" in result.output
