"""Train a classifier on an ImageFolder: the library behind ``binsort train``.

``fit(TrainConfig.from_options(...))`` scans and checks the folder, makes (or, on resume,
reuses) the split, builds the model, and runs Lightning, one step function each. The run folder
``OUT/NAME/version_N/`` gets the TensorBoard logs, ``checkpoints/`` (top-k by the monitored
metric, plus ``last.ckpt``), ``config.json`` (the resolved config) and ``split.json`` (the
exact file lists).

Several ``--root`` folders train one model: ``binsort.data.folder.scan_folders`` matches their
classes by name, the split is drawn over all their photos, and the split record lists the
folders (``roots``) with each path qualified by its folder's index.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from binsort.config import IMAGENET_MEAN, IMAGENET_STD, TrainConfig, monitor_mode
from binsort.errors import BinsortError
from binsort.files import replacing, write_atomically

BEST = "best.ckpt"  # a copy of the best checkpoint by --save-monitor, beside last.ckpt
# Training photos on which weights with folded batch norms (--weights bundled) get their
# statistics measured: per-channel means and variances settle well before that (on TrashNet,
# 128 photos made training mode agree with eval mode on 15 of 16 answers, against 5 unmeasured).
NORM_IMAGES = 128
# Half-width of the validation accuracy's 95 % interval above which a run warns: recipes worth
# comparing differ by a point or two, and a wider interval cannot tell them apart. Reaching it
# takes about 470 validation photos at 95 % accuracy and 860 at 90 %.
WIDE_INTERVAL = 0.02
# Lightning warnings that say nothing to a binsort user, by message.
QUIET = (
    ".*does not have many workers.*",
    ".*ckpt_path.*",
    # A resumed run writes into its own checkpoint folder on purpose.
    ".*Checkpoint directory .* exists and is not empty.*",
    ".*smaller than the logging interval.*",
    ".*LeafSpec.*",
    # --cache's augmentation hook lives in the module on purpose (it runs on the device).
    ".*overridden `on_after_batch_transfer`.*",
    # --freeze-stages keeps its modules in eval mode on purpose (their batch-norm statistics).
    ".*module\\(s\\) in eval mode at the start of training.*",
)


@dataclass
class TrainResult:
    run_dir: Path
    best_checkpoint: Path | None
    last_checkpoint: Path | None
    monitor: str
    best_score: float | None
    best_epoch: int | None
    epochs_run: int
    history: list[dict[str, Any]]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    train_size: int = 0
    val_size: int = 0
    test_size: int = 0
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was loaded from --weights
    global_rank: int = 0  # under DDP every process returns a result; rank 0 reports it

    @property
    def best_row(self) -> dict[str, Any]:
        rows = [r for r in self.history if r["epoch"] == self.best_epoch]
        return rows[0] if rows else {}

    @property
    def val_photos(self) -> int | None:
        """How many validation photos the best epoch scored (None for runs from before this
        was recorded): the validation part, unless --limit-batches cut it."""
        return self.best_row.get("val_photos")

    @property
    def val_interval(self) -> tuple[float, float] | None:
        """The best epoch's validation accuracy's 95 % Wilson interval over those photos."""
        row = self.best_row
        if row.get("val_accuracy_low") is None:
            return None
        return row["val_accuracy_low"], row["val_accuracy_high"]

    @property
    def images_per_second(self) -> float | None:
        speeds = [r["images_per_second"] for r in self.history]
        # The first epoch includes start-up (worker spawn, lazy init): report the steady state.
        steady = speeds[1:] or speeds
        return sum(steady) / len(steady) if steady else None

    @property
    def seconds_per_epoch(self) -> float | None:
        times = [r["epoch_seconds"] for r in self.history]
        steady = times[1:] or times
        return sum(steady) / len(steady) if steady else None


def find_resume_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or the newest of last/interrupted checkpoints in a run folder."""
    path = Path(path)
    if path.is_file():
        return path
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    candidates = [folder / "last.ckpt", folder / "interrupted.ckpt"]
    found = [c for c in candidates if c.is_file()]
    if not found:
        raise BinsortError(f"{path}: no last.ckpt or interrupted.ckpt to resume from")
    return max(found, key=lambda c: c.stat().st_mtime)


