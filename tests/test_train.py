"""End-to-end ``binsort train`` through the CLI on tiny images (a few seconds per run)."""

import json

import pytest
import torch
from typer.testing import CliRunner

from binsort.cli import _join_nargs, app
from conftest import TINY_TRAIN

runner = CliRunner()


def train(root, tmp_path, *args):
    argv = ["train", "--root", str(root), "--out", str(tmp_path / "runs"), *TINY_TRAIN, *args]
    return runner.invoke(app, argv)


def run_dir(tmp_path, name="default", version=0):
    return tmp_path / "runs" / name / f"version_{version}"


def test_one_epoch_end_to_end_writes_a_self_describing_run(image_folder, tmp_path):
    result = train(image_folder, tmp_path, "--epochs", "1", "--test-split", "0.25", "--seed", "7")
    assert result.exit_code == 0, result.output
    assert "Training finished" in result.output and "val accuracy at best" in result.output
    assert "Epoch 1/1" in result.output and "v_num" not in result.output
    folder = run_dir(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    assert config["model"] == "resnet18" and config["classes"] == ["glass", "metal", "paper"]
    split = json.loads((folder / "split.json").read_text())
    assert len(split["test"]) == 6 and split["seed"] == 7
    assert not set(split["train"]) & set(split["val"])
    assert (folder / "checkpoints" / "last.ckpt").is_file()
    assert list(folder.glob("events.out.tfevents.*"))
    ckpt = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["split"]["test"] == split["test"]


def test_split_seed_gives_ensemble_members_one_split_and_their_own_weights(image_folder, tmp_path):
    common = ["--epochs", "1", "--limit-batches", "1", "--test-split", "0.25", "--split-seed", "5"]
    for seed in ("1", "2"):
        result = train(image_folder, tmp_path, *common, "--seed", seed, "--name", f"s{seed}")
        assert result.exit_code == 0, result.output
    splits = [json.loads((run_dir(tmp_path, n) / "split.json").read_text()) for n in ("s1", "s2")]
    assert splits[0]["seed"] == splits[1]["seed"] == 5
    assert all(splits[0][k] == splits[1][k] for k in ("train", "val", "test"))
    states = [
        torch.load(run_dir(tmp_path, n) / "checkpoints" / "last.ckpt", weights_only=True)
        for n in ("s1", "s2")
    ]
    name = next(k for k in states[0]["state_dict"] if k.endswith("conv1.weight"))
    assert not torch.equal(states[0]["state_dict"][name], states[1]["state_dict"][name])


def test_augmentation_and_loss_options(image_folder, tmp_path):
    result = train(
        image_folder,
        tmp_path,
        "--epochs",
        "1",
        "--imbalance",
        "--class-weights",
        "--cutmix",
        "1.0",
        "--mixup",
        "0.2",
        "--label-smoothing",
        "0.1",
        "--aug-scale",
        "0.5",
        "--rotation",
        "30",
        "--shear",
        "5",
        "--perspective",
        "0.2",
        "--jitter",
        "0.3",
        "--grayscale",
        "0.2",
        "--vflip",
        "0.5",
        "--channels-last",
        "--mean",
        "0.5",
        "0.5",
        "0.5",
        "--std",
        "0.2",
        "0.2",
        "0.2",
    )
    assert result.exit_code == 0, result.output
    ckpt = torch.load(run_dir(tmp_path) / "checkpoints" / "last.ckpt", weights_only=True)
    hp = ckpt["hyper_parameters"]
    # The normalisation acts inside the model: its buffers are the options' values.
    assert ckpt["state_dict"]["model.norm.std"].flatten().tolist() == pytest.approx([0.2] * 3)
    assert ckpt["state_dict"]["model.norm.mean"].flatten().tolist() == [0.5] * 3
    # The training pipeline rebuilt from the stored config uses every augmentation option.
    from torchvision.transforms import v2

    from binsort.config import TrainConfig
    from binsort.data.transforms import batch_mixer, train_transform
    from binsort.models.module import Classifier

    cfg = TrainConfig.from_dict(hp["config"])
    steps = {type(t).__name__: t for t in train_transform(cfg).transforms}
    assert steps["RandomResizedCrop"].scale == (0.5, 1.0)
    assert steps["RandomAffine"].degrees == [-30.0, 30.0] and steps["RandomAffine"].shear
    assert steps["RandomPerspective"].distortion_scale == 0.2
    assert steps["ColorJitter"].brightness == (0.7, 1.3) and steps["RandomGrayscale"].p == 0.2
    assert isinstance(batch_mixer(3, cfg.aug.cutmix, cfg.aug.mixup), v2.RandomChoice)
    module = Classifier(hp["config"], hp["classes"], hp["mean"], hp["std"], hp["class_counts"])
    assert module.criterion.label_smoothing == 0.1 and module.criterion.weight is not None


def test_optimisation_options_act(image_folder, tmp_path):
    """Each option is observed acting, not only stored: the rate per epoch, the groups'
    settings, the frozen backbone, the optimiser steps and the EMA weights."""
    from binsort.models.factory import build_model

    start = tmp_path / "start.pt"
    torch.save(build_model("resnet18", 1000, [0.5] * 3, [0.5] * 3).net.state_dict(), start)
    result = train(
        image_folder,
        tmp_path,
        *("--weights", str(start), "--epochs", "2", "--lr", "0.01", "--save-top-k", "2"),
        *("--opt", "sgd", "--nesterov", "--momentum", "0.8", "--weight-decay", "1e-4"),
        *("--scheduler", "step", "--milestones", "1", "--lr-gamma", "0.1"),
        *("--warmup-epochs", "1", "--accumulate", "2", "--ema", "--ema-decay", "0.9"),
        *("--freeze-epochs", "1", "--backbone-lr-scale", "0.5"),
    )
    assert result.exit_code == 0, result.output
    folder = run_dir(tmp_path) / "checkpoints"
    last = torch.load(folder / "last.ckpt", weights_only=True)
    lrs, _ = lr_history(run_dir(tmp_path))
    # Epoch 0 starts on the first of its 3 warm-up steps (a quarter of the rate); epoch 1 at
    # the milestone's cut.
    assert lrs == pytest.approx([0.0025, 0.001])
    groups = {g["name"]: g for g in last["optimizer_states"][0]["param_groups"]}
    assert groups["backbone"]["lr"] == pytest.approx(0.5 * groups["head"]["lr"])
    assert groups["head"]["momentum"] == 0.8 and groups["head"]["nesterov"] is True
    assert groups["head"]["weight_decay"] == 1e-4 and groups["head_no_decay"]["weight_decay"] == 0
    # 18 training images, batch 4: 5 batches an epoch, a step every 2 (and at the epoch's end).
    assert last["global_step"] == 2 * 3
    # EMA: the checkpoint's weights are the average, the raw ones are kept beside them.
    raw = last["current_model_state"]
    assert not torch.equal(raw["model.net.fc.weight"], last["state_dict"]["model.net.fc.weight"])
    assert last["averaging_state"]["n_averaged"].item() == 2 * 3  # once per optimizer step
    # --freeze-epochs 1: after epoch 0 the backbone's parameters are the starting ones.
    (first,) = folder.glob("epoch000-*.ckpt")
    state = torch.load(first, weights_only=True)["current_model_state"]  # raw, not averaged
    initial = torch.load(start, weights_only=True)
    for name in ("conv1.weight", "layer1.0.conv1.weight", "layer4.1.bn2.bias"):
        assert torch.equal(state[f"model.net.{name}"], initial[name]), name
    assert not torch.equal(last["state_dict"]["model.net.conv1.weight"], initial["conv1.weight"])


def test_freeze_stages_keep_the_stem_and_first_stages_as_they_started(image_folder, tmp_path):
    """Weights and batch-norm statistics of the stem and stage 1 never move, through a
    head-only epoch (--freeze-epochs) and the epoch after it; the later stages learn."""
    from binsort.models.factory import build_model

    start = tmp_path / "start.pt"
    torch.save(build_model("timm/resnet18", 1000, [0.5] * 3, [0.5] * 3).net.state_dict(), start)
    base = ("--model", "timm/resnet18", "--weights", str(start), "--epochs", "2")
    result = train(image_folder, tmp_path, *base, "--freeze-stages", "1", "--freeze-epochs", "1")
    assert result.exit_code == 0, result.output
    last = torch.load(run_dir(tmp_path) / "checkpoints" / "last.ckpt", weights_only=True)
    state, initial = last["state_dict"], torch.load(start, weights_only=True)
    for name in (
        "conv1.weight",
        "bn1.running_mean",
        "layer1.1.conv2.weight",
        "layer1.0.bn1.running_var",
    ):
        assert torch.equal(state[f"model.net.{name}"], initial[name]), name
    for name in ("layer2.0.conv1.weight", "layer2.0.bn1.running_mean", "layer4.1.conv2.weight"):
        assert not torch.equal(state[f"model.net.{name}"], initial[name]), name
    assert last["hyper_parameters"]["config"]["freeze_stages"] == 1
    assert "eval mode" not in result.output  # Lightning's warning: the stages are so on purpose

    too_many = train(image_folder, tmp_path, *base, "--freeze-stages", "4")
    assert too_many.exit_code == 1 and "Traceback" not in too_many.output
    assert "timm/resnet18 has 4 stages after its stem; choose from 0 to 3" in " ".join(
        too_many.output.split()
    )
    torchvision = train(image_folder, tmp_path, "--freeze-stages", "1", "--weights", str(start))
    assert torchvision.exit_code == 1
    assert "--freeze-stages needs a timm model" in " ".join(torchvision.output.split())
    scratch = train(image_folder, tmp_path, "--model", "timm/resnet18", "--freeze-stages", "1")
    assert scratch.exit_code == 1
    assert "--freeze-stages needs starting weights" in " ".join(scratch.output.split())


def test_checkpoint_and_early_stop_options(image_folder, tmp_path):
    result = train(
        image_folder,
        tmp_path,
        "--epochs",
        "3",
        "--save-top-k",
        "2",
        "--save-monitor",
        "val_accuracy",
        "--early-stop",
        "loss",
        "--early-stop-patience",
        "1",
        "--scheduler",
        "plateau",
        "--plateau-monitor",
        "val_loss",
        "--plateau-patience",
        "1",
        "--name",
        "ck",
    )
    assert result.exit_code == 0, result.output
    ckpts = list((run_dir(tmp_path, "ck") / "checkpoints").glob("epoch*.ckpt"))
    assert 1 <= len(ckpts) <= 2


def test_resume_continues_the_same_run_to_more_epochs(image_folder, tmp_path):
    assert train(image_folder, tmp_path, "--epochs", "1").exit_code == 0
    folder = run_dir(tmp_path)
    last = folder / "checkpoints" / "last.ckpt"
    steps_per_epoch = torch.load(last, weights_only=True)["global_step"]
    result = runner.invoke(app, ["train", "--resume", str(folder), "--epochs", "2"])
    assert result.exit_code == 0, result.output
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["global_step"] == 2 * steps_per_epoch  # one more epoch, not two
    assert ckpt["hyper_parameters"]["config"]["epochs"] == 2
    history = next(v for k, v in ckpt["callbacks"].items() if "History" in k)
    assert [row["epoch"] for row in history["rows"]] == [0, 1]
    assert not run_dir(tmp_path, version=1).exists()


def test_weights_file_starts_training(image_folder, tmp_path):
    from binsort.models.factory import build_model

    path = tmp_path / "start.pt"
    torch.save(build_model("resnet18", 1000, [0.5] * 3, [0.5] * 3).net.state_dict(), path)
    result = train(image_folder, tmp_path, "--epochs", "1", "--weights", str(path))
    assert result.exit_code == 0, result.output
    assert "started from" in result.output and "fresh: fc.bias, fc.weight" in result.output
    start = torch.load(path, weights_only=True)
    first = next((run_dir(tmp_path) / "checkpoints").glob("epoch000-*.ckpt"))
    trained = torch.load(first, weights_only=True)["state_dict"]
    # Running statistics move in training but start from the file's, far from a fresh init.
    moved = (trained["model.net.bn1.running_var"] - start["bn1.running_var"]).abs().max()
    assert moved < 0.5 * start["bn1.running_var"].abs().max()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--model", "resnet81"], "did you mean resnet18"),
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--split", "0.6", "--test-split", "0.5"], "below 1"),
        (["--weights", "Nope_Weights.X"], "neither a file, 'imagenet', 'none' nor a torchvision"),
        (["--opt", "sgd", "--nesterov", "--momentum", "0"], "--nesterov needs a positive"),
        (["--scheduler", "exp", "--lr-gamma", "1.5"], "--lr-gamma must be in (0, 1]"),
    ],
)
def test_bad_options_are_one_line_errors(image_folder, tmp_path, args, message):
    result = train(image_folder, tmp_path, *args)
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output


