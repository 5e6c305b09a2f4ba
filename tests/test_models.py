import pytest
import torch

from binsort.errors import BinsortError
from binsort.models.checkpoint import load_checkpoint, load_members
from binsort.models.factory import Normalize, build_model, head_prefixes, resolve_model_name
from binsort.models.pretrained import load_weights, read_weights


def test_unknown_model_name_suggests_close_names():
    with pytest.raises(BinsortError, match="did you mean resnet18"):
        resolve_model_name("resnet81")


def test_normalisation_is_the_first_layer():
    model = build_model("resnet18", 4, [0.5, 0.5, 0.5], [0.25, 0.25, 0.25])
    assert isinstance(model[0], Normalize)
    x = torch.full((1, 3, 8, 8), 0.75)
    assert torch.allclose(model.norm(x), torch.ones_like(x))
    assert "norm.mean" in model.state_dict()


@pytest.mark.parametrize(
    "arch,head",
    [
        ("resnet18", "fc."),
        ("mobilenet_v3_small", "classifier.3."),
        ("squeezenet1_1", "classifier.1."),
    ],
)
def test_head_is_found_for_different_families(arch, head):
    model = build_model(arch, 5, [0.5] * 3, [0.5] * 3)
    assert head_prefixes(model.net, 5) == [head]


@pytest.mark.parametrize(
    "arch,heads",
    [
        # Distilled models average two heads: both learn at the head's rate.
        ("timm/deit_tiny_distilled_patch16_224", ["head.", "head_dist."]),
        ("timm/levit_128s", ["head.linear.", "head_dist.linear."]),
        ("timm/convnext_atto", ["head.fc."]),
    ],
)
def test_timm_models_name_their_heads(arch, heads):
    from binsort.config import TrainConfig
    from binsort.models.optim import param_groups

    net = build_model(arch, 5, [0.5] * 3, [0.5] * 3).net
    assert head_prefixes(net, 5) == heads
    groups = param_groups(net, TrainConfig.from_options(), heads)
    in_head = {id(p) for g in groups if g["name"].startswith("head") for p in g["params"]}
    assert all(id(net.get_parameter(prefix + "weight")) in in_head for prefix in heads)


def test_local_weights_file_replaces_the_head(tmp_path):
    source = build_model("resnet18", 10, [0.5] * 3, [0.5] * 3).net
    path = tmp_path / "weights.pt"
    torch.save(source.state_dict(), path)
    weights = read_weights(str(path), "resnet18")
    assert weights.mean is None and weights.std is None
    target = build_model("resnet18", 3, [0.5] * 3, [0.5] * 3).net
    report = load_weights(target, weights, ["fc."])
    assert report.fresh == ["fc.bias", "fc.weight"]
    assert torch.equal(target.conv1.weight, source.conv1.weight)


def test_weights_for_another_architecture_are_refused(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(build_model("mobilenet_v3_small", 3, [0.5] * 3, [0.5] * 3).net.state_dict(), path)
    source = read_weights(str(path), "resnet18")
    with pytest.raises(BinsortError, match="another architecture"):
        load_weights(build_model("resnet18", 3, [0.5] * 3, [0.5] * 3).net, source, ["fc."])


def test_torchvision_weights_name_fails_clearly_offline():
    with pytest.raises(BinsortError):
        read_weights("NoSuchNet_Weights.IMAGENET1K_V1", "resnet18")


def test_checkpoint_round_trip_gives_the_same_logits(trained_runs):
    from binsort.models.module import Classifier

    path = trained_runs[0].last_checkpoint
    loaded = load_checkpoint(path)
    module = Classifier.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    module.eval()
    x = torch.rand(2, 3, loaded.input_size, loaded.input_size)
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), module(x), atol=1e-6)
    hp = loaded.hparams
    assert loaded.classes == ["glass", "metal", "paper"]
    assert hp["config"]["model"] == "resnet18" and hp["config"]["input_size"] == 32
    assert hp["split"]["seed"] == 1 and hp["split"]["test"]
    assert len(hp["mean"]) == 3 and len(hp["std"]) == 3


def test_non_checkpoint_files_are_refused(tmp_path):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(BinsortError, match="refused"):
        load_members(junk)
    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {}}, plain)
    with pytest.raises(BinsortError, match="not a binsort checkpoint"):
        load_members(plain)