def resume_config(checkpoint: Path, overrides: dict[str, Any]) -> tuple[TrainConfig, dict]:
    """The stored config of ``checkpoint`` with ``overrides`` applied, and its split."""
    hparams = _stored(checkpoint)
    config = {**hparams["config"], **overrides}
    return TrainConfig.from_dict(config), hparams.get("split") or {}


def _stored(checkpoint: Path) -> dict[str, Any]:
    from binsort.models.checkpoint import hyperparameters, read_checkpoint

    return hyperparameters(read_checkpoint(checkpoint), checkpoint)


@dataclass(frozen=True)
class _Start:
    """What a run starts from: the checkpoint it resumes, the weights it loads, or neither."""

    checkpoint: Path | None = None  # --resume's checkpoint file
    source: Any = None  # --weights, read (binsort.models.pretrained.SourceWeights)
    split: dict = field(default_factory=dict)  # the split the resumed run recorded
    transform_input: bool = False  # how googlenet/inception_v3 scale their input (factory)


@dataclass(frozen=True)
class _Split:
    """The photos of a run and which of them train, validate and are held out."""

    images: Any  # binsort.data.folder.ImageSet
    train: list[tuple[str, int]]  # (path, class index) samples
    val: list[tuple[str, int]]
    val_paths: list[str]
    test_paths: list[str]
    record: dict[str, Any]  # what split.json and the checkpoint store
    notes: list[str]


@dataclass(frozen=True)
class _Built:
    """The LightningModule, its weights loaded, and what building it found out."""

    module: Any  # binsort.models.module.Classifier
    mean: list[float]
    std: list[float]
    notes: list[str]
    warnings: list[str]


def fit(
    cfg: TrainConfig,
    resume: str | Path | None = None,
    progress: bool = False,
    split: dict[str, list[str]] | None = None,
    version: str | None = None,
    images: Any = None,
) -> TrainResult:
    """Train as ``cfg`` says; with ``resume`` (a run folder or checkpoint), continue that run.

    On resume, ``cfg`` should be the checkpoint's config (see ``resume_config``); the split is
    the recorded one, so validation images stay out of training. ``split`` (train/val/test
    path lists), ``version`` (the run folder's name) and ``images`` (an already checked
    ``ImageSet``) let ``binsort.folds.fit_folds`` drive one run per fold; those runs leave
    the warning about a wide validation interval to it (it judges the pooled figure).

    ``cfg`` is left as it was (the run records a copy with the model's canonical name), and so
    are the process's warning filters and Lightning's log levels.
    """
    started = time.perf_counter()
    cfg, start = _starting_point(cfg, resume)
    photos = _resolve_split(cfg, start, split, images)
    built = _build_module(cfg, start, photos)
    run_warnings = _run_warnings(cfg, start, photos) + built.warnings

    from binsort.data.datamodule import BinDataModule

    datamodule = BinDataModule(photos.images.roots, photos.train, photos.val, cfg)
    with _quiet_lightning():
        trainer, history, logger = _trainer(cfg, start.checkpoint, progress, version)
        run_dir = Path(logger.log_dir)
        if trainer.is_global_zero:
            _write_run_folder(run_dir, cfg, photos, built)
        _run_lightning(
            trainer, built.module, datamodule, start.checkpoint, run_dir, cfg.run.benchmark
        )
    result = _collect_result(trainer, history, run_dir, cfg, photos, built)
    result.seconds = time.perf_counter() - started
    result.warnings = run_warnings
    if split is None:  # fit_folds judges the folds' intervals together
        result.warnings += _wide_interval(result)
    return result


def _starting_point(cfg: TrainConfig, resume: str | Path | None) -> tuple[TrainConfig, _Start]:
    """A copy of ``cfg`` naming its model canonically, and what the run starts from.

    Checkpoints store the canonical name, so the zoo a model came from is never ambiguous.
    """
    start = _Start()
    if resume is not None:
        checkpoint = find_resume_checkpoint(resume)
        stored = _stored(checkpoint)
        start = _Start(
            checkpoint=checkpoint,
            split=stored.get("split") or {},
            transform_input=stored.get("transform_input", False),
        )
    if cfg.data.root is None:
        raise BinsortError("--root is required: the ImageFolder to train on")
    from binsort.data.folder import check_roots
    from binsort.models.factory import resolve_model_name

    check_roots(cfg.data.root)  # before the weights are read: a slip costs no waiting
    cfg = replace(cfg, model=replace(cfg.model, model=resolve_model_name(cfg.model.model)))
    if cfg.model.weights and start.checkpoint is None:
        from binsort.models.pretrained import read_weights

        source = read_weights(cfg.model.weights, cfg.model.model)
        start = _Start(source=source, transform_input=source.transform_input)
    return cfg, start