def test_bad_roots_are_one_line_errors(tmp_path):
    result = train(tmp_path / "nowhere", tmp_path)
    assert result.exit_code == 1 and "no such folder" in result.output
    (tmp_path / "empty" / "only").mkdir(parents=True)
    result = train(tmp_path / "empty", tmp_path)
    assert result.exit_code == 1 and "at least two" in result.output


def test_seed_style_milestones_are_accepted():
    argv = ["train", "--milestones", "150", "190", "--lr", "0.1"]
    assert _join_nargs(argv) == ["train", "--milestones", "150,190", "--lr", "0.1"]


def test_folds_train_k_models_on_disjoint_validation_folds(tmp_path):
    from conftest import make_image_folder

    root = make_image_folder(tmp_path / "images", per_class=9)
    result = train(
        root, tmp_path, "--epochs", "1", "--folds", "3", "--test-split", "0.2", "--name", "cv"
    )
    assert result.exit_code == 0, result.output
    assert "Cross-validation, 3 folds" in result.output and "mean ± std" in result.output
    splits = [
        json.loads((tmp_path / "runs" / "cv" / f"fold_{i}" / "split.json").read_text())
        for i in range(3)
    ]
    vals = [set(s["val"]) for s in splits]
    assert not (vals[0] & vals[1]) and not (vals[1] & vals[2]) and not (vals[0] & vals[2])
    test = set(splits[0]["test"])
    assert test and all(set(s["test"]) == test for s in splits)
    assert all(not (set(s["train"]) | set(s["val"])) & test for s in splits)
    for i in range(3):
        assert (tmp_path / "runs" / "cv" / f"fold_{i}" / "checkpoints" / "last.ckpt").is_file()
    check_folds_record(tmp_path / "runs" / "cv", result.output, vals)


