"""Build a classifier from a torchvision name, with its normalisation as the first layer.

``build_model("resnet18", 6, mean, std)`` returns ``Sequential(norm=Normalize, net=resnet18)``
with random weights: the model takes [0, 1] images, so whoever uses it never needs to know the
mean/std it was trained with. ``load_weights`` starts it from published or local weights.
"""

from __future__ import annotations

import difflib
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from binsort.errors import BinsortError


class Normalize(nn.Module):
    """(x - mean) / std per channel; mean and std are buffers, so they live in the state dict."""

    def __init__(self, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)


def model_names() -> list[str]:
    """Every torchvision image-classification model name."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def check_model_name(name: str) -> None:
    names = model_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=4, cutoff=0.5)
        hint = (
            f"; did you mean {', '.join(close)}?"
            if close
            else f"; choose one of {', '.join(names)}"
        )
        raise BinsortError(f"unknown model '{name}'{hint}")


def build_model(
    arch: str, num_classes: int, mean: list[float], std: list[float], input_size: int = 224
) -> nn.Sequential:
    import torchvision

    check_model_name(arch)
    kwargs: dict = {"weights": None, "num_classes": num_classes}
    if arch.startswith(("googlenet", "inception")):
        # Auxiliary heads change the output type in training mode; binsort trains one head.
        kwargs.update(aux_logits=False, init_weights=True)
    if arch.startswith("vit_"):
        kwargs["image_size"] = input_size
    try:
        net = torchvision.models.get_model(arch, **kwargs)
    except (TypeError, ValueError) as exc:
        raise BinsortError(f"cannot build {arch} for {num_classes} classes: {exc}") from None
    return nn.Sequential(OrderedDict(norm=Normalize(mean, std), net=net))


def head_prefixes(net: nn.Module, num_classes: int) -> list[str]:
    """Names of the classifier head: the last Linear/Conv2d producing ``num_classes`` outputs."""
    head = None
    for name, module in net.named_modules():
        out = getattr(module, "out_features", getattr(module, "out_channels", None))
        if isinstance(module, nn.Linear | nn.Conv2d) and out == num_classes:
            head = name
    if head is None:
        raise BinsortError("cannot find the classifier head of this model")
    return [head + "."]


def weights_info(
    name_or_file: str,
) -> tuple[dict[str, torch.Tensor], list[float] | None, list[float] | None]:
    """(state dict, mean, std) of a torchvision weights name or a local state-dict file.

    mean/std are the weights' own for torchvision weights, None for a plain file.
    """
    path = Path(name_or_file)
    if path.exists():
        from binsort.models.checkpoint import safe_load  # (it imports this module)

        state = safe_load(path)  # a pickle with code, a truncated file: one-line refusal
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        if not isinstance(state, dict) or not all(
            isinstance(v, torch.Tensor) for v in state.values()
        ):
            raise BinsortError(f"{path}: expected a state dict (parameter name -> tensor)")
        return state, None, None
    import torchvision

    try:
        weights = torchvision.models.get_weight(name_or_file)
    except (ValueError, KeyError, AttributeError):
        raise BinsortError(
            f"--weights {name_or_file}: neither a file nor a torchvision weights name "
            "(like ResNet18_Weights.IMAGENET1K_V1)"
        ) from None
    try:
        state = weights.get_state_dict(progress=False)
    except Exception as exc:
        raise BinsortError(
            f"could not download {name_or_file} ({type(exc).__name__}); with no internet, "
            "pass a local state-dict file to --weights"
        ) from None
    transforms = weights.transforms()
    return state, list(transforms.mean), list(transforms.std)


def load_weights(net: nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Load matching tensors into ``net``; returns the names left at their fresh values.

    Tensors whose shape differs (the classifier head, for another number of classes) are
    skipped. Loading almost nothing means the file is for another architecture: an error.
    """
    own = net.state_dict()
    # Accept binsort's own prefixes too, so a binsort checkpoint's state dict can be used.
    state = {k.removeprefix("model.").removeprefix("net."): v for k, v in state.items()}
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if len(usable) < 0.5 * len(own):
        raise BinsortError(
            f"the weights match only {len(usable)} of {len(own)} tensors of this model: "
            "are they for another architecture?"
        )
    net.load_state_dict(usable, strict=False)
    return sorted(set(own) - set(usable))
