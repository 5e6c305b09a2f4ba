"""TrainConfig: its groups, the recipe presets, and the flat form checkpoints store."""

import dataclasses
import json
import typing
from pathlib import Path

import pytest

from binsort.config import FINETUNE, OPTIONS, SCHEDULER_GAMMA, SCRATCH, TrainConfig
from binsort.errors import BinsortError

# Configs as checkpoints and config.json recorded them before the options were grouped.
FLAT = json.loads((Path(__file__).parent / "fixtures" / "flat_configs.json").read_text())


@pytest.mark.parametrize("name", sorted(FLAT))
def test_a_stored_flat_config_reads_back_to_the_same_values_and_form(name):
    stored = FLAT[name]
    cfg = TrainConfig.from_dict(stored)
    for option, value in stored.items():
        group = getattr(cfg, OPTIONS[option].group)
        read = getattr(group, option)
        if option == "root" and isinstance(value, str):
            value = [value]
        if option in ("mean", "std") and value is not None:
            value = tuple(value)
        assert read == value, option
    # Written back flat, key for key and in the same order.
    assert list(cfg.to_dict().items()) == list(stored.items())


def test_stored_configs_read_with_grouped_access():
    tuned = TrainConfig.from_dict(FLAT["finetune_one_root"])
    assert tuned.data.root == ["data/trashnet288"] and tuned.data.val_size == 288
    assert (tuned.optim.lr, tuned.optim.warmup_epochs, tuned.optim.ema) == (5e-4, 0.5, True)
    assert (tuned.model.weights, tuned.model.backbone_lr_scale) == ("imagenet", 0.25)
    scratch = TrainConfig.from_dict(FLAT["scratch_two_roots"])
    assert scratch.data.root == ["data/trashnet144", "collected"]
    assert scratch.data.effective_split_seed == 3 and scratch.data.mean == (0.5, 0.5, 0.5)
    assert (scratch.model.model, scratch.model.weights) == ("resnet18", None)
    assert (scratch.optim.scheduler, scratch.optim.lr_gamma) == ("step", 0.2)
    assert (scratch.aug.rotation, scratch.aug.shear) == (SCRATCH["rotation"], SCRATCH["shear"])
    assert (scratch.checkpoints.early_stop, scratch.run.precision) == ("acc", "bf16-mixed")


def test_a_config_from_before_an_option_existed_takes_its_default_or_its_recipe():
    older = dict(FLAT["scratch_two_roots"])
    for name in ("eval_size", "backbone_lr_scale", "freeze_stages"):
        del older[name]
    cfg = TrainConfig.from_dict(older)
    assert cfg.data.eval_size is None and cfg.model.freeze_stages == 0
    assert cfg.model.backbone_lr_scale == SCRATCH["backbone_lr_scale"]


def test_unknown_stored_options_are_a_one_line_error():
    with pytest.raises(BinsortError, match="unknown training options: colour"):
        TrainConfig.from_dict({**FLAT["finetune_one_root"], "colour": "red"})


def test_presets_name_options_and_decide_every_option_without_a_default():
    assert set(FINETUNE) <= set(OPTIONS) and set(SCRATCH) <= set(OPTIONS)
    decided = {
        f.name
        for group in dataclasses.fields(TrainConfig)
        for f in dataclasses.fields(getattr(TrainConfig.from_options(), group.name))
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    # --lr-gamma follows --scheduler; every other one comes from both presets.
    assert decided - {"lr_gamma"} <= set(FINETUNE) & set(SCRATCH)
    for preset, weights in ((FINETUNE, "imagenet"), (SCRATCH, None)):
        cfg = TrainConfig.from_options(weights=weights)
        for name, value in preset.items():
            assert getattr(getattr(cfg, OPTIONS[name].group), name) == value, name
        assert cfg.optim.lr_gamma == SCHEDULER_GAMMA.get(preset["scheduler"], 0.2)


def test_preset_options_hold_their_true_type_and_show_both_presets_in_help():
    for name in set(FINETUNE) | set(SCRATCH):
        option = OPTIONS[name]
        assert type(None) not in typing.get_args(option.type), name
        assert option.default is None  # the command line passes None: not given
        assert "fine-tuning" in option.help and "from scratch" in option.help
    assert OPTIONS["epochs"].help.endswith(
        f"(default: {FINETUNE['epochs']} fine-tuning, {SCRATCH['epochs']} from scratch)."
    )
    assert OPTIONS["warmup_epochs"].type is float


def test_an_option_given_explicitly_wins_even_at_the_other_presets_value():
    cfg = TrainConfig.from_options(weights=None, lr=FINETUNE["lr"], opt=None)
    assert cfg.optim.lr == FINETUNE["lr"] and cfg.optim.opt == SCRATCH["opt"]
    cfg = TrainConfig.from_options(scheduler="exp")
    assert cfg.optim.lr_gamma == SCHEDULER_GAMMA["exp"]
    assert TrainConfig.from_options(scheduler="exp", lr_gamma=0.5).optim.lr_gamma == 0.5
    assert TrainConfig.from_options(warmup_epochs=0.25).optim.warmup_epochs == 0.25


def test_a_config_is_not_changed_in_place():
    cfg = TrainConfig.from_options()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.optim.lr = 1.0  # type: ignore[misc]
    changed = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, lr=1.0))
    assert changed.optim.lr == 1.0 and cfg.optim.lr == FINETUNE["lr"]
    with pytest.raises(BinsortError, match="--lr must be positive"):
        dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, lr=0.0))
