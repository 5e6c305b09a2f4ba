"""Load a binsort checkpoint for inference: no Lightning, no code executed from the file.

A binsort checkpoint is a Lightning checkpoint whose ``hyper_parameters`` describe the model
(``config.model``, ``classes``, ``mean``, ``std``, ``config.input_size``). ``load_checkpoint``
reads it with ``weights_only=True`` and rebuilds the plain ``nn.Module`` from that alone.

An ensemble file (``save_ensemble``) packs several members in one file of the same kind:
``{"format": "binsort-ensemble", "version": 1, "classes": [...], "members": [{"hyper_parameters":
..., "state_dict": <the nn.Module's own keys>, "temperature": T}, ...]}``. ``load_members``
accepts either kind and returns the members.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from binsort.errors import BinsortError
from binsort.models.factory import build_model

REQUIRED = ("config", "classes", "mean", "std")
ENSEMBLE_FORMAT = "binsort-ensemble"


@dataclass
class LoadedModel:
    model: nn.Module
    arch: str
    classes: list[str]
    input_size: int
    path: Path
    hparams: dict[str, Any] = field(default_factory=dict)
    temperature: float = 1.0  # logits are divided by it before the softmax (calibration)

    @property
    def split(self) -> dict[str, Any] | None:
        return self.hparams.get("split")


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's dict, loaded without unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise BinsortError(f"{path}: no such checkpoint file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BinsortError(
            f"{path}: refused to load: not a checkpoint that loads safely ({first[:200]})"
        ) from None
    if not isinstance(data, dict):
        raise BinsortError(f"{path}: not a binsort checkpoint")
    return data


def hyperparameters(data: dict[str, Any], path: Path) -> dict[str, Any]:
    hparams = data.get("hyper_parameters")
    if not isinstance(hparams, dict):
        raise BinsortError(f"{path}: not a binsort checkpoint (it has no hyper_parameters)")
    missing = [key for key in REQUIRED if key not in hparams]
    missing += [
        f"config.{k}" for k in ("model", "input_size") if k not in hparams.get("config", {})
    ]
    if missing:
        raise BinsortError(f"{path}: not a binsort checkpoint (missing {', '.join(missing)})")
    return hparams


def _build(
    hparams: dict[str, Any], weights: dict[str, Any], path: Path, **extra: Any
) -> LoadedModel:
    config = hparams["config"]
    classes = list(hparams["classes"])
    model = build_model(
        config["model"], len(classes), hparams["mean"], hparams["std"], config["input_size"]
    )
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise BinsortError(
            f"{path}: weights do not fit {config['model']}: {str(exc)[:200]}"
        ) from None
    model.eval()
    return LoadedModel(
        model, config["model"], classes, int(config["input_size"]), path, hparams, **extra
    )


def load_checkpoint(path: str | Path) -> LoadedModel:
    path = Path(path)
    data = read_checkpoint(path)
    hparams = hyperparameters(data, path)
    state = data.get("state_dict", {})
    weights = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    return _build(hparams, weights, path)


def load_members(path: str | Path) -> list[LoadedModel]:
    """The models in a checkpoint (one) or an ensemble file (several), ready for inference."""
    path = Path(path)
    data = read_checkpoint(path)
    if data.get("format") != ENSEMBLE_FORMAT:
        hparams = hyperparameters(data, path)
        state = data.get("state_dict", {})
        weights = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
        return [_build(hparams, weights, path)]
    members = data.get("members")
    if not isinstance(members, list) or not members:
        raise BinsortError(f"{path}: ensemble file without members")
    loaded = []
    for i, member in enumerate(members):
        where = Path(f"{path}[member {i}]")
        hparams = hyperparameters(member, where)
        loaded.append(
            _build(
                hparams,
                member["state_dict"],
                where,
                temperature=float(member.get("temperature", 1.0)),
            )
        )
    check_same_classes(loaded)
    return loaded


def check_same_classes(members: list[LoadedModel]) -> list[str]:
    classes = members[0].classes
    for member in members[1:]:
        if member.classes != classes:
            raise BinsortError(
                f"{member.path} has classes {member.classes}, but {members[0].path} has {classes}: "
                "models with different class lists cannot be compared or combined"
            )
    return classes


def save_ensemble(members: list[LoadedModel], path: str | Path) -> Path:
    """Write ``members`` (repeats allowed: they weight the mean) as one ensemble file."""
    path = Path(path)
    classes = check_same_classes(members)
    data = {
        "format": ENSEMBLE_FORMAT,
        "version": 1,
        "classes": classes,
        "members": [
            {
                "hyper_parameters": m.hparams,
                "state_dict": m.model.state_dict(),
                "temperature": float(m.temperature),
            }
            for m in members
        ],
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(data, tmp)
    tmp.replace(path)
    return path
