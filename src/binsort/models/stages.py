"""``train --freeze-stages N``: the stem and first N stages of a timm backbone stay as their
pretrained weights left them, for the whole run.

The first stages of an ImageNet network find edges, colours and textures, which a photo of
waste needs as much as any other photo, and they run on the largest feature maps, so they cost
much of a step's backward pass. Kept frozen, weights and batch-norm statistics alike, they need
no backward pass at all: autograd stops at the first layer that learns. Where each stage
begins is timm's own grouping (``group_matcher``, the one its layer-wise decay uses), so the
option means the same for every timm architecture.
"""

from __future__ import annotations

from torch import nn

from binsort.errors import BinsortError
from binsort.models.factory import is_timm, resolve_model_name


def frozen_stages(net: nn.Module, arch: str, stages: int, head: list[str]) -> list[nn.Module]:
    """The modules of ``net``'s stem and its first ``stages`` stages (none for 0)."""
    if stages == 0:
        return []
    arch = resolve_model_name(arch)
    if not is_timm(arch) or not hasattr(net, "group_matcher"):
        raise BinsortError(
            f"--freeze-stages needs a timm model, whose stages timm names; {arch} is not one "
            "(--freeze-epochs freezes the whole backbone of any model for a while)"
        )
    from timm.models import group_modules

    groups = group_modules(net, net.group_matcher(coarse=True))
    # Group 0 is the stem; the last groups hold the head (and, in some models, a final conv).
    backbone = [
        names
        for names in groups.values()
        if not any((name + ".").startswith(tuple(head)) for name in names)
    ]
    most = len(backbone) - 2  # at least one stage after the frozen ones still learns
    if not 1 <= stages <= most:
        raise BinsortError(
            f"--freeze-stages {stages}: {arch} has {len(backbone) - 1} stages after its stem; "
            f"choose from 0 to {most}"
        )
    return [net.get_submodule(name) for names in backbone[: stages + 1] for name in names]
