"""``--probe``: the head fitted as a logistic regression on frozen features before training."""

from __future__ import annotations

import pytest
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn
from typer.testing import CliRunner

from binsort.cli import app
from binsort.errors import BinsortError
from binsort.models.probe import PROBE_C, features, fit_head, head_module
from conftest import TINY_TRAIN

runner = CliRunner()


def blobs(labels: list[int], dim: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy points around one random centre per label."""
    g = torch.Generator().manual_seed(seed)
    y = torch.tensor(labels)
    centres = torch.randn(max(labels) + 1, dim, generator=g) * 3
    return centres[y] + torch.randn(len(labels), dim, generator=g), y


def test_the_head_becomes_the_logistic_regression():
    x, y = blobs([0, 1, 2] * 20)
    head = nn.Linear(8, 3)

    accuracy = fit_head(head, x, y, 3)

    expected = LogisticRegression(C=PROBE_C, max_iter=1000).fit(x.numpy(), y.numpy())
    with torch.no_grad():
        got = torch.softmax(head(x), 1).numpy()
    assert abs(got - expected.predict_proba(x.numpy())).max() < 1e-5
    assert accuracy == pytest.approx(expected.score(x.numpy(), y.numpy())) and accuracy > 0.9


def test_two_present_classes_of_four_keep_their_odds_and_the_absent_ones_lose():
    x, y = blobs([0, 2] * 15)
    head = nn.Linear(8, 4)

    fit_head(head, x, y, 4)

    expected = LogisticRegression(C=PROBE_C, max_iter=1000).fit(x.numpy(), y.numpy())
    with torch.no_grad():
        got = torch.softmax(head(x), 1).numpy()
    assert abs(got[:, [0, 2]] - expected.predict_proba(x.numpy())).max() < 1e-4
    assert got[:, [1, 3]].max() < 1e-3


def test_one_class_and_a_convolutional_head_are_refused():
    x, y = blobs([1] * 6)
    with pytest.raises(BinsortError, match="at least two classes"):
        fit_head(nn.Linear(8, 3), x, y, 3)
    from binsort.models.factory import build_model, head_prefixes

    net = build_model("squeezenet1_1", 3, [0.5] * 3, [0.5] * 3).net
    with pytest.raises(BinsortError, match="needs a Linear classifier head"):
        head_module(net, head_prefixes(net, 3))


def test_features_are_the_heads_inputs_in_eval_mode():
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.9), nn.Linear(8, 3))
    model.train()
    x = torch.rand(5, 4)
    batches = [(x[:3], torch.tensor([0, 1, 2])), (x[3:], torch.tensor([2, 0]))]

    got, labels = features(model, model[2], batches)

    assert torch.equal(labels, torch.tensor([0, 1, 2, 2, 0])) and model.training
    assert torch.allclose(got, model[0](x), atol=1e-6)  # no dropout: evaluation mode


def test_train_probe_fits_the_head_once_and_not_again_on_resume(image_folder, tmp_path):
    from binsort.models.factory import build_model

    start = tmp_path / "start.pt"
    torch.save(build_model("resnet18", 1000, [0.5] * 3, [0.5] * 3).net.state_dict(), start)
    runs = tmp_path / "runs"
    args = ["train", "--root", str(image_folder), "--out", str(runs), *TINY_TRAIN]
    args += ["--weights", str(start), "--epochs", "1", "--probe", "--lr", "1e-9"]

    result = runner.invoke(app, args)

    assert result.exit_code == 0, result.output
    assert "--probe: head fitted on the features of 21 training images" in result.output
    folder = runs / "default" / "version_0"
    trained = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)
    # A loaded backbone's fresh head starts with zero bias; the probe's does not, and a
    # learning rate of 1e-9 leaves what it fitted.
    assert trained["state_dict"]["model.net.fc.bias"].abs().max() > 0.01
    resumed = runner.invoke(app, ["train", "--resume", str(folder), "--epochs", "2"])
    assert resumed.exit_code == 0, resumed.output
    assert "--probe" not in resumed.output


def test_probe_without_pretrained_weights_or_a_linear_head_is_refused(image_folder, tmp_path):
    args = ["train", "--root", str(image_folder), "--out", str(tmp_path / "runs"), *TINY_TRAIN]
    result = runner.invoke(app, [*args, "--weights", "none", "--probe"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "--probe fits the head on pretrained features: it needs --weights" in result.output
    from binsort.models.factory import build_model

    start = tmp_path / "squeeze.pt"
    torch.save(build_model("squeezenet1_1", 1000, [0.5] * 3, [0.5] * 3).net.state_dict(), start)
    args += ["--model", "squeezenet1_1", "--weights", str(start), "--probe"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "--probe needs a Linear classifier head" in result.output
    assert not (tmp_path / "runs").exists()  # refused before any run folder was made


def test_the_probe_counts_as_training_time(image_folder, tmp_path, monkeypatch):
    """Time-to-accuracy figures read the epochs' times: the first one includes the probe."""
    import time

    import binsort.models.module as module
    from binsort.config import TrainConfig
    from binsort.models.factory import build_model
    from binsort.train import fit

    slow = module.features

    def features(*args):
        time.sleep(1.0)
        return slow(*args)

    monkeypatch.setattr(module, "features", features)
    start = tmp_path / "start.pt"
    torch.save(build_model("resnet18", 1000, [0.5] * 3, [0.5] * 3).net.state_dict(), start)
    cfg = TrainConfig.from_options(
        root=str(image_folder),
        out=str(tmp_path / "runs"),
        model="resnet18",
        weights=str(start),
        input_size=16,
        batch=4,
        workers=0,
        epochs=2,
        probe=True,
    )

    result = fit(cfg)

    first, second = (row["epoch_seconds"] for row in result.history)
    assert first > 1.0 and first - second > 0.8


def test_a_model_with_two_heads_is_refused():
    """A distilled model averages two heads; a probe fitted for one would meet the other's
    random answers."""
    with pytest.raises(BinsortError, match="this model has 2: head, head_dist"):
        head_module(nn.Module(), ["head.", "head_dist."])
