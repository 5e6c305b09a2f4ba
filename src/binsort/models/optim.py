"""Optimiser parameter groups and learning-rate schedules.

Weight decay is never applied to normalisation weights or biases (any parameter with fewer
than two dimensions); the classifier head can learn faster than the backbone when
fine-tuning. The warm-up and the cosine move with every optimiser step: stepped once per
epoch, a one-epoch warm-up of a 3-epoch fine-tune spends a third of the run at a third of
the rate, and no warm-up at all starts the new head's largest gradients at the full rate.
Step and exp decay at epoch boundaries, so milestones are epochs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from binsort.config import TrainConfig, monitor_mode


def param_groups(net: nn.Module, cfg: TrainConfig, head: list[str]) -> list[dict]:
    """Up to four groups: (backbone | head) x (decay | no decay); empty groups dropped."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in net.named_parameters():
        is_head = any(name.startswith(prefix) for prefix in head)
        decay = param.ndim > 1
        groups.setdefault((is_head, decay), []).append(param)
    result = []
    for (is_head, decay), params in sorted(groups.items()):
        name = f"{'head' if is_head else 'backbone'}{'' if decay else '_no_decay'}"
        result.append({"params": params, "name": name, **group_options(name, cfg)})
    return result


def group_options(name: str, cfg: TrainConfig) -> dict[str, float]:
    """A parameter group's learning rate and weight decay, from its name and the config."""
    lr = cfg.optim.lr if name.startswith("head") else cfg.optim.lr * cfg.model.backbone_lr_scale
    return {"lr": lr, "weight_decay": 0.0 if name.endswith("_no_decay") else cfg.optim.weight_decay}


def apply_options(
    optimizer: torch.optim.Optimizer,
    schedulers: list,
    cfg: TrainConfig,
    steps_per_epoch: int = 1,
    step: int | None = None,
) -> None:
    """Make a restored optimiser and its schedules follow ``cfg``.

    A resumed run restores the learning rates and the schedule's own copy of its options
    (epochs, warm-up, gamma, milestones) from the checkpoint; run with other options, it
    would follow the old schedule (a cosine run extended with --epochs ran at rate 0). Here
    the schedule is rebuilt from the options in force and the rate set for the epoch reached.
    With the options unchanged, nothing changes. ``step`` is the optimiser steps taken (the
    trainer's global step): the count a per-step schedule resumes from, whatever unit the
    checkpoint's schedule counted in.
    """
    for group in optimizer.param_groups:
        if "name" in group:
            options = group_options(group["name"], cfg)
            group["initial_lr"] = options["lr"]
            group["weight_decay"] = options["weight_decay"]
            if not schedulers:
                group["lr"] = options["lr"]
    for scheduler in schedulers:
        if isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
            schedule = EpochSchedule.from_config(cfg, steps_per_epoch)
            if step is not None:
                scheduler.last_epoch = step
            scheduler.lr_lambdas = [schedule] * len(optimizer.param_groups)
            scheduler.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
            for group, base in zip(optimizer.param_groups, scheduler.base_lrs, strict=True):
                group["lr"] = base * schedule(scheduler.last_epoch)
            scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]
        elif isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.factor = cfg.optim.lr_gamma
            scheduler.patience = cfg.optim.plateau_patience


def build_optimizer(groups: list[dict], cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optim.opt == "sgd":
        return torch.optim.SGD(
            groups, lr=cfg.optim.lr, momentum=cfg.optim.momentum, nesterov=cfg.optim.nesterov
        )
    if cfg.optim.opt == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.optim.lr)
    # Adam's weight decay is L2 in the gradient; the groups still spare norms and biases.
    return torch.optim.Adam(groups, lr=cfg.optim.lr)


def warmup_steps(warmup_epochs: float, steps_per_epoch: int) -> int:
    return round(warmup_epochs * steps_per_epoch)


@dataclass
class EpochSchedule:
    """Learning-rate factor for an optimiser step: linear warm-up times the main schedule.

    With ``steps_per_epoch`` 1 a step is an epoch. A plain callable object (not a lambda) so
    that LambdaLR stores it in its state dict.
    """

    kind: str
    epochs: int
    warmup: float = 0
    gamma: float = 0.2
    milestones: list[int] = field(default_factory=list)
    steps_per_epoch: int = 1

    @classmethod
    def from_config(cls, cfg: TrainConfig, steps_per_epoch: int = 1) -> EpochSchedule:
        return cls(
            cfg.optim.scheduler,
            cfg.optim.epochs,
            cfg.optim.warmup_epochs,
            cfg.optim.lr_gamma,
            cfg.optim.milestones,
            max(1, steps_per_epoch),
        )

    def __call__(self, step: int) -> float:
        warm = warmup_steps(self.warmup, self.steps_per_epoch)
        epoch = step // self.steps_per_epoch
        factor = 1.0
        if step < warm:
            factor = (step + 1) / (warm + 1)
        if self.kind == "step":
            factor *= self.gamma ** sum(epoch >= m for m in self.milestones)
        elif self.kind == "exp":
            # Decays once per epoch after the warm-up.
            factor *= self.gamma ** max(0, epoch - math.ceil(self.warmup))
        elif self.kind == "cosine":
            span = max(1, self.epochs * self.steps_per_epoch - warm)
            progress = min(1.0, max(0, step - warm) / span)
            factor *= 0.5 * (1.0 + math.cos(math.pi * progress))
        return factor


def build_schedulers(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int = 1
) -> list[dict]:
    """Lightning scheduler configs: the warm-up and main schedule step per optimiser step,
    the plateau scheduler per epoch (it watches an epoch's metric)."""
    configs = []
    kind = cfg.optim.scheduler
    warm = warmup_steps(cfg.optim.warmup_epochs, steps_per_epoch)
    if kind == "plateau":
        if warm:
            # LinearLR's chainable form leaves the rate alone after warmup, so it composes with
            # the plateau scheduler's reductions (LambdaLR would overwrite them).
            warmup = torch.optim.lr_scheduler.LinearLR(
                optimizer, 1.0 / (warm + 1), 1.0, total_iters=warm
            )
            configs.append({"scheduler": warmup, "interval": "step", "name": "warmup"})
    elif kind != "none" or warm:
        schedule = EpochSchedule.from_config(cfg, steps_per_epoch)
        lr_lambda = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        configs.append({"scheduler": lr_lambda, "interval": "step", "name": "lr"})
    if kind == "plateau":
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode=monitor_mode(cfg.optim.plateau_monitor),
            factor=cfg.optim.lr_gamma,
            patience=cfg.optim.plateau_patience,
        )
        configs.append(
            {
                "scheduler": plateau,
                "interval": "epoch",
                "monitor": cfg.optim.plateau_monitor,
                "name": "plateau",
            }
        )
    return configs