def _resolve_split(
    cfg: TrainConfig, start: _Start, split: dict[str, list[str]] | None, images: Any
) -> _Split:
    """The photos and their split: the resumed run's, a fold's (``split``), the one the
    --weights were trained with when they were trained on these very photos, else a new one."""
    from binsort.data.folder import require_every_class, scan_folders
    from binsort.data.splits import recorded_roots, select, split_record, stratified_split

    if images is None:
        images = scan_folders(cfg.data.root, check=True, workers=max(2, cfg.data.workers))
    require_every_class(images)
    recorded = start.split if start.checkpoint is not None else (split or {})
    notes = []
    source = start.source
    if source is not None and source.split and not recorded:
        known = {path for path, _ in images.samples}
        theirs = [p for part in ("train", "val", "test") for p in source.split.get(part, [])]
        if theirs and set(theirs) == known:
            # A later stage keeps the earlier stage's split, so images it validated or tested
            # on never become training images (the leakage guard holds across stages).
            recorded = source.split
            notes.append("kept the split the --weights were trained with (same images)")
        else:
            notes.append("the --weights were trained on other images: a new split")
    if recorded and "root" in recorded:
        # Paths of several folders name them by index: other folders would mean other photos.
        folders = len(recorded_roots(recorded))
        if folders != len(images.roots):
            raise BinsortError(
                f"the run's split records {folders} image folder(s) and --root gives "
                f"{len(images.roots)}: give the folders it was trained on, in the same order"
            )
    if recorded:
        train_paths, val_paths = recorded["train"], recorded["val"]
        test_paths = recorded.get("test", [])
    else:
        drawn = stratified_split(
            images.samples, cfg.data.split, cfg.data.test_split, cfg.data.effective_split_seed
        )
        train_paths, val_paths, test_paths = drawn.train, drawn.val, drawn.test
    return _Split(
        images=images,
        train=select(images.samples, train_paths),
        val=select(images.samples, val_paths),
        val_paths=val_paths,
        test_paths=test_paths,
        record=split_record(
            images.roots, cfg.data.effective_split_seed, train_paths, val_paths, test_paths
        ),
        notes=notes,
    )


def _build_module(cfg: TrainConfig, start: _Start, photos: _Split) -> _Built:
    """The Classifier, seeded, with the --weights loaded, the --teacher attached and the
    --probe's batches ready; mean and std are the option's, else the weights', else ImageNet's.
    """
    import lightning as L

    from binsort.models.module import Classifier

    L.seed_everything(cfg.data.seed, workers=True, verbose=False)
    source, images = start.source, photos.images
    mean, std = cfg.data.mean, cfg.data.std
    if source is not None:
        # The weights' own normalisation: what the backbone's features were learnt on.
        mean = mean or source.mean
        std = std or source.std
    mean = list(mean or IMAGENET_MEAN)
    std = list(std or IMAGENET_STD)
    counts = [0] * len(images.classes)
    for _, label in photos.train:
        counts[label] += 1
    module = Classifier(
        cfg.to_dict(),
        images.classes,
        mean,
        std,
        class_counts=counts,
        split=photos.record,
        transform_input=start.transform_input,
    )
    notes, found = list(photos.notes), []
    if source is not None:
        from binsort.models.pretrained import load_weights

        report = load_weights(module.model.net, source, module.head, images.classes)
        notes += report.notes
        notes.append(
            f"started from {source.origin}: {report.loaded} of {report.total} tensors loaded"
            + (f"; fresh: {_names(report.fresh)}" if report.fresh else "")
        )
        if source.folded_norms:
            used = _recentre_norms(module.model, images.roots, photos.train, cfg)
            notes.append(
                f"batch-norm statistics measured on {used} training photos (the source stores "
                "them folded into its convolutions)"
            )
    size, val_size = cfg.data.input_size, cfg.data.val_size
    if val_size != size:
        from binsort.models.factory import check_input_size

        check_input_size(module.model, cfg.model.model, val_size, "--eval-size")
        notes.append(
            f"trains on {size}-px crops, validates at {val_size} px: evaluate, ensemble, "
            f"export and predict feed it {val_size}-px images"
        )
    if cfg.model.teacher:
        from binsort.models.teacher import load_teacher, teacher_overlap

        module.teacher = load_teacher(cfg.model.teacher, images.classes)
        found += teacher_overlap(module.teacher, photos.val_paths, photos.test_paths)
    if cfg.model.probe and start.checkpoint is None:
        from binsort.models.probe import head_module

        head_module(module.model.net, module.head)  # refuse a head it cannot fit, before work
        module.probe_batches = _probe_batches(images.roots, photos.train, cfg)
    return _Built(module=module, mean=mean, std=std, notes=notes, warnings=found)