def check_folds_record(folder, output, vals):
    """folds.json: per fold the photos it validated, the pooled figure right over photos in
    all, every interval Wilson's; the table prints the pooled line."""
    from binsort.metrics import wilson_interval

    record = json.loads((folder / "folds.json").read_text())
    folds, pooled = record["folds"], record["pooled"]
    assert [f["photos"] for f in folds] == [len(v) for v in vals]
    for fold in folds:
        assert fold["interval"] == pytest.approx(wilson_interval(fold["correct"], fold["photos"]))
        assert fold["accuracy"] == pytest.approx(fold["correct"] / fold["photos"])
        assert fold["checkpoint"].endswith(".ckpt") and fold["best_epoch"] is not None
    right = sum(f["correct"] for f in folds)
    assert pooled["photos"] == sum(len(v) for v in vals) and pooled["correct"] == right
    assert pooled["accuracy"] == pytest.approx(right / pooled["photos"])
    assert pooled["interval"] == pytest.approx(wilson_interval(right, pooled["photos"]))
    accuracies = [f["accuracy"] for f in folds]
    assert record["mean"] == pytest.approx(sum(accuracies) / len(folds))
    assert record["standard_error"] == pytest.approx(record["std"] / len(folds) ** 0.5)
    line = next(x for x in output.splitlines() if "pooled out-of-fold" in x and "│" in x)
    assert f"{pooled['accuracy']:.4f}" in line and f"{pooled['interval'][0]:.3f}" in line
    assert "standard error of the mean" in output


