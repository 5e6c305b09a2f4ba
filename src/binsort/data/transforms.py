"""Image transforms as presets: PIL image in, float tensor in [0, 1] out.

Normalisation is not here: the model owns it (its first layer), so every consumer of a model
feeds plain [0, 1] tensors.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from binsort.config import TrainConfig

# The fixed parts of the training augmentation; the batched path (binsort.data.batch_augment)
# takes them from here, and both take every strength from the same TrainConfig options.
CROP_RATIO = (3 / 4, 4 / 3)  # RandomResizedCrop's aspect-ratio range (torchvision's default)
PERSPECTIVE_P = 0.5  # the share of images RandomPerspective distorts (torchvision's default)


def train_transform(cfg: TrainConfig) -> v2.Compose:
    """GarbageML's augmentations, each strength a config option (0 turns a step off)."""
    aug = cfg.aug
    steps: list[torch.nn.Module] = [
        v2.RandomResizedCrop(
            cfg.data.input_size, scale=(aug.aug_scale, 1.0), ratio=CROP_RATIO, antialias=True
        ),
    ]
    if aug.hflip > 0:
        steps.append(v2.RandomHorizontalFlip(aug.hflip))
    if aug.vflip > 0:
        steps.append(v2.RandomVerticalFlip(aug.vflip))
    if aug.rotation > 0 or aug.shear > 0:
        steps.append(v2.RandomAffine(degrees=aug.rotation, shear=aug.shear))
    if aug.perspective > 0:
        steps.append(v2.RandomPerspective(distortion_scale=aug.perspective, p=PERSPECTIVE_P))
    if aug.jitter > 0:
        steps.append(v2.ColorJitter(aug.jitter, aug.jitter, aug.jitter))
    if aug.grayscale > 0:
        steps.append(v2.RandomGrayscale(aug.grayscale))
    return v2.Compose([*steps, v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])


def eval_transform(input_size: int) -> v2.Compose:
    """Shorter side to ``input_size``, centre crop: what validation, evaluate and predict use."""
    return v2.Compose(
        [
            v2.Resize(input_size, antialias=True),
            v2.CenterCrop(input_size),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )


def batch_mixer(num_classes: int, cutmix: float, mixup: float) -> v2.Transform | None:
    """CutMix and/or MixUp on whole batches (one of them per batch when both are on)."""
    mixers: list[v2.Transform] = []
    if cutmix > 0:
        mixers.append(v2.CutMix(alpha=cutmix, num_classes=num_classes))
    if mixup > 0:
        mixers.append(v2.MixUp(alpha=mixup, num_classes=num_classes))
    if not mixers:
        return None
    return mixers[0] if len(mixers) == 1 else v2.RandomChoice(mixers)