def _run_warnings(cfg: TrainConfig, start: _Start, photos: _Split) -> list[str]:
    """What about this run's photos and options makes its figures doubtful."""
    found = _upscaled_validation(photos.images.roots, photos.val, cfg)
    if start.source is not None and start.source.split:
        from binsort.leakage import held_out_overlap

        # A checkpoint trained on other photos, or a cross-validation fold: the new split may
        # validate on photos that shaped the starting weights.
        trained = start.source.split.get("train", [])
        held_out = {"validation": photos.val_paths, "test": photos.test_paths}
        who = f"the --weights checkpoint ({cfg.model.weights})"
        found += held_out_overlap(who, "this run's", trained, held_out)
    if cfg.data.imbalance and cfg.data.class_weights:
        found.append(
            "--imbalance and --class-weights both correct for class sizes: together they "
            "over-weight the small classes; use one"
        )
    return found


def _write_run_folder(run_dir: Path, cfg: TrainConfig, photos: _Split, built: _Built) -> None:
    """config.json (the resolved config, classes and normalisation) and split.json."""
    classes = photos.images.classes
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_json(
        run_dir / "config.json",
        {**cfg.to_dict(), "classes": classes, "mean": built.mean, "std": built.std},
    )
    _write_json(
        run_dir / "split.json",
        {**photos.record, "classes": classes, "skipped": photos.images.skipped},
    )


def _run_lightning(
    trainer: Any,
    module: Any,
    datamodule: Any,
    checkpoint: Path | None,
    run_dir: Path,
    benchmark: bool,
) -> None:
    """``trainer.fit``, a Ctrl-C turned into a message that says how to resume."""
    import torch

    cudnn = torch.backends.cudnn
    previous = cudnn.benchmark
    cudnn.benchmark = benchmark  # for this run only: set back after it
    try:
        with _stop_on_ctrl_c(trainer):
            trainer.fit(module, datamodule=datamodule, ckpt_path=checkpoint)
    except SystemExit:
        # Lightning turns the KeyboardInterrupt into a graceful shutdown and exit(1); the
        # exception checkpoint is saved by then.
        raise BinsortError(
            f"training interrupted at epoch {trainer.current_epoch}; continue with: "
            f"binsort train --resume {run_dir}"
        ) from None
    finally:
        cudnn.benchmark = previous


def _collect_result(
    trainer: Any, history: Any, run_dir: Path, cfg: TrainConfig, photos: _Split, built: _Built
) -> TrainResult:
    """The finished run in figures; rank 0 also adds best.ckpt and results.png to its folder.
    Its warnings and time are the caller's to fill in."""
    checkpoint = trainer.checkpoint_callback
    best = Path(checkpoint.best_model_path) if checkpoint.best_model_path else None
    latest = next(c for c in trainer.checkpoint_callbacks if c.filename == "last")
    last = Path(latest.best_model_path) if latest.best_model_path else None
    if not trainer.is_global_zero:
        # Other ranks named their logger's version after the folder rank 0 had just made;
        # the checkpoint folder is rank 0's (ModelCheckpoint broadcasts it).
        run_dir = Path(latest.dirpath).parent
    if trainer.is_global_zero:
        if best is not None and best.is_file():
            # One name to point at: predict, evaluate and export take the run folder too.
            with replacing(best.with_name(BEST)) as tmp:  # never a half-written best.ckpt
                shutil.copyfile(best, tmp)
        if history.rows:
            from binsort.reporting import training_figure

            training_figure(history.rows).savefig(run_dir / "results.png", dpi=100)
    notes = list(built.notes)
    probe = built.module.probe_result
    if probe is not None:
        notes.append(
            f"--probe: head fitted on the features of {probe.images} training images "
            f"in {probe.seconds:.0f} s ({probe.train_accuracy:.1%} of them right before "
            "fine-tuning)"
        )
    best_score = checkpoint.best_model_score
    return TrainResult(
        run_dir=run_dir,
        best_checkpoint=best,
        last_checkpoint=last,
        monitor=cfg.checkpoints.save_monitor,
        best_score=float(best_score) if best_score is not None else None,
        best_epoch=_epoch_of(best, history.rows, cfg.checkpoints.save_monitor, best_score),
        epochs_run=trainer.current_epoch,
        history=history.rows,
        skipped=photos.images.skipped,
        train_size=len(photos.train),
        val_size=len(photos.val),
        test_size=len(photos.test_paths),
        notes=notes,
        global_rank=trainer.global_rank,
    )


