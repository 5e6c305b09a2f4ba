"""A vision transformer's position embedding, resized for the input size a network was built for.

A ViT learns one embedding per patch position, so its weights fit one grid of patches: 14 x 14
for 224-px inputs and 16-px patches. Built for another ``--input-size``, the network has
another grid, and loading would skip the embedding as a shape mismatch, leaving random
positions under a pretrained backbone. ``fit_position_embedding`` resizes the source's grid
(bicubic), as timm and torchvision do when they load weights for another size; the class
(and distillation) tokens' embeddings are kept as they are.
"""

from __future__ import annotations

import math

import torch
from torch import nn

TIMM_KEY = "pos_embed"  # timm's ViTs, DeiT, EVA...
TORCHVISION_KEY = "encoder.pos_embedding"  # torchvision's vit_*


def fit_position_embedding(
    net: nn.Module, state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]
) -> str | None:
    """Resize ``state``'s position embedding in place to fit ``net`` (whose state dict is
    ``own``); a note saying so, or None when there was nothing to resize."""
    for key, resize in ((TIMM_KEY, _timm), (TORCHVISION_KEY, _torchvision)):
        theirs, mine = state.get(key), own.get(key)
        if theirs is None or mine is None or theirs.shape == mine.shape:
            continue
        if theirs.ndim != 3 or theirs.shape[-1] != mine.shape[-1]:
            return None  # another width: another architecture, not another size
        try:
            resized, tokens = resize(net, theirs)
        except (RuntimeError, ValueError, AttributeError):
            return None  # not a square grid, or not a ViT: left fresh, and reported so
        if resized.shape != mine.shape:
            return None
        state[key] = resized
        old, new = (math.isqrt(t.shape[1] - tokens) for t in (theirs, resized))
        return (
            f"the position embedding ({key}) was resized from {old}x{old} to {new}x{new} "
            "patches for this input size"
        )
    return None


def _timm(net: nn.Module, posemb: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The resized embedding and the number of tokens before the grid's."""
    from timm.layers import resample_abs_pos_embed

    grid = net.patch_embed.grid_size
    # Models that add the class token after the positions have no embedding for it.
    tokens = 0 if getattr(net, "no_embed_class", False) else getattr(net, "num_prefix_tokens", 1)
    return resample_abs_pos_embed(posemb, new_size=list(grid), num_prefix_tokens=tokens), tokens


def _torchvision(net: nn.Module, posemb: torch.Tensor) -> tuple[torch.Tensor, int]:
    from torchvision.models.vision_transformer import interpolate_embeddings

    state = interpolate_embeddings(net.image_size, net.patch_size, {TORCHVISION_KEY: posemb})
    return state[TORCHVISION_KEY], 1  # one class token
