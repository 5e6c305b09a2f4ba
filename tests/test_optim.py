import pytest
import torch

from binsort.config import TrainConfig
from binsort.models.factory import build_model, head_prefixes
from binsort.models.optim import EpochSchedule, build_optimizer, build_schedulers, param_groups


def groups_for(opt: str, **kw):
    cfg = TrainConfig.from_options(model="resnet18", weights=None, opt=opt, weight_decay=0.01, **kw)
    model = build_model("resnet18", 3, [0.5] * 3, [0.25] * 3)
    groups = param_groups(model.net, cfg, head_prefixes(model.net, 3))
    return cfg, model, groups


@pytest.mark.parametrize("opt", ["sgd", "adam", "adamw"])
def test_no_weight_decay_on_norms_and_biases(opt):
    cfg, model, groups = groups_for(opt)
    optimizer = build_optimizer(groups, cfg)
    decay_of = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    for name, param in model.net.named_parameters():
        if name.startswith("bn") or ".bn" in name or name.endswith(".bias"):
            assert decay_of[id(param)] == 0.0, name
        if name.endswith("conv1.weight") or name == "fc.weight":
            assert decay_of[id(param)] == 0.01, name
    assert len(decay_of) == sum(1 for _ in model.net.parameters())


def test_backbone_lr_scale_applies_to_all_but_head():
    cfg, model, groups = groups_for("adamw", backbone_lr_scale=0.1)
    head = {id(p) for p in model.net.fc.parameters()}
    for group in groups:
        is_head = all(id(p) in head for p in group["params"])
        assert group["lr"] == pytest.approx(cfg.optim.lr if is_head else cfg.optim.lr * 0.1)


def lrs(cfg: TrainConfig, epochs: int) -> list[float]:
    param = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.SGD([param], lr=cfg.optim.lr)
    configs = build_schedulers(optimizer, cfg)
    out = []
    for _ in range(epochs):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        for c in configs:  # what Lightning does once per epoch
            s = c["scheduler"]
            s.step(1.0) if "monitor" in c else s.step()
    return out


def test_step_scheduler_milestones_are_epochs():
    cfg = TrainConfig.from_options(
        weights=None, lr=1.0, scheduler="step", milestones=[2, 4], lr_gamma=0.1
    )
    assert lrs(cfg, 6) == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_warmup_composes_with_step_and_cosine():
    cfg = TrainConfig.from_options(
        weights=None, lr=1.0, scheduler="step", milestones=[3], lr_gamma=0.5, warmup_epochs=2
    )
    assert lrs(cfg, 5) == pytest.approx([1 / 3, 2 / 3, 1.0, 0.5, 0.5])
    cos = lrs(
        TrainConfig.from_options(
            weights=None, lr=1.0, scheduler="cosine", epochs=6, warmup_epochs=2
        ),
        6,
    )
    assert cos[:3] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert cos[3] < cos[2] and cos[5] < cos[4]


def test_plateau_reduces_after_patience_and_keeps_warmup():
    cfg = TrainConfig.from_options(
        weights=None, lr=1.0, scheduler="plateau", plateau_patience=1, lr_gamma=0.5, warmup_epochs=1
    )
    # Metric constant at 1.0: no improvement after the first epoch.
    out = lrs(cfg, 5)
    assert out[0] == pytest.approx(0.5)  # warmup
    assert out[1] == pytest.approx(1.0)
    assert out[-1] < 1.0


def test_epoch_schedule_is_plain_data_for_checkpoints():
    schedule = EpochSchedule("exp", 10, gamma=0.5)
    assert schedule(2) == pytest.approx(0.25)
    assert all(isinstance(v, (int, float, str, list)) for v in vars(schedule).values())