def _wide_interval(result: TrainResult) -> list[str]:
    """A warning when the best epoch's validation accuracy is too uncertain to rank recipes."""
    interval, accuracy = result.val_interval, result.best_row.get("val_accuracy")
    if interval is None or accuracy is None:
        return []
    low, high = interval
    half = (high - low) / 2
    if half <= WIDE_INTERVAL:
        return []
    return [
        f"validation accuracy {accuracy:.4f} is known to about ±{half * 100:.1f} points "
        f"(95 % interval {low:.3f}-{high:.3f}, {result.val_photos} photos): recipes closer "
        "than that cannot be told apart on it; cross-validate with --folds K (every photo "
        "validated once) or validate on more photos with a larger --split"
    ]


def _upscaled_validation(
    roots: list[Path], samples: list[tuple[str, int]], cfg: TrainConfig
) -> list:
    """A warning when --eval-size enlarges validation images: the checkpoint would be chosen on
    blurred copies of what it will be fed (the typical slip: a resized copy as --root)."""
    size = cfg.data.eval_size
    if size is None:
        return []
    from binsort.data.folder import locate
    from binsort.data.images import shorter_side

    small = sum((shorter_side(locate(roots, path)) or size) < size for path, _ in samples)
    if not small:
        return []
    return [
        f"--eval-size {size}: {small} of {len(samples)} validation images are smaller and are "
        "enlarged to it; validate on larger copies (the originals)"
    ]


def _recentre_norms(
    model: Any, roots: list[Path], samples: list[tuple[str, int]], cfg: TrainConfig
) -> int:
    """Batch-norm statistics from a seeded draw of the training photos (all classes, not the
    first few folders), the network's eval-mode answers unchanged (models.norms)."""
    import random

    from binsort.models.norms import recentre_norms

    drawn = random.Random(cfg.data.seed).sample(samples, min(len(samples), NORM_IMAGES))
    return recentre_norms(model, _probe_batches(roots, drawn, cfg), NORM_IMAGES)


def _probe_batches(roots: list[Path], samples: list[tuple[str, int]], cfg: TrainConfig) -> Any:
    """The training images as validation sees them: the features the head is fitted on."""
    from torch.utils.data import DataLoader

    from binsort.data.dataset import ImageDataset
    from binsort.data.transforms import eval_transform

    size = cfg.data.input_size
    dataset = ImageDataset(roots, samples, eval_transform(size), min_side=size)
    return DataLoader(dataset, batch_size=cfg.optim.batch, num_workers=cfg.data.workers)