def test_validation_carries_its_interval_and_warns_when_it_is_wide(trained_runs):
    """The best epoch's accuracy with the Wilson interval of the photos validation scored,
    per epoch in results.csv too; six validation photos are far too few to rank recipes."""
    import csv

    from binsort.metrics import wilson_interval
    from binsort.models.callbacks import RESULTS_COLUMNS

    result = trained_runs[0]
    assert result.val_photos == result.val_size == 6
    right = round(result.best_row["val_accuracy"] * 6)
    assert result.best_row["val_correct"] == right
    assert result.val_interval == pytest.approx(wilson_interval(right, 6))
    (warning,) = [w for w in result.warnings if "known to about" in w]
    assert "6 photos" in warning and "--folds K" in warning and "--split" in warning
    rows = list(csv.DictReader((result.run_dir / "results.csv").open()))
    assert tuple(rows[0]) == RESULTS_COLUMNS
    assert RESULTS_COLUMNS[-2:] == ("val_accuracy_low", "val_accuracy_high")
    for row in rows:
        low, acc, high = (
            float(row[k]) for k in ("val_accuracy_low", "val_accuracy", "val_accuracy_high")
        )
        assert 0 <= low <= acc <= high <= 1 and high - low > 0.2


def test_the_summary_shows_the_interval_of_the_photos_scored(image_folder, tmp_path):
    """--limit-batches 1 scores one batch of validation photos: the interval counts those."""
    args = ["--epochs", "1", "--limit-batches", "1", "--split", "0.5"]
    result = train(image_folder, tmp_path, *args)
    assert result.exit_code == 0, result.output
    assert "12 / 12 / 0" in result.output
    ckpt = torch.load(run_dir(tmp_path) / "checkpoints" / "last.ckpt", weights_only=True)
    (row,) = next(v for k, v in ckpt["callbacks"].items() if "History" in k)["rows"]
    assert row["val_photos"] == 4  # --batch 4, of the 12 validation photos
    line = next(x for x in result.output.splitlines() if "val accuracy at best" in x)
    low, high = row["val_accuracy_low"], row["val_accuracy_high"]
    assert f"{row['val_accuracy']:.4f} (95 % interval {low:.3f}-{high:.3f}, 4 photos)" in line
    assert "chosen on these photos" in result.output
    assert "WARNING: validation accuracy" in result.output


