"""Class probabilities from loaded models: the one inference path of evaluate and predict.

``probabilities(members, images)`` takes PIL images, applies each member's own eval
transform (its input size; normalisation is inside the model), and returns the softmax of
each member's logits divided by its temperature, shape ``[members, images, classes]``. The
ensemble's answer is the mean over members (``ensemble_mean``), GarbageML's softmax mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

from binsort.data.transforms import eval_transform
from binsort.metrics import tempered_softmax
from binsort.models.checkpoint import LoadedModel


def _views(batch: torch.Tensor, tta: str) -> list[torch.Tensor]:
    """Test-time augmentation views of a batch: identity, flips (and five crops)."""
    if tta == "none":
        return [batch]
    views = [batch, batch.flip(-1), batch.flip(-2)]
    if tta == "flip5crop":
        size = batch.shape[-1]
        crop = max(8, int(round(size * 0.875)))
        resize = torch.nn.functional.interpolate
        for top, left in ((0, 0), (0, size - crop), (size - crop, 0), (size - crop, size - crop)):
            part = batch[..., top : top + crop, left : left + crop]
            views.append(resize(part, size=(size, size), mode="bilinear", align_corners=False))
    return views


@torch.inference_mode()
def member_probabilities(
    member: LoadedModel, batch: torch.Tensor, tta: str = "none"
) -> torch.Tensor:
    """Softmax(logits / T) for a batch of [0, 1] tensors at the member's input size."""
    probs = [
        tempered_softmax(member.model(view).float(), member.temperature)
        for view in _views(batch, tta)
    ]
    return torch.stack(probs).mean(0)


def probabilities(
    members: Sequence[LoadedModel], images: Sequence[Image.Image], tta: str = "none"
) -> torch.Tensor:
    """Per-member probabilities ``[M, N, C]`` for RGB PIL images."""
    batches: dict[int, torch.Tensor] = {}
    out = []
    for member in members:
        size = member.input_size
        if size not in batches:
            transform = eval_transform(size)
            batches[size] = torch.stack([transform(im) for im in images])
        out.append(member_probabilities(member, batches[size], tta))
    return torch.stack(out)


def ensemble_mean(member_probs: torch.Tensor) -> torch.Tensor:
    """[M, N, C] -> [N, C]: the mean of the members' probabilities (rows still sum to 1)."""
    return member_probs.mean(0)
