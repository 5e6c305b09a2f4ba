"""Batch-norm statistics measured on photos, with what the network computes left unchanged.

A batch norm computes ``(x - running_mean) / sqrt(running_var + eps) * weight + bias`` in eval
mode, and the same with the batch's own mean and variance in training. When the stored
statistics are not those of the activations (weights read back from a graph whose batch norms
were folded into its convolutions, ``binsort.models.bundled``), the two modes compute
different networks, and the first training steps would start from the second one.

``recentre_norms`` measures each batch norm's input on a few photos and re-expresses the layer
around those statistics: the running mean and variance become the measured ones, and weight and
bias change so that eval mode computes exactly what it computed before. Training mode, on
batches like those photos, then computes nearly the same.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def recentre_norms(model: nn.Module, batches: Iterable, max_images: int) -> int:
    """Measure ``model``'s batch norms on ``batches`` (``(images, labels)``, as the model
    takes them) until ``max_images``, and re-express them around what was measured. Returns
    the number of images used."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    # Per norm: images' pixel count, and sums of x and x^2 per channel (float64: many pixels).
    sums: dict[nn.Module, list] = {m: [0, 0.0, 0.0] for m in norms}

    def measure(module: nn.Module, inputs: tuple) -> None:
        x = inputs[0].detach().double().transpose(0, 1).flatten(1)
        entry = sums[module]
        entry[0] += x.shape[1]
        entry[1] = entry[1] + x.sum(1)
        entry[2] = entry[2] + (x * x).sum(1)

    hooks = [m.register_forward_pre_hook(measure) for m in norms]
    training = model.training
    seen = 0
    try:
        model.eval()  # eval: each layer sees what the network as it stands computes
        with torch.no_grad():
            for images, _ in batches:
                model(images[: max_images - seen])
                seen += min(len(images), max_images - seen)
                if seen >= max_images:
                    break
    finally:
        for hook in hooks:
            hook.remove()
        model.train(training)
    if seen == 0:
        return 0
    with torch.no_grad():
        for norm in norms:
            if norm.weight is None or norm.running_var is None:
                continue  # nothing to re-express: no affine part, or no stored statistics
            count, total, squares = sums[norm]
            mean = total / count
            var = (squares / count - mean * mean).clamp_min(0)
            _re_express(norm, mean.float(), var.float())
    return seen


def _re_express(norm: nn.modules.batchnorm._BatchNorm, mean: torch.Tensor, var: torch.Tensor):
    """Statistics ``mean``/``var`` for ``norm``, its eval-mode output unchanged."""
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    norm.bias += (mean - norm.running_mean) * scale
    norm.weight.copy_(scale * torch.sqrt(var + norm.eps))
    norm.running_mean.copy_(mean)
    norm.running_var.copy_(var)