def test_folds_from_weights_that_trained_on_the_folds_warn(trained_runs, tmp_path):
    """Cross-validating from a checkpoint of the same photos: each fold validates on photos
    that shaped its starting weights, so its figures are optimistic and the run says so."""
    source = trained_runs[0]
    root = json.loads((source.run_dir / "split.json").read_text())["root"]
    args = ["--epochs", "1", "--folds", "2", "--test-split", "0.2", "--name", "cv"]
    result = train(root, tmp_path, *args, "--weights", str(source.best_checkpoint))
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "fold 0: the --weights checkpoint" in text and "fold 1: the --weights checkpoint" in text
    assert "of this run's validation images" in text and "figures will be optimistic" in text
    splits = [
        json.loads((tmp_path / "runs" / "cv" / f"fold_{i}" / "split.json").read_text())
        for i in range(2)
    ]
    check_folds_record(tmp_path / "runs" / "cv", result.output, [s["val"] for s in splits])


def test_docs_list_every_training_option():
    from pathlib import Path

    from binsort.config import OPTIONS, dash

    text = (Path(__file__).parents[1] / "docs" / "train.md").read_text()
    missing = [name for name in OPTIONS if f"`--{dash(name)}`" not in text]
    assert not missing, f"docs/train.md lacks {missing}"


def test_weights_from_a_binsort_checkpoint_carry_every_tensor(trained_runs):
    """A second training stage starts from a run's checkpoint (how the default model was made):
    every tensor of the network is taken, none left at its fresh value."""
    from binsort.models.checkpoint import load_members
    from binsort.models.factory import build_model
    from binsort.models.pretrained import load_weights, read_weights

    checkpoint = trained_runs[0].last_checkpoint
    member = load_members(checkpoint)[0]
    trained = member.model.net.state_dict()
    source = read_weights(str(checkpoint), "resnet18")
    fresh = build_model("resnet18", len(member.classes), [0.5] * 3, [0.5] * 3)

    report = load_weights(fresh.net, source, ["fc."], member.classes)

    assert report.fresh == [] and source.mean == member.hparams["mean"]
    for name, tensor in fresh.net.state_dict().items():
        assert torch.equal(tensor, trained[name]), name


def lr_history(folder):
    ckpt = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)
    rows = next(v for k, v in ckpt["callbacks"].items() if "History" in k)["rows"]
    return [row["lr"] for row in rows], ckpt["hyper_parameters"]["config"]


def test_resume_with_more_epochs_follows_the_new_schedule(image_folder, tmp_path):
    """A cosine run extended with --epochs continues on the longer cosine, not at rate 0."""
    common = ["--limit-batches", "1", "--scheduler", "cosine", "--lr", "0.01"]
    assert train(image_folder, tmp_path, *common, "--epochs", "4", "--name", "whole").exit_code == 0
    result = train(image_folder, tmp_path, *common, "--epochs", "2", "--name", "short")
    assert result.exit_code == 0, result.output
    folder = run_dir(tmp_path, "short")
    result = runner.invoke(app, ["train", "--resume", str(folder), "--epochs", "4"])
    assert result.exit_code == 0, result.output
    assert "exists and is not empty" not in result.output

    whole, _ = lr_history(run_dir(tmp_path, "whole"))
    resumed, config = lr_history(folder)
    assert resumed[:2] == pytest.approx([0.01, 0.005])  # the 2-epoch cosine
    assert resumed[2:] == pytest.approx(whole[2:]) and min(resumed) > 0
    assert config["epochs"] == 4  # what the record says is what ran


