"""Build a classifier from a torchvision name, with its normalisation as the first layer.

``build_model("resnet18", 6, mean, std)`` returns ``Sequential(norm=Normalize, net=resnet18)``
with random weights: the model takes [0, 1] images, so whoever uses it never needs to know the
mean/std it was trained with. Names come from two zoos, torchvision and timm
(``resolve_model_name`` says how a name is read); ``binsort.models.pretrained`` starts a model
from published or local weights.
"""

from __future__ import annotations

import difflib
from collections import OrderedDict

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


TIMM, TV = "timm/", "tv/"


def torchvision_names() -> list[str]:
    """Every torchvision image-classification model name."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def timm_names() -> list[str]:
    """Every timm architecture name (timm is installed with binsort)."""
    import timm

    return timm.list_models()


def resolve_model_name(name: str) -> str:
    """The canonical name of a model: torchvision's bare, timm's as ``timm/NAME``.

    One rule for a bare name: torchvision's model when torchvision has one (so every name a
    checkpoint ever stored keeps its meaning), else timm's. ``tv/NAME`` and ``timm/NAME``
    choose the zoo. timm names may carry a pretrained tag (``timm/resnet50.a1_in1k``).
    """
    if name.startswith(TV):
        bare = name.removeprefix(TV)
        if bare in torchvision_names():
            return bare
        _unknown(name, [TV + n for n in torchvision_names()])
    if name.startswith(TIMM):
        if _is_timm(name.removeprefix(TIMM)):
            return name
        _unknown(name, [TIMM + n for n in timm_names()])
    if name in torchvision_names():
        return name
    if _is_timm(name):
        return TIMM + name
    _unknown(name, sorted(set(torchvision_names()) | set(timm_names())))
    raise AssertionError  # _unknown raises


def _is_timm(name: str) -> bool:
    import timm

    return bool(name) and timm.is_model(name)


def _unknown(name: str, names: list[str]) -> None:
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
    hint = (
        f"; did you mean {', '.join(close)}?"
        if close
        else "; see torchvision.models.list_models() and timm.list_models() for the names"
    )
    raise BinsortError(f"unknown model '{name}'{hint}")


def is_timm(arch: str) -> bool:
    return arch.startswith(TIMM)


def build_model(
    arch: str,
    num_classes: int,
    mean: list[float],
    std: list[float],
    input_size: int = 224,
    transform_input: bool = False,
) -> nn.Sequential:
    """``Sequential(norm, net)`` for a torchvision or timm name, with random weights.

    ``transform_input`` is for torchvision's googlenet and inception_v3 only (see
    ``TRANSFORM_INPUT``); the checkpoint stores it, so the same network is rebuilt."""
    arch = resolve_model_name(arch)
    if is_timm(arch):
        net = _build_timm(arch.removeprefix(TIMM), num_classes, input_size)
    else:
        net = _build_torchvision(arch, num_classes, input_size, transform_input)
    return nn.Sequential(OrderedDict(norm=Normalize(mean, std), net=net))


def check_input_size(net: nn.Module, arch: str, size: int, option: str) -> None:
    """Refuse, in one line, a size the architecture cannot take (a ViT's is fixed when built)."""
    training = net.training
    net.eval()
    try:
        with torch.no_grad():
            net(torch.zeros(1, 3, size, size))
    except (RuntimeError, AssertionError, ValueError) as exc:
        reason = " ".join(str(exc).split())[:120]
        raise BinsortError(
            f"{option} {size}: {arch} cannot take {size}-px images ({reason})"
        ) from None
    finally:
        net.train(training)


def _build_timm(name: str, num_classes: int, input_size: int) -> nn.Module:
    import timm
    from timm.models import get_pretrained_cfg

    kwargs: dict = {}
    cfg = get_pretrained_cfg(name)
    if cfg is not None and cfg.fixed_input_size and cfg.input_size[-1] != input_size:
        # A ViT's position embedding is sized for its input when it is built; loading
        # weights made for another size resizes it (binsort.models.pretrained).
        kwargs["img_size"] = input_size
    try:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
    except (TypeError, ValueError, RuntimeError, AssertionError) as exc:
        reason = " ".join(str(exc).split())[:160]
        raise BinsortError(
            f"cannot build timm/{name} for {num_classes} classes at {input_size} px: {reason}"
        ) from None


# torchvision's googlenet and inception_v3 carry Google's weights, made for inputs scaled to
# [-1, 1]; built with those weights, torchvision sets transform_input=True, which turns its
# ImageNet-normalised input into that scale. Without it the weights see the wrong input.
TRANSFORM_INPUT = ("googlenet", "inception_v3")


def _build_torchvision(
    arch: str, num_classes: int, input_size: int, transform_input: bool
) -> nn.Module:
    import torchvision

    kwargs: dict = {"weights": None, "num_classes": num_classes}
    if arch in TRANSFORM_INPUT:
        # Auxiliary heads change the output type in training mode; binsort trains one head.
        kwargs.update(aux_logits=False, init_weights=True, transform_input=transform_input)
    if arch.startswith("vit_"):
        kwargs["image_size"] = input_size
    try:
        return torchvision.models.get_model(arch, **kwargs)
    except (TypeError, ValueError) as exc:
        raise BinsortError(f"cannot build {arch} for {num_classes} classes: {exc}") from None


def head_prefixes(net: nn.Module, num_classes: int) -> list[str]:
    """Names of the classifier head's modules, as prefixes of their parameters' names.

    A timm model names its own (``pretrained_cfg["classifier"]``, the modules timm leaves
    out when it loads weights for another number of classes): one, or several for distilled
    models whose heads' answers are averaged (DeiT's ``head`` and ``head_dist``). A
    torchvision model has no such record: its head is the last Linear/Conv2d producing
    ``num_classes`` outputs."""
    named = _timm_classifier(net)
    if named:
        return [name + "." for name in named]
    head = None
    for name, module in net.named_modules():
        out = getattr(module, "out_features", getattr(module, "out_channels", None))
        if isinstance(module, nn.Linear | nn.Conv2d) and out == num_classes:
            head = name
    if head is None:
        raise BinsortError("cannot find the classifier head of this model")
    return [head + "."]


def _timm_classifier(net: nn.Module) -> list[str]:
    """The head modules a timm model's config names, when they all hold parameters."""
    cfg = getattr(net, "pretrained_cfg", None)
    names = cfg.get("classifier") if isinstance(cfg, dict) else None
    names = [names] if isinstance(names, str) else list(names or [])
    modules = dict(net.named_modules())
    found = [modules.get(name) for name in names]
    if not names or any(m is None or next(m.parameters(), None) is None for m in found):
        return []  # not a timm model, or one whose record does not fit: search instead
    return names
