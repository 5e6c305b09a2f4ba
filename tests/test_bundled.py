"""``--weights bundled``: a member of the bundled ONNX model read back as a timm network that
computes what the file computes; member choice and refusals; a training run started from it;
batch-norm statistics re-measured with eval-mode answers unchanged."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from binsort.cli import app
from binsort.errors import BinsortError
from binsort.models.factory import build_model, head_prefixes
from binsort.models.norms import recentre_norms
from binsort.models.pretrained import load_weights, read_weights
from binsort.predict import default_model_path
from conftest import make_image_folder

runner = CliRunner()
pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif(default_model_path() is None, reason="a build without the bundled model"),
]
TRASHNET = ["cardboard", "glass", "metal", "paper", "plastic", "trash"]
LITE0 = "timm/tf_efficientnet_lite0"
# The rebuilt member and the file compute with the same float32 weights (int8 times its scale,
# as onnxruntime dequantises them at load), so only float32 arithmetic in another order
# separates them: measured 1.2e-7 to 6e-7 on probabilities over the five members (the sharpest
# member's temperature is 0.24, which magnifies logit differences 4x). 1e-4 leaves room for
# other CPUs' kernels and still catches any misplaced layer, which moves them by 1e-2 or more.
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def lite0():
    return read_weights("bundled", LITE0)


def member_outputs(images: np.ndarray) -> list[np.ndarray]:
    """Each member's tempered softmax, as the bundled file computes it."""
    import onnxruntime as ort

    proto = onnx.load(str(default_model_path()))
    ends = [n.output[0] for n in proto.graph.node if n.op_type == "Softmax"]
    for name in ends:
        proto.graph.output.append(
            onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
        )
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(proto.SerializeToString(), options, ["CPUExecutionProvider"])
    return session.run(ends, {"images_352": images})


def test_default_member_computes_what_the_file_computes(lite0):
    meta = json.loads(
        {p.key: p.value for p in onnx.load(str(default_model_path())).metadata_props}["binsort"]
    )
    assert lite0.origin.startswith("the bundled model (member 3, timm/tf_efficientnet_lite0")
    assert lite0.classes == TRASHNET and lite0.mean == [0.5] * 3 and lite0.std == [0.5] * 3
    assert lite0.folded_norms
    assert "cardboard/cardboard10.jpg" in lite0.split["train"]  # TrashNet's, for the guard
    model = build_model(LITE0, 6, lite0.mean, lite0.std)
    report = load_weights(model.net, lite0, head_prefixes(model.net, 6), TRASHNET)
    assert report.loaded == report.total and report.fresh == []
    # Smooth random pictures, not pixel noise: answers spread over several classes.
    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(3, 3, 11, 11, generator=generator)
    images = nn.functional.interpolate(coarse, size=352, mode="bilinear", align_corners=False)
    expected = member_outputs(images.numpy())[2]
    with torch.no_grad():
        logits = model.eval()(images)
    got = torch.softmax(logits / meta["members"][2]["temperature"], 1).numpy()
    assert np.abs(got - expected).max() < TOLERANCE, np.abs(got - expected).max()
    assert expected.max() < 0.999  # not saturated: the comparison means something


def test_the_head_is_kept_for_trashnets_classes_and_fresh_for_others(lite0):
    ours = ["trash", "plastic", "paper", "metal", "glass", "cardboard"]
    model = build_model(LITE0, 6, lite0.mean, lite0.std)
    report = load_weights(model.net, lite0, head_prefixes(model.net, 6), ours)
    assert report.fresh == [] and "reordered by name" in report.notes[0]
    head = model.net.classifier.weight
    assert torch.equal(head[0], lite0.state["classifier.weight"][5])
    model = build_model(LITE0, 2, lite0.mean, lite0.std)
    report = load_weights(model.net, lite0, head_prefixes(model.net, 2), ["cans", "paper"])
    assert report.fresh == ["classifier.bias", "classifier.weight"]


@pytest.mark.parametrize(
    "spec,arch,message",
    [
        ("bundled:1", LITE0, "is a timm/tf_efficientnet_lite2 network: train it with --model"),
        ("bundled:9", LITE0, r"choose a member from 1 to 5 \(1: tf_efficientnet_lite2"),
        ("bundled:x", LITE0, "choose a member from 1 to 5"),
        ("bundled", "resnet18", "the bundled model has no resnet18 member"),
    ],
)
def test_a_member_of_another_architecture_is_refused_in_one_line(spec, arch, message):
    with pytest.raises(BinsortError, match=message) as err:
        read_weights(spec, arch)
    assert "\n" not in str(err.value)


def test_a_member_is_chosen_by_number_and_its_architecture():
    source = read_weights("BUNDLED:4", "tf_efficientnet_lite1")
    assert source.origin.startswith("the bundled model (member 4, timm/tf_efficientnet_lite1")


def test_a_build_without_the_bundled_model_refuses(monkeypatch):
    monkeypatch.setattr("binsort.predict.default_model_path", lambda: None)
    with pytest.raises(BinsortError, match="ships without the bundled model"):
        read_weights("bundled", LITE0)


def test_training_starts_from_the_bundled_model(tmp_path):
    root = make_image_folder(tmp_path / "mine", classes=("cans", "paper"), per_class=6)
    argv = ["train", "--root", str(root), "--out", str(tmp_path / "runs"), "--weights"]
    argv += ["bundled", "--input-size", "32", "--epochs", "1", "--batch", "4", "--workers", "0"]
    result = runner.invoke(app, argv)
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "started from the bundled model (member 3, timm/tf_efficientnet_lite0" in output
    assert "batch-norm statistics measured on" in output
    assert "the head starts fresh" in output


def test_recentred_norms_keep_eval_answers_and_take_the_measured_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))
    model[1].weight.data.uniform_(0.5, 2)
    model[1].bias.data.normal_()
    images = torch.rand(12, 3, 8, 8) * 3 + 1  # far from the fresh statistics (0, 1)
    with torch.no_grad():
        before = model.eval()(images)
        used = recentre_norms(model, [(images[:8], None), (images[8:], None)], 10)
        after = model(images)
    assert used == 10
    assert torch.allclose(before, after, atol=1e-5)
    with torch.no_grad():
        inputs = model[0](images[:10])
    assert torch.allclose(model[1].running_mean, inputs.mean((0, 2, 3)), atol=1e-5)
    assert torch.allclose(model[1].running_var, inputs.var((0, 2, 3), unbiased=False), atol=1e-4)
    assert not model.training  # left in the mode it was found in