def test_schedules_act_through_a_real_run(image_folder, tmp_path):
    """exp decays by its own default gamma, only after the warm-up; step cuts at milestones."""
    runs = {
        "exp": ["--scheduler", "exp", "--warmup-epochs", "1"],
        "step": ["--scheduler", "step", "--milestones", "2", "--lr-gamma", "0.5"],
    }
    for name, args in runs.items():
        result = train(
            image_folder,
            tmp_path,
            "--epochs",
            "4",
            "--limit-batches",
            "1",
            "--lr",
            "0.01",
            "--name",
            name,
            *args,
        )
        assert result.exit_code == 0, result.output
    exp, config = lr_history(run_dir(tmp_path, "exp"))
    assert config["lr_gamma"] == 0.9
    assert exp == pytest.approx([0.005, 0.01, 0.009, 0.0081])
    step, _ = lr_history(run_dir(tmp_path, "step"))
    assert step == pytest.approx([0.01, 0.01, 0.005, 0.005])


def test_checkpoints_are_named_after_what_ranks_them(image_folder, tmp_path):
    result = train(image_folder, tmp_path, "--epochs", "1", "--limit-batches", "1")
    assert result.exit_code == 0, result.output
    (best,) = (run_dir(tmp_path) / "checkpoints").glob("epoch*.ckpt")
    assert best.name.startswith("epoch000-loss") and "-acc" in best.name


def test_imbalance_with_class_weights_warns(image_folder, tmp_path):
    args = ["--epochs", "1", "--limit-batches", "1", "--imbalance", "--class-weights"]
    result = train(image_folder, tmp_path, *args)
    assert result.exit_code == 0, result.output
    assert "over-weight the small classes" in result.output


def test_a_resumed_run_follows_the_uninterrupted_learning_rate_curve(image_folder, tmp_path):
    """Continuing from epoch 1's checkpoint with unchanged options retraces the same rates."""
    common = ["--limit-batches", "1", "--scheduler", "cosine", "--warmup-epochs", "1"]
    result = train(image_folder, tmp_path, *common, "--epochs", "4", "--save-top-k", "-1")
    assert result.exit_code == 0, result.output
    whole, _ = lr_history(run_dir(tmp_path))
    (epoch1,) = (run_dir(tmp_path) / "checkpoints").glob("epoch001-*.ckpt")
    result = runner.invoke(app, ["train", "--resume", str(epoch1)])
    assert result.exit_code == 0, result.output
    resumed, _ = lr_history(run_dir(tmp_path))
    assert len(resumed) == 4 and resumed == pytest.approx(whole)


def test_plateau_watches_its_metric_in_a_real_run(image_folder, tmp_path):
    """plateau on val_accuracy with patience 0: the rate is cut after every epoch that does
    not beat the best accuracy so far, as the logged history shows."""
    args = ["--epochs", "5", "--limit-batches", "1", "--lr", "0.01", "--scheduler", "plateau"]
    args += ["--plateau-monitor", "val_accuracy", "--plateau-patience", "0", "--lr-gamma", "0.5"]
    result = train(image_folder, tmp_path, *args)
    assert result.exit_code == 0, result.output
    ckpt = torch.load(run_dir(tmp_path) / "checkpoints" / "last.ckpt", weights_only=True)
    rows = next(v for k, v in ckpt["callbacks"].items() if "History" in k)["rows"]
    expected, best, lr = [], -1.0, 0.01
    for row in rows:
        expected.append(lr)
        if row["val_accuracy"] > best:
            best = row["val_accuracy"]
        else:
            lr *= 0.5
    assert [r["lr"] for r in rows] == pytest.approx(expected)


def test_a_run_writes_results_and_a_best_checkpoint(image_folder, tmp_path):
    import csv

    result = train(image_folder, tmp_path, "--epochs", "2", "--limit-batches", "1")
    assert result.exit_code == 0, result.output
    folder = run_dir(tmp_path)
    rows = list(csv.DictReader((folder / "results.csv").open()))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert all(float(r["lr"]) > 0 and float(r["val_loss"]) > 0 for r in rows)
    assert (folder / "results.png").stat().st_size > 1000
    best = torch.load(folder / "checkpoints" / "best.ckpt", weights_only=True)
    (kept,) = (folder / "checkpoints").glob("epoch*.ckpt")
    assert best["epoch"] == torch.load(kept, weights_only=True)["epoch"]


