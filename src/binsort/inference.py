"""Class probabilities from loaded models: the one inference path of evaluate and predict.

``probabilities(members, images)`` takes PIL images, applies each member's own eval
transform (its input size; normalisation is inside the model), and returns the softmax of
each member's logits divided by its temperature, shape ``[members, images, classes]``. The
ensemble's answer is their mean (``binsort.metrics.weighted_mean``), GarbageML's softmax mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

from binsort.data.transforms import eval_transform
from binsort.metrics import tempered_softmax
from binsort.models.checkpoint import LoadedModel

# A batch of [0, 1] images at the member's input size; or, for an exported file whose members
# take different sizes, one batch per size ({224: ..., 240: ...}).
Batch = torch.Tensor | dict[int, torch.Tensor]


def _views(batch: Batch, tta: str) -> list[Batch]:
    """Test-time augmentation views of a batch: identity, flips (and five crops)."""
    if isinstance(batch, dict):  # one batch per input size: the same views of each
        per_size = {size: _views(b, tta) for size, b in batch.items()}
        count = len(next(iter(per_size.values())))
        return [{size: views[i] for size, views in per_size.items()} for i in range(count)]
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
    member: LoadedModel, batch: Batch, tta: str = "none", per_view: bool = False
) -> torch.Tensor:
    """Softmax(logits / T) for a batch of [0, 1] tensors at the member's input size: the
    mean over the TTA views, or with ``per_view`` each view's, ``[V, N, C]`` (calibration)."""
    probs = [
        tempered_softmax(member.model(view).float(), member.temperature)
        for view in _views(batch, tta)
    ]
    return torch.stack(probs) if per_view else torch.stack(probs).mean(0)


def probabilities(
    members: Sequence[LoadedModel],
    images: Sequence[Image.Image],
    tta: str = "none",
    per_view: bool = False,
) -> torch.Tensor:
    """Per-member probabilities ``[M, N, C]`` for RGB PIL images (``[M, V, N, C]`` per view)."""
    batches: dict[int, torch.Tensor] = {}
    out = []
    for member in members:
        # An exported ensemble of members of different sizes takes one batch per size.
        sizes = getattr(member.model, "input_sizes", None) or [member.input_size]
        for size in sizes:
            if size not in batches:
                transform = eval_transform(size)
                batches[size] = torch.stack([transform(im) for im in images])
        batch = batches[sizes[0]] if len(sizes) == 1 else {s: batches[s] for s in sizes}
        out.append(member_probabilities(member, batch, tta, per_view))
    return torch.stack(out)