def test_train_accuracy_under_mixup_counts_the_larger_share():
    """With MixUp/CutMix an answer is right when it is the label with the larger share of the
    mixed image, not the unmixed label of the first image."""
    from binsort.models.module import Classifier

    cfg = TrainConfig.from_options(
        model="resnet18", weights=None, input_size=16, mixup=0.4, cutmix=1.0
    )
    torch.manual_seed(0)  # the initial weights, so the answers do not depend on earlier tests
    module = Classifier(cfg.to_dict(), ["a", "b", "c"], [0.5] * 3, [0.25] * 3)
    module.log = lambda *args, **kwargs: None  # no trainer here to log to
    x = torch.rand(16, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    y = torch.arange(16) % 3
    torch.manual_seed(2)  # a draw where the two counts differ (0.31 against 0.19)
    mixed, target = module.mixer(x, y)
    with torch.no_grad():
        answers = module(mixed).argmax(1)
    expected = (answers == target.argmax(1)).float().mean().item()
    assert expected != pytest.approx((answers == y).float().mean().item())
    torch.manual_seed(2)
    module.training_step((x, y), 0)
    assert module.train_acc.compute() == pytest.approx(expected)


def test_default_patiences_can_act_within_the_default_epochs():
    for cfg in (
        TrainConfig.from_options(weights=None),
        TrainConfig.from_options(weights="imagenet"),
    ):
        assert (
            cfg.optim.plateau_patience < cfg.optim.epochs
            and cfg.checkpoints.early_stop_patience < cfg.optim.epochs
        )
    assert (
        TrainConfig.from_options(weights=None, scheduler="exp").optim.lr_gamma
        ** TrainConfig.from_options(weights=None).optim.epochs
        > 0.1
    )  # not 0.2**20


def test_ema_decay_warms_up_to_its_cap():
    """--ema's average follows the recent weights early in a run: after the first step's
    weights (0) and 800 steps at 1, as in an 8-epoch fine-tune, a fixed decay of 0.999 would
    still hold 0.999**800 = 45 % of its average at 0; the warmed-up one holds almost none."""
    from torch.optim.swa_utils import AveragedModel

    from binsort.models.callbacks import ema_average

    net = torch.nn.Linear(1, 1, bias=False)
    averaged = AveragedModel(net, multi_avg_fn=ema_average(0.999))
    expected = 0.0
    with torch.no_grad():
        for n in range(801):
            net.weight.fill_(0.0 if n == 0 else 1.0)
            averaged.update_parameters(net)
            if n:
                d = min(0.999, (1 + n) / (10 + n))
                expected = d * expected + (1 - d) * 1.0
    assert averaged.module.weight.item() == pytest.approx(expected, abs=1e-6)
    assert averaged.module.weight.item() > 0.999

    # Late in a long run the cap governs: past n = 8991 the decay is 0.999 itself.
    late = [torch.tensor(0.0)]
    ema_average(0.999)(late, [torch.tensor(1.0)], torch.tensor(20000))
    assert late[0].item() == pytest.approx(0.001, abs=1e-6)


def test_warmup_and_cosine_move_every_step():
    """With 4 steps an epoch, half an epoch of warm-up is 2 steps: a third, two thirds, then
    the cosine from the full rate down to 0 at the end of the last epoch."""
    cfg = TrainConfig.from_options(
        weights=None, lr=1.0, scheduler="cosine", epochs=2, warmup_epochs=0.5
    )
    schedule = EpochSchedule.from_config(cfg, steps_per_epoch=4)
    factors = [schedule(step) for step in range(9)]
    assert factors[:3] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert all(a > b for a, b in zip(factors[2:], factors[3:], strict=False))
    assert factors[5] == pytest.approx(0.5) and factors[8] == pytest.approx(0.0)


def test_step_and_exp_still_decay_at_epoch_boundaries():
    step = EpochSchedule("step", 6, milestones=[1], gamma=0.5, steps_per_epoch=3)
    assert [step(s) for s in range(6)] == pytest.approx([1, 1, 1, 0.5, 0.5, 0.5])
    exp = EpochSchedule("exp", 6, warmup=1, gamma=0.5, steps_per_epoch=2)
    assert [exp(s) for s in range(6)] == pytest.approx([1 / 3, 2 / 3, 1, 1, 0.5, 0.5])