@pytest.mark.parametrize("cache", [False, True])
def test_eval_size_validates_at_its_size_and_the_checkpoint_keeps_it(image_folder, cache):
    from binsort.config import TrainConfig
    from binsort.data.datamodule import BinDataModule
    from binsort.data.folder import scan_folder

    samples = scan_folder(image_folder).samples
    cfg = TrainConfig.from_options(input_size=16, eval_size=24, batch=4, workers=0, cache=cache)
    dm = BinDataModule(image_folder, samples[:20], samples[20:], cfg)
    dm.setup("fit")
    x, _ = next(iter(dm.train_dataloader()))
    val, _ = next(iter(dm.val_dataloader()))
    assert x.shape[-1] == (19 if cache else 16)  # the cache keeps a margin for the crops
    assert val.shape[-1] == 24


def test_eval_size_end_to_end_through_export(image_folder, tmp_path):
    from binsort.models.checkpoint import load_checkpoint
    from binsort.onnx_model import OnnxModel

    result = train(image_folder, tmp_path, "--epochs", "1", "--eval-size", "24")
    assert result.exit_code == 0, result.output
    assert "validates at 24 px" in result.output and "enlarged" not in result.output
    folder = run_dir(tmp_path)
    loaded = load_checkpoint(folder)
    assert loaded.hparams["config"]["input_size"] == 16 and loaded.input_size == 24
    onnx = tmp_path / "m.onnx"
    result = runner.invoke(app, ["export", str(folder), "-o", str(onnx)])
    assert result.exit_code == 0, result.output
    assert OnnxModel(onnx).input_sizes == [24]


def test_eval_size_above_the_photos_warns_that_validation_enlarges_them(image_folder, tmp_path):
    result = train(
        image_folder, tmp_path, "--epochs", "1", "--limit-batches", "1", "--eval-size", "40"
    )
    assert result.exit_code == 0, result.output
    assert "--eval-size 40: 3 of 3 validation images are smaller" in " ".join(result.output.split())


@pytest.mark.parametrize(
    "args,message",
    [
        (["--eval-size", "4"], "--eval-size must be from 8 to 4096"),
        (["--model", "vit_b_16", "--input-size", "32", "--eval-size", "48"], "cannot take 48-px"),
    ],
)
def test_bad_eval_sizes_are_one_line_errors_before_any_run_folder(
    image_folder, tmp_path, args, message
):
    result = train(image_folder, tmp_path, "--epochs", "1", *args)
    assert result.exit_code == 1 and message in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "runs").exists()


def test_two_folders_train_one_model_on_the_union_of_their_classes(tmp_path):
    from conftest import make_image_folder

    a = make_image_folder(tmp_path / "a", per_class=5, tag="_a")
    b = make_image_folder(tmp_path / "b", ("paper", "landfill"), per_class=5, tag="_b")
    args = ("--root", str(b), "--epochs", "1", "--limit-batches", "1", "--test-split", "0.2")
    result = train(a, tmp_path, *args)
    assert result.exit_code == 0, result.output
    assert "16 / 4 / 5" in result.output  # 25 photos of both folders, split together
    folder = run_dir(tmp_path)
    classes = ["glass", "landfill", "metal", "paper"]
    split = json.loads((folder / "split.json").read_text())
    assert split["classes"] == classes
    assert split["roots"] == [str(a.resolve()), str(b.resolve())] and split["root"] == str(
        a.resolve()
    )
    paths = split["train"] + split["val"] + split["test"]
    assert len(paths) == len(set(paths)) == 25
    assert {p.split(":")[0] for p in paths} == {"0", "1"}  # each photo names its folder
    assert sum(p.startswith("1:paper/") for p in paths) == 5
    config = json.loads((folder / "config.json").read_text())
    assert config["root"] == [str(a), str(b)]
    ckpt = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)
    hparams = ckpt["hyper_parameters"]
    assert hparams["classes"] == classes and hparams["config"]["root"] == [str(a), str(b)]
    assert hparams["split"]["roots"] == split["roots"]
    # A resumed run reads both folders and the same split again.
    result = runner.invoke(app, ["train", "--resume", str(folder), "--epochs", "2"])
    assert result.exit_code == 0, result.output
    ckpt = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["hyper_parameters"]["split"]["train"] == split["train"]
    # ... but not another number of folders than its split records.
    result = runner.invoke(app, ["train", "--resume", str(folder), "--root", str(a)])
    assert result.exit_code == 1 and "records 2 image folder(s)" in result.output


