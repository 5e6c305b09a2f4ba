"""Callbacks that record what the end-of-training table reports: per-epoch metrics and speed."""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from binsort.files import replacing
from binsort.metrics import wilson_interval

RESULTS_CSV = "results.csv"
RESULTS_COLUMNS = (
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "lr",
    "images_per_second",
    "epoch_seconds",
    # The 95 % Wilson interval of val_accuracy over the photos that epoch scored.
    "val_accuracy_low",
    "val_accuracy_high",
)


def write_results(rows: list[dict[str, Any]], path: Path) -> None:
    """The run's history so far, one row per epoch, as Ultralytics and CSVLogger users expect.

    Rewritten whole after every epoch (a resumed run's rows come back from its checkpoint), to
    a temporary name first, so a reader never sees half a file."""
    with replacing(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, RESULTS_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


class History(L.Callback):
    """One row per epoch: train/val metrics, training images/s and the epoch's wall time.

    Validation rows also hold the photos scored (``val_photos``), how many were right
    (``val_correct``) and the accuracy's 95 % interval (``val_accuracy_low``/``_high``).

    Training speed counts only the training batches (first batch start to last batch end), so
    validation does not dilute it; data-loading stalls between batches do count.
    """

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self._reset()

    def _reset(self) -> None:
        self._first = self._last = self._epoch_start = self._lr = None
        self._images = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._reset()
        self._epoch_start = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._epoch_start is None:
            # Resumed mid-epoch (from interrupted.ckpt): Lightning skips on_train_epoch_start.
            self._epoch_start = now
        if self._first is None:
            self._first = now
            # The rate at the epoch's first step (the head's: the largest when the backbone's
            # is scaled down); warm-up and cosine then move it step by step.
            self._lr = max(g["lr"] for g in trainer.optimizers[0].param_groups)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._last = time.perf_counter()
        self._images += len(batch[1]) * trainer.world_size

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self._first is None:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        train_seconds = max(self._last - self._first, 1e-9)
        row = {
            "epoch": trainer.current_epoch,
            "train_loss": metrics.get("train_loss_epoch"),
            "train_accuracy": metrics.get("train_accuracy"),
            "val_loss": metrics.get("val_loss"),
            "val_accuracy": metrics.get("val_accuracy"),
            "images_per_second": self._images / train_seconds,
            "epoch_seconds": time.perf_counter() - self._epoch_start,
            "lr": self._lr,
        }
        if metrics.get("val_photos"):
            # Counts, summed in floats: round them back.
            right, photos = round(metrics["val_correct"]), round(metrics["val_photos"])
            low, high = wilson_interval(right, photos)
            row.update(
                val_correct=right, val_photos=photos, val_accuracy_low=low, val_accuracy_high=high
            )
        probe = getattr(pl_module, "probe_result", None)
        if probe is not None and not self.rows:
            # --probe's pass is training time: time-to-accuracy figures must count it.
            row["epoch_seconds"] += probe.seconds
        if "train_distill_loss" in metrics:  # --teacher runs
            row["train_distill_loss"] = metrics["train_distill_loss"]
        self.rows.append(row)
        # The logger's folder, not trainer.log_dir: under DDP that one is a broadcast, which
        # would wait forever for the ranks that do not write.
        folder = getattr(trainer.logger, "log_dir", None) if trainer.is_global_zero else None
        if folder:
            write_results(self.rows, Path(folder) / RESULTS_CSV)

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict.get("rows", []))


class StopOnRequest(L.Callback):
    """Stops training between two batches once ``requested`` is set (by Ctrl-C, in ``fit``).

    Lightning's own Ctrl-C handling raises ``KeyboardInterrupt`` wherever the program happens
    to be, often inside ``optimizer.step()``: ``interrupted.ckpt`` then holds an optimiser
    that stepped some parameters and not others, and a resumed run steps those twice. Raised
    here instead, before a batch starts, the checkpoint holds whole steps only. Under DDP the
    ranks agree (any rank's request counts), so all of them stop before the same batch.
    """

    def __init__(self) -> None:
        self.requested = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.strategy.reduce_boolean_decision(self.requested, all=False):
            raise KeyboardInterrupt


def progress_bar() -> L.Callback:
    """Lightning's rich bar, counting epochs as people do (``Epoch 3/20``, not ``Epoch 2/19``)
    and without the logger's version number among the metrics."""
    from lightning.pytorch.callbacks import RichProgressBar

    class Bar(RichProgressBar):
        def _get_train_description(self, current_epoch: int) -> str:
            text = f"Epoch {current_epoch + 1}/{self.trainer.max_epochs}"
            return f"{text:{len(self.validation_description)}}"

        def get_metrics(self, trainer, pl_module):
            items = super().get_metrics(trainer, pl_module)
            items.pop("v_num", None)
            return items

    return Bar(leave=True)


def ema_average(decay: float):
    """The averaging step of ``--ema`` (a ``multi_avg_fn`` for torch's ``AveragedModel``): an
    exponential moving average whose decay warms up.

    With a fixed decay d the average keeps a share d**n of the first step's weights after n
    steps: 0.999 over an 8-epoch fine-tune of TrashNet (about 820 steps) leaves 44 % of the
    average on weights that had barely left ImageNet. The decay here is (1 + n) / (10 + n),
    capped at d, as in TensorFlow's and timm's EMA, so early in a run the average follows the
    recent weights and ``--ema-decay`` only governs long runs.
    """

    def average(averaged: list, current: list, n_averaged) -> None:
        n = float(n_averaged)  # one read per device and dtype a step, not one per tensor
        d = min(decay, (1.0 + n) / (10.0 + n))
        if averaged[0].is_floating_point():
            # One fused call over all the tensors, as torch's own EMA helper makes.
            torch._foreach_lerp_(averaged, current, 1.0 - d)
        else:  # batch-norm step counters
            for a, c in zip(averaged, current, strict=True):
                a.copy_(a * d + c * (1.0 - d))

    return average


def ema_averaging(decay: float) -> L.Callback:
    """Lightning's weight averaging with :func:`ema_average`: validation and checkpoints use the
    averaged weights, and the raw ones are kept in the checkpoint for resuming."""
    from lightning.pytorch.callbacks import WeightAveraging

    return WeightAveraging(multi_avg_fn=ema_average(decay))
