"""The LightningModule: a torchvision classifier, its loss, metrics and optimiser.

Its hyperparameters (``save_hyperparameters``) are the whole resolved ``TrainConfig`` plus the
class names, mean/std, class counts and the split: everything needed to rebuild the model and
to know which images it was trained on, from the checkpoint alone.

With ``--cache`` the loaders yield uint8 batches; ``on_after_batch_transfer`` augments the
training batch on the training device (``binsort.data.batch_augment``) and turns validation
batches into [0, 1] floats.
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from binsort import __version__
from binsort.config import TrainConfig
from binsort.data.batch_augment import BatchAugment
from binsort.data.transforms import batch_mixer
from binsort.models.factory import build_model, head_prefixes
from binsort.models.optim import apply_options, build_optimizer, build_schedulers, param_groups
from binsort.models.probe import ProbeResult, features, fit_head, head_module
from binsort.models.stages import frozen_stages
from binsort.models.teacher import Teacher, distillation_loss
from binsort.seeding import mix


class Classifier(L.LightningModule):
    def __init__(
        self,
        config: dict[str, Any],
        classes: list[str],
        mean: list[float],
        std: list[float],
        class_counts: list[int] | None = None,
        split: dict[str, Any] | None = None,
        binsort_version: str = __version__,
        transform_input: bool = False,  # googlenet/inception_v3 on torchvision's weights
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.cfg = TrainConfig.from_dict(config)
        num_classes = len(classes)
        self.model = build_model(
            self.cfg.model.model, num_classes, mean, std, self.cfg.data.input_size, transform_input
        )
        self.head = head_prefixes(self.model.net, num_classes)
        # --freeze-stages: a plain list, so the modules are not registered twice.
        self.fixed = frozen_stages(
            self.model.net, self.cfg.model.model, self.cfg.model.freeze_stages, self.head
        )
        for module in self.fixed:
            module.requires_grad_(False).eval()  # eval: batch-norm statistics stay too
        weight = None
        if self.cfg.data.class_weights and class_counts:
            counts = torch.tensor(class_counts, dtype=torch.float32).clamp(min=1)
            weight = counts.sum() / (len(counts) * counts)
        self.criterion = nn.CrossEntropyLoss(
            weight=weight, label_smoothing=self.cfg.optim.label_smoothing
        )
        self.mixer = batch_mixer(num_classes, self.cfg.aug.cutmix, self.cfg.aug.mixup)
        self.augment = BatchAugment.from_config(self.cfg) if self.cfg.data.cache else None
        self._augment_rng = torch.Generator()
        # --teacher: set by binsort.train.fit; a plain attribute, not a submodule, so the
        # teacher's weights never enter this model's checkpoint or optimiser.
        self.teacher: Teacher | None = None
        # --probe: set by binsort.train.fit on a fresh run (never on a resume, whose head is
        # already trained); the training images in the evaluation view, batched.
        self.probe_batches: Any = None
        self.probe_result: ProbeResult | None = None
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        if self.cfg.model.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    def train(self, mode: bool = True) -> Classifier:
        super().train(mode)
        # Lightning also sets modules' modes directly, back to what it found before
        # validation, which is why the modules start in eval mode too.
        for module in self.fixed:
            module.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.model.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # Only --cache batches are uint8; the per-image path already yields [0, 1] floats.
        if not (isinstance(batch, (tuple, list)) and batch[0].dtype == torch.uint8):
            return batch
        x, y = batch
        if self.augment is not None and self.trainer.training:
            x = self.augment(x, self._augment_rng)
        else:
            x = x.float().div_(255)
        # Lightning converts inputs for the precision (e.g. bf16-true) before the transfer,
        # when these were still uint8: convert the floats made here.
        return self.trainer.precision_plugin.convert_input(x), y

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        x, y = batch
        target = y
        if self.mixer is not None:
            x, target = self.mixer(x, y)
        logits = self(x)
        loss = self.criterion(logits, target)
        if self.teacher is not None:
            # The teacher answers the very batch the student sees, mixed and augmented.
            distill = distillation_loss(
                logits, self.teacher.probabilities(x), self.cfg.model.distill_temperature
            )
            self.log(
                "train_distill_loss",
                distill,
                on_step=False,
                on_epoch=True,
                sync_dist=True,
                batch_size=len(y),
            )
            loss = (
                1 - self.cfg.model.distill_weight
            ) * loss + self.cfg.model.distill_weight * distill
        # Under CutMix/MixUp an image is two images: it counts as right when the answer is the
        # label with the larger share (the unmixed label would count the other half wrong).
        hard = target.argmax(1) if target.ndim == 2 else target
        self.train_acc(logits.detach(), hard)
        self.log(
            "train_loss",
            loss,
            on_step=True,
            on_epoch=True,
            prog_bar=True,
            sync_dist=True,
            batch_size=len(y),
        )
        self.log("train_accuracy", self.train_acc, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        # Plain cross-entropy (no smoothing, no class weights): comparable across recipes.
        loss = F.cross_entropy(logits.float(), y)
        self.val_acc(logits, y)
        self.log("val_loss", loss, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=len(y))
        self.log("val_accuracy", self.val_acc, on_epoch=True, prog_bar=True, batch_size=len(y))
        # The counts behind the accuracy, summed over the epoch and the ranks (ShardSampler
        # scores each photo once): its interval needs how many photos were scored, which
        # --limit-batches makes fewer than the validation part holds.
        right = (logits.argmax(1) == y).sum().float()
        for name, value in (("val_correct", right), ("val_photos", float(len(y)))):
            self.log(name, value, on_epoch=True, reduce_fx="sum", sync_dist=True, batch_size=len(y))

    def _frozen(self) -> bool:
        return self.current_epoch < self.cfg.model.freeze_epochs

    def _backbone(self) -> list[nn.Parameter]:
        """What --freeze-epochs freezes for a while: all but the head (and --freeze-stages'
        modules, frozen throughout)."""
        fixed = {id(p) for module in self.fixed for p in module.parameters()}
        return [
            param
            for name, param in self.model.net.named_parameters()
            if not name.startswith(tuple(self.head)) and id(param) not in fixed
        ]

    def _apply_freeze(self) -> None:
        # --freeze-epochs: only the head learns at first; parameters without gradients are
        # skipped by the optimiser, so freezing needs no change to its groups. In one process
        # the backbone stops asking for gradients (its backward pass is skipped). DDP fixes the
        # set of parameters it reduces when it wraps the model, so there every parameter keeps
        # its gradient through the reduction and on_after_backward drops the backbone's.
        if self.trainer.world_size > 1:
            return
        frozen = self._frozen()
        for param in self._backbone():
            param.requires_grad_(not frozen)

    def on_after_backward(self) -> None:
        if self.trainer.world_size > 1 and self._frozen():
            for param in self._backbone():
                param.grad = None

    def on_fit_start(self) -> None:
        if self.teacher is not None:
            self.teacher.to(self.device, channels_last=self.cfg.model.channels_last)
        if self.probe_batches is not None:
            # Here, not before fit: on the training device, and under DDP on every rank alike.
            self.probe_result = self._fit_probe(self.probe_batches)
            self.probe_batches = None

    def _fit_probe(self, batches: Any) -> ProbeResult:
        started = time.perf_counter()
        head = head_module(self.model.net, self.head)
        moved = ((x.to(self.device), y) for x, y in batches)
        x, y = features(self, head, moved)
        accuracy = fit_head(head, x, y, len(self.hparams.classes))
        return ProbeResult(len(y), x.shape[1], accuracy, time.perf_counter() - started)

    def on_train_start(self) -> None:
        # After a resume's restore: the options of this command line rule the schedule.
        apply_options(
            self.trainer.optimizers[0],
            [c.scheduler for c in self.trainer.lr_scheduler_configs],
            self.cfg,
            self._steps_per_epoch(),
            self.trainer.global_step,
        )
        # A run resumed mid-epoch skips on_train_epoch_start for that epoch.
        self._apply_freeze()

    def on_train_epoch_start(self) -> None:
        self._apply_freeze()
        if self.augment is not None:
            # --cache: seeded per epoch and rank, so a run (and a resumed run from an epoch
            # start) is reproducible and DDP ranks draw different augmentations.
            self._augment_rng.manual_seed(
                mix(self.cfg.data.seed, self.current_epoch, self.global_rank)
            )

    def configure_optimizers(self) -> dict[str, Any] | tuple[list, list]:
        groups = param_groups(self.model.net, self.cfg, self.head)
        optimizer = build_optimizer(groups, self.cfg)
        schedulers = build_schedulers(optimizer, self.cfg, self._steps_per_epoch())
        return [optimizer], schedulers

    def _steps_per_epoch(self) -> int:
        """Optimiser steps in an epoch (after --limit-batches and --accumulate), per rank."""
        trainer = self.trainer
        return max(1, int(trainer.estimated_stepping_batches) // max(1, trainer.max_epochs))
