"""``binsort ensemble`` and ``binsort.ensemble``: greedy selection, packing, safe files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from binsort.cli import app
from binsort.data.images import open_rgb
from binsort.ensemble import build_ensemble, select_greedy
from binsort.errors import BinsortError
from binsort.evaluate import evaluate
from binsort.imagesets import image_set
from binsort.inference import probabilities
from binsort.models.checkpoint import load_members
from binsort.runner import calibrate_members
from conftest import make_image_folder, view_mean_nll

runner = CliRunner()


def one_hot_probs(preds: list[int], classes: int = 3, confidence: float = 0.8) -> torch.Tensor:
    rest = (1 - confidence) / (classes - 1)
    probs = torch.full((len(preds), classes), rest)
    probs[torch.arange(len(preds)), torch.tensor(preds)] = confidence
    return probs


def test_greedy_picks_the_good_member_and_keeps_the_best_prefix() -> None:
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    probs = torch.stack(
        [
            one_hot_probs([1, 2, 0, 1, 2, 0]),  # always wrong
            one_hot_probs([0, 1, 2, 0, 1, 0]),  # 5 of 6 right: the one to pick
            one_hot_probs([0, 0, 0, 0, 0, 0]),  # 2 of 6
        ]
    )
    selection = select_greedy(probs, labels, names=["bad", "good", "zeros"])
    assert selection.steps[0].member == 1
    assert selection.steps[0].name == "good"
    assert selection.steps[0].accuracy == pytest.approx(5 / 6)
    # Adding the others never beats "good" alone; repeating it ties on accuracy and NLL.
    assert set(selection.chosen) == {1}
    assert len(selection.steps) <= 6  # at most twice the candidates


def test_greedy_breaks_ties_by_lower_nll() -> None:
    labels = torch.tensor([0, 1, 2])
    sure = one_hot_probs([0, 1, 2], confidence=0.9)
    unsure = one_hot_probs([0, 1, 2], confidence=0.5)
    selection = select_greedy(torch.stack([unsure, sure]), labels)
    assert selection.steps[0].member == 1


def test_greedy_combines_complementary_members() -> None:
    # Each member is wrong on a different image; their mean is right on all of them.
    labels = torch.tensor([0, 1, 2])
    a = torch.tensor([[0.6, 0.4, 0.0], [0.0, 0.6, 0.4], [0.0, 0.55, 0.45]])
    b = torch.tensor([[0.45, 0.55, 0.0], [0.0, 0.6, 0.4], [0.0, 0.4, 0.6]])
    selection = select_greedy(torch.stack([a, b]), labels, patience=2)
    assert sorted(set(selection.chosen)) == [0, 1]
    assert selection.steps[selection.kept - 1].accuracy == pytest.approx(1.0)


def test_greedy_respects_max_steps_and_rejects_bad_limits() -> None:
    labels = torch.tensor([0, 1])
    probs = torch.stack([one_hot_probs([0, 1], 2), one_hot_probs([1, 0], 2)])
    assert len(select_greedy(probs, labels, max_steps=1).steps) == 1
    with pytest.raises(BinsortError):
        select_greedy(probs, labels, max_steps=0)


def test_pack_round_trips_and_loads_weights_only(trained_runs: list, tmp_path: Path) -> None:
    ckpts = [str(r.last_checkpoint) for r in trained_runs]
    out = tmp_path / "ens.pt"
    result = runner.invoke(app, ["ensemble", *ckpts, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "2 member(s), 2 distinct" in result.output
    data = torch.load(out, weights_only=True)
    assert data["format"] == "binsort-ensemble" and len(data["members"]) == 2
    members = load_members(out)
    originals = [load_members(c)[0] for c in ckpts]
    split = originals[0].split  # any images will do: take the run's test files
    images = [open_rgb(Path(split["root"]) / p) for p in split["test"][:4]]
    assert torch.equal(probabilities(members, images), probabilities(originals, images))


def test_input_size_feeds_members_another_size(trained_runs: list, tmp_path: Path) -> None:
    ckpt = str(trained_runs[0].last_checkpoint)
    out = tmp_path / "ens.pt"

    result = runner.invoke(app, ["ensemble", ckpt, "-o", str(out), "--input-size", "40"])

    assert result.exit_code == 0, result.output
    assert "40 px" in result.output
    (member,) = load_members(out)
    assert member.input_size == 40
    assert member.hparams["config"]["input_size"] == 32  # the training size stays on record
    split = member.split
    images = [open_rgb(Path(split["root"]) / p) for p in split["test"][:4]]
    original = load_members(ckpt)
    assert not torch.allclose(probabilities([member], images), probabilities(original, images))
    bad = runner.invoke(app, ["ensemble", ckpt, "-o", str(tmp_path / "b.pt"), "--input-size", "4"])
    assert bad.exit_code == 1 and "--input-size must be" in bad.output
    assert "Traceback" not in bad.output and not (tmp_path / "b.pt").exists()


def test_input_size_a_fixed_size_model_cannot_take_is_one_line(
    trained_runs: list, tmp_path: Path
) -> None:
    """A vision transformer takes only the size it was built for."""
    from binsort.models.factory import build_model

    vit = "timm/vit_tiny_patch16_224"
    (member,) = load_members(trained_runs[0].last_checkpoint)
    config = {**member.hparams["config"], "model": vit, "input_size": 224}
    net = build_model(vit, len(member.classes), [0.5] * 3, [0.5] * 3)
    ckpt = tmp_path / "vit.ckpt"
    state = {f"model.{k}": v for k, v in net.state_dict().items()}
    torch.save(
        {"hyper_parameters": {**member.hparams, "config": config}, "state_dict": state}, ckpt
    )
    out = tmp_path / "e.pt"

    bad = runner.invoke(app, ["ensemble", str(ckpt), "-o", str(out), "--input-size", "256"])

    assert bad.exit_code == 1 and "--input-size 256: timm/vit_tiny_patch16_224 cannot take" in (
        " ".join(bad.output.split())
    )
    assert "Traceback" not in bad.output and not out.exists()


def test_a_damaged_member_input_size_is_refused(trained_runs: list, tmp_path: Path) -> None:
    out = tmp_path / "ens.pt"
    runner.invoke(app, ["ensemble", str(trained_runs[0].last_checkpoint), "-o", str(out)])
    data = torch.load(out, weights_only=True)
    data["members"][0]["input_size"] = -3
    torch.save(data, out)
    with pytest.raises(BinsortError, match="input size"):
        load_members(out)


def test_refuses_to_overwrite_without_force(trained_runs: list, tmp_path: Path) -> None:
    ckpt = str(trained_runs[0].last_checkpoint)
    out = tmp_path / "ens.pt"
    out.write_text("precious")
    result = runner.invoke(app, ["ensemble", ckpt, "-o", str(out)])
    assert result.exit_code == 1, result.output
    assert "--force" in result.output and "Traceback" not in result.output
    assert out.read_text() == "precious"
    result = runner.invoke(app, ["ensemble", ckpt, "-o", str(out), "--force"])
    assert result.exit_code == 0, result.output
    assert len(load_members(out)) == 1
    assert not list(tmp_path.glob("*.tmp"))


def test_greedy_cli_with_calibration(trained_runs: list, tmp_path: Path) -> None:
    ckpts = [str(r.last_checkpoint) for r in trained_runs]
    val = make_image_folder(tmp_path / "val", per_class=3, size=(36, 36), seed=5, tag="_val")
    out = tmp_path / "greedy.pt"
    args = ["ensemble", *ckpts, "-o", str(out), "--select", "greedy", "--calibrate"]
    result = runner.invoke(app, [*args, "--root", str(val)])
    assert result.exit_code == 0, result.output
    assert "Greedy selection" in result.output
    members = load_members(out)
    assert 1 <= len(members) <= 4
    assert all(m.temperature != 1.0 for m in members)
    assert "the factor that calibrates their mean" in result.output


def test_calibrate_scales_the_kept_members_temperatures_by_one_factor(
    trained_runs: list, tmp_path: Path
) -> None:
    ckpts = [r.last_checkpoint for r in trained_runs]
    val = make_image_folder(tmp_path / "val", per_class=4, size=(36, 36), seed=6, tag="_val")

    result = build_ensemble(ckpts, tmp_path / "e.pt", calibrate=True, root=val)

    assert result.scale is not None and result.scale > 0
    alone = [c.member.temperature for c in result.candidates]  # each member's own fit
    stored = [m.temperature for m in load_members(result.path)]
    assert stored == pytest.approx([t * result.scale for t in alone])


def test_calibrate_with_flips_fits_the_views_predict_will_average(
    trained_runs: list, tmp_path: Path
) -> None:
    ckpts = [r.last_checkpoint for r in trained_runs]
    val = make_image_folder(tmp_path / "val", per_class=4, size=(36, 36), seed=6, tag="_val")
    members = [m for c in ckpts for m in load_members(c)]
    images = image_set(members[0].classes, val, None, "val")

    flips = calibrate_members(members, images, tta="flip")
    plain = calibrate_members(members, images)

    assert [lg.shape[0] for lg in flips.logits] == [3] * len(members)  # as is, two flips
    assert [lg.shape[0] for lg in plain.logits] == [1] * len(members)
    assert flips.temperatures != pytest.approx(plain.temperatures)
    # Each fit is the best for what flip predicts.
    pairs = zip(flips.logits, flips.temperatures, plain.temperatures, strict=True)
    for views, fitted, other in pairs:
        best = view_mean_nll(views, fitted, flips.labels)
        assert best <= view_mean_nll(views, other, flips.labels) + 1e-9
    result = build_ensemble(ckpts, tmp_path / "e.pt", calibrate=True, root=val, tta="flip")
    args = ["ensemble", *map(str, ckpts), "-o", str(tmp_path / "cli.pt"), "--root", str(val)]
    said = runner.invoke(app, [*args, "--calibrate", "--tta", "flip"])
    assert said.exit_code == 0 and "fitted for --tta flip" in " ".join(said.output.split())
    temps, scale = flips.for_ensemble(list(range(len(members))), [1] * len(members))
    assert result.scale == pytest.approx(scale)
    stored = load_members(result.path)
    assert [m.temperature for m in stored] == pytest.approx(temps)
    assert {m.tta for m in stored} == {"flip"}  # so that export predicts with the same views
    # Scored without the flips it was calibrated for, evaluate says so, once per file.
    plain_eval = evaluate([result.path], root=val)
    said = [w for w in plain_eval.warnings if "fitted for --tta flip" in w]
    assert len(said) == 1 and "scored here with --tta none" in said[0]
    flip_eval = evaluate([result.path], root=val, tta="flip")
    assert not [w for w in flip_eval.warnings if "fitted for --tta" in w]


def test_greedy_on_a_run_split_guards_against_training_images(
    trained_runs: list, tmp_path: Path
) -> None:
    # Run 2 (another seed, another split of the same folder) trained on run 1's val images.
    ckpts = [str(r.last_checkpoint) for r in trained_runs]
    split1 = load_members(ckpts[0])[0].split
    split2 = load_members(ckpts[1])[0].split
    assert set(split1["val"]) & set(split2["train"])
    args = ["ensemble", *ckpts, "-o", str(tmp_path / "e.pt"), "--select", "greedy"]
    args += ["--split", str(trained_runs[0].run_dir)]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "were used to train" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, [*args, "--allow-overlap"])
    assert result.exit_code == 0, result.output
    assert "WARNING" in result.output


def test_greedy_needs_validation_images(trained_runs: list, tmp_path: Path) -> None:
    with pytest.raises(BinsortError, match="validation images"):
        build_ensemble([trained_runs[0].last_checkpoint], tmp_path / "e.pt", select="greedy")
    assert not (tmp_path / "e.pt").exists()


def test_calibrate_on_two_folders_guards_the_folders_a_member_trained_on(
    two_folder_run, tmp_path: Path
) -> None:
    run, _, b = two_folder_run
    held_a = make_image_folder(tmp_path / "ha", per_class=2, size=(36, 36), tag="_ha")
    held_b = make_image_folder(tmp_path / "hb", ("landfill",), per_class=3, size=(36, 36))
    args = ["ensemble", str(run.last_checkpoint), "--calibrate", "-o"]
    roots = ["--root", str(held_a), "--root", str(held_b)]
    result = runner.invoke(app, [*args, str(tmp_path / "ens.pt"), *roots])
    assert result.exit_code == 0, result.output
    assert load_members(tmp_path / "ens.pt")[0].temperature != 1.0
    roots = ["--root", str(held_a), "--root", str(b)]  # b: photos the member trained on
    result = runner.invoke(app, [*args, str(tmp_path / "leak.pt"), *roots])
    assert result.exit_code == 1 and "were used to train" in result.output, result.output


def _sibling(ckpt: Path, out: Path, scale: float) -> Path:
    """A copy of ``ckpt`` (same split and architecture) with its float weights scaled."""
    data = torch.load(ckpt, weights_only=False)
    data["state_dict"] = {
        k: v * scale if v.is_floating_point() else v for k, v in data["state_dict"].items()
    }
    torch.save(data, out)
    return out


def test_soup_is_one_network_with_the_mean_of_the_weights(
    trained_runs: list, tmp_path: Path
) -> None:
    first = Path(trained_runs[0].last_checkpoint)
    second = _sibling(first, tmp_path / "second.ckpt", 0.5)
    out = tmp_path / "soup.pt"

    result = runner.invoke(app, ["ensemble", str(first), str(second), "--soup", "-o", str(out)])

    assert result.exit_code == 0, result.output
    assert "soup of 2" in result.output and "1 member(s)" in result.output
    (soup,) = load_members(out)
    (a,), (b,) = load_members(first), load_members(second)
    for key, value in soup.model.state_dict().items():
        if value.is_floating_point():
            mean = (a.model.state_dict()[key] + b.model.state_dict()[key]) / 2
            assert torch.allclose(value, mean, atol=1e-6), key
    assert soup.hparams["soup"] == [str(first), str(second)]
    # A soup of one network with itself is that network.
    build_ensemble([first, first], tmp_path / "same.pt", soup=True)
    images = [open_rgb(Path(a.split["root"]) / p) for p in a.split["test"][:4]]
    assert torch.allclose(
        probabilities(load_members(tmp_path / "same.pt"), images),
        probabilities([a], images),
        atol=1e-6,
    )


def test_soup_with_calibration_fits_one_temperature(trained_runs: list, tmp_path: Path) -> None:
    first = Path(trained_runs[0].last_checkpoint)
    second = _sibling(first, tmp_path / "second.ckpt", 0.9)
    out = tmp_path / "soup.pt"
    args = ["ensemble", str(first), str(second), "--soup", "--calibrate", "-o", str(out)]

    result = runner.invoke(app, [*args, "--split", str(trained_runs[0].run_dir)])

    assert result.exit_code == 0, result.output
    (soup,) = load_members(out)
    assert soup.temperature != 1.0


def test_soup_refuses_what_cannot_be_averaged(trained_runs: list, tmp_path: Path) -> None:
    from binsort.models.factory import build_model

    first, other_split = (str(r.last_checkpoint) for r in trained_runs)
    (member,) = load_members(first)
    net = build_model("mobilenet_v3_small", len(member.classes), [0.5] * 3, [0.5] * 3)
    config = {**member.hparams["config"], "model": "mobilenet_v3_small"}
    small = tmp_path / "small.ckpt"
    state = {f"model.{k}": v for k, v in net.state_dict().items()}
    torch.save(
        {"hyper_parameters": {**member.hparams, "config": config}, "state_dict": state}, small
    )
    out = tmp_path / "soup.pt"
    cases = {
        (first, other_split): "different splits",
        (first, str(small)): "one architecture",
        (first,): "two or more",
    }
    for models, message in cases.items():
        bad = runner.invoke(app, ["ensemble", *models, "--soup", "-o", str(out)])
        assert bad.exit_code == 1 and message in " ".join(bad.output.split()), bad.output
        assert "Traceback" not in bad.output and not out.exists()
    with pytest.raises(BinsortError, match="leave out --select"):
        build_ensemble([first, first], out, soup=True, select="greedy", root=tmp_path)
