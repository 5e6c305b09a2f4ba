"""Load a binsort checkpoint for inference: no Lightning, no code executed from the file.

A binsort checkpoint is a Lightning checkpoint whose ``hyper_parameters`` describe the model
(``config.model``, ``classes``, ``mean``, ``std``, ``config.input_size``). ``load_checkpoint``
reads it with ``weights_only=True`` and rebuilds the plain ``nn.Module`` from that alone.
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


@dataclass
class LoadedModel:
    model: nn.Module
    arch: str
    classes: list[str]
    input_size: int
    path: Path
    hparams: dict[str, Any] = field(default_factory=dict)

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


def load_checkpoint(path: str | Path) -> LoadedModel:
    path = Path(path)
    data = read_checkpoint(path)
    hparams = hyperparameters(data, path)
    config = hparams["config"]
    classes = list(hparams["classes"])
    model = build_model(
        config["model"], len(classes), hparams["mean"], hparams["std"], config["input_size"]
    )
    state = data.get("state_dict", {})
    weights = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise BinsortError(
            f"{path}: weights do not fit {config['model']}: {str(exc)[:200]}"
        ) from None
    model.eval()
    return LoadedModel(model, config["model"], classes, int(config["input_size"]), path, hparams)