@contextlib.contextmanager
def _stop_on_ctrl_c(trainer):
    """While training, the first Ctrl-C stops before the next batch; a second one at once.

    ``StopOnRequest`` raises the KeyboardInterrupt at a batch boundary, so Lightning's
    ``interrupted.ckpt`` holds whole optimiser steps. DataLoader workers forked meanwhile
    inherit the handler, so a Ctrl-C reaching the whole process group does not kill them.
    """
    from binsort.models.callbacks import StopOnRequest

    stopper = next((c for c in trainer.callbacks if isinstance(c, StopOnRequest)), None)
    in_main_thread = threading.current_thread() is threading.main_thread()
    if stopper is None or not in_main_thread:
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.default_int_handler:  # someone else handles Ctrl-C: leave it
        yield
        return

    def request_stop(signum, frame) -> None:
        stopper.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, request_stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _trainer(cfg: TrainConfig, ckpt_path: Path | None, progress: bool, version: str | None):
    import lightning as L
    from lightning.pytorch import callbacks as cb
    from lightning.pytorch.loggers import TensorBoardLogger

    from binsort.models.callbacks import History, StopOnRequest, ema_averaging, progress_bar

    if ckpt_path is not None and ckpt_path.parent.name == "checkpoints":
        # Continue in the same run folder, so logs and checkpoints stay together.
        version = ckpt_path.parent.parent.name
        out, name = ckpt_path.parent.parent.parent.parent, ckpt_path.parent.parent.parent.name
    else:
        out, name = Path(cfg.run.out), cfg.run.name
    logger = TensorBoardLogger(
        save_dir=str(out), name=name, version=version, default_hp_metric=False
    )
    ckpt_dir = Path(logger.log_dir) / "checkpoints"
    history = History()
    callbacks = [
        cb.ModelCheckpoint(
            dirpath=ckpt_dir,
            # Named after what ranks them, with the other metric beside it.
            filename="epoch{epoch:03d}-loss{val_loss:.4f}-acc{val_accuracy:.4f}",
            auto_insert_metric_name=False,
            monitor=cfg.checkpoints.save_monitor,
            mode=monitor_mode(cfg.checkpoints.save_monitor),
            save_top_k=cfg.checkpoints.save_top_k,
        ),
        # Lightning 2.6 refreshes `save_last` only when a top-k checkpoint was written that
        # epoch; a separate monitor-less callback keeps last.ckpt truly the latest epoch.
        cb.ModelCheckpoint(dirpath=ckpt_dir, filename="last", enable_version_counter=False),
        cb.OnExceptionCheckpoint(dirpath=ckpt_dir, filename="interrupted"),
        cb.LearningRateMonitor(logging_interval="epoch"),
        history,
        StopOnRequest(),
    ]
    if cfg.checkpoints.early_stop != "none":
        monitor = "val_loss" if cfg.checkpoints.early_stop == "loss" else "val_accuracy"
        callbacks.append(
            cb.EarlyStopping(
                monitor=monitor,
                mode=monitor_mode(monitor),
                patience=cfg.checkpoints.early_stop_patience,
            )
        )
    if cfg.optim.ema:
        callbacks.append(ema_averaging(cfg.optim.ema_decay))
    if progress:
        callbacks.append(progress_bar())
    limit = cfg.run.limit_batches or None
    try:
        trainer = L.Trainer(
            max_epochs=cfg.optim.epochs,
            accelerator=cfg.run.accelerator,
            devices=_devices(cfg.run.devices),
            num_nodes=cfg.run.nodes,
            strategy=cfg.run.strategy,
            precision=cfg.run.precision,
            accumulate_grad_batches=cfg.optim.accumulate,
            logger=logger,
            callbacks=callbacks,
            enable_progress_bar=progress,
            enable_model_summary=False,
            use_distributed_sampler=False,  # binsort's samplers shard by rank themselves
            limit_train_batches=limit,
            limit_val_batches=limit,
            log_every_n_steps=10,
            num_sanity_val_steps=0,
        )
    except Exception as exc:  # Lightning's MisconfigurationException and ValueErrors
        raise BinsortError(f"cannot set up training: {str(exc).splitlines()[0]}") from None
    return trainer, history, logger


def _devices(value: str) -> str | int | list[int]:
    value = str(value).strip()
    if value.isdigit():
        return int(value)
    if "," in value:
        return [int(v) for v in value.split(",") if v.strip()]
    return value


def _epoch_of(best: Path | None, rows: list[dict], monitor: str, score: Any) -> int | None:
    scored = [r for r in rows if r.get(monitor) is not None]
    if not scored:
        return None
    pick = max if monitor_mode(monitor) == "max" else min
    return pick(scored, key=lambda r: r[monitor])["epoch"]


def _names(keys: list[str], limit: int = 4) -> str:
    """A few tensor names, then a count: the head's four tensors fit, a wrong file's 300 not."""
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _write_json(path: Path, data: dict) -> None:
    write_atomically(path, json.dumps(data, indent=2))


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """While training: Lightning's info lines and tips are noise in a CLI that prints its own
    summary. The warning filters and log levels are set back afterwards, so a program that
    calls ``fit`` keeps its own.

    ``warnings.catch_warnings`` swaps the interpreter's one filter list, and log levels are
    process-wide too: two threads training at once could restore each other's settings.
    ``fit`` is not meant to run in several threads of one process (Lightning, the seeds and
    Ctrl-C handling are per process as well).
    """
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric", "lightning")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        for logger in loggers:
            logger.setLevel(logging.WARNING)
        for message in QUIET:
            warnings.filterwarnings("ignore", message=message)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)