def test_a_run_on_one_folder_records_it_as_it_always_did(image_folder, tmp_path):
    """Readers of config.json and split.json (and older checkpoints) see one root as a path."""
    from binsort.config import TrainConfig

    assert train(image_folder, tmp_path, "--epochs", "1", "--limit-batches", "1").exit_code == 0
    folder = run_dir(tmp_path)
    split = json.loads((folder / "split.json").read_text())
    assert split["root"] == str(image_folder.resolve()) and "roots" not in split
    assert not any(":" in p for p in split["train"])
    config = json.loads((folder / "config.json").read_text())
    assert config["root"] == str(image_folder)
    ckpt = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["config"]["root"] == str(image_folder)
    assert ckpt["hyper_parameters"]["split"] == {
        k: split[k] for k in ckpt["hyper_parameters"]["split"]
    }
    stored = {k: v for k, v in config.items() if k not in ("classes", "mean", "std")}
    assert TrainConfig.from_dict(stored).data.root == [str(image_folder)]


@pytest.mark.parametrize("case", ["twice", "inside"])
def test_a_root_given_twice_or_inside_another_is_a_one_line_error(image_folder, tmp_path, case):
    other = image_folder if case == "twice" else image_folder / "glass"
    result = train(image_folder, tmp_path, "--root", str(other), "--epochs", "1")
    assert result.exit_code == 1, result.output
    assert ("twice" if case == "twice" else "inside") in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_warmup_ramps_step_by_step_in_a_real_run(image_folder, tmp_path):
    """Two steps an epoch, one epoch of warm-up: the first step runs at a third of the rate
    (not half, as a per-epoch warm-up would), and the second epoch starts at the full rate."""
    args = ["--epochs", "2", "--limit-batches", "2", "--lr", "0.01", "--scheduler", "cosine"]
    result = train(image_folder, tmp_path, *args, "--warmup-epochs", "1")
    assert result.exit_code == 0, result.output
    rates, config = lr_history(run_dir(tmp_path))
    assert rates == pytest.approx([0.01 / 3, 0.01])
    assert config["warmup_epochs"] == 1


def test_fit_leaves_the_callers_config_warning_filters_and_log_levels_as_they_were(
    image_folder, tmp_path
):
    """fit trains on a copy of the config (the run records the model's canonical name, the
    caller keeps the name it gave) and sets back the warning filters and log levels it uses."""
    import copy
    import logging
    import warnings

    from binsort.config import TrainConfig
    from binsort.train import fit

    cfg = TrainConfig.from_options(
        root=str(image_folder),
        model="tv/resnet18",  # canonically "resnet18"
        weights=None,
        input_size=16,
        epochs=1,
        batch=4,
        workers=0,
        limit_batches=1,
        out=str(tmp_path / "runs"),
    )
    given = copy.deepcopy(cfg)
    # The first run also imports what training needs: libraries add filters of their own then.
    result = fit(cfg)
    assert cfg == given and cfg.model.model == "tv/resnet18"
    assert json.loads((result.run_dir / "config.json").read_text())["model"] == "resnet18"

    names = ("lightning", "lightning.pytorch", "lightning.fabric")
    levels = {name: logging.getLogger(name).level for name in names}
    with warnings.catch_warnings():
        warnings.resetwarnings()
        warnings.simplefilter("always", ResourceWarning)  # the caller's own filter
        filters = list(warnings.filters)
        fit(cfg)
        assert warnings.filters == filters
    assert {name: logging.getLogger(name).level for name in names} == levels
    assert cfg == given


def test_docs_show_the_presets_values():
    """docs/train.md's options table gives each preset option's values as the two presets
    resolve them ("FT, S with `--weights none`"): a changed preset fails here until the
    page says so."""
    import re
    from pathlib import Path

    from binsort.config import FINETUNE, SCRATCH, TrainConfig, dash

    text = (Path(__file__).parents[1] / "docs" / "train.md").read_text()
    tuned = TrainConfig.from_options(weights="imagenet").to_dict()
    scratch = TrainConfig.from_options(weights=None).to_dict()

    def same(cell: str, value) -> bool:
        return cell == value if isinstance(value, str) else float(cell) == float(value)

    for name in set(FINETUNE) | set(SCRATCH):
        pattern = rf"^\| `--{dash(name)}` \| (\S+), (\S+) with `--weights none` \|"
        row = re.search(pattern, text, re.MULTILINE)
        assert row, f"docs/train.md's options table has no preset row for --{dash(name)}"
        assert same(row[1], tuned[name]) and same(row[2], scratch[name]), name
