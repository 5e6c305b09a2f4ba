"""Load a binsort checkpoint for inference: no Lightning, no code executed from the file.

A binsort checkpoint is a Lightning checkpoint whose ``hyper_parameters`` describe the model
(``config.model``, ``classes``, ``mean``, ``std``, ``config.input_size``, and for googlenet and
inception_v3 ``transform_input``). ``load_checkpoint`` reads it with ``weights_only=True`` and
rebuilds the plain ``nn.Module`` from that alone. The model is fed ``config.eval_size``
(``train --eval-size``, the size it was validated at) where set, else its training size.

An ensemble file (``save_ensemble``) packs several members in one file of the same kind:
``{"format": "binsort-ensemble", "version": 1, "classes": [...], "members": [{"hyper_parameters":
..., "state_dict": <the nn.Module's own keys>, "temperature": T, "input_size": S, "tta": V},
...]}``, ``tta`` being the test-time augmentation T was fitted for (none in older files).
``input_size`` is the size the member is fed at inference; it may differ from the size it
trained at (``config.input_size``, kept as it was): see ``binsort ensemble --input-size``.
``load_members`` accepts either kind and returns the members.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from binsort.config import TTA_MODES, input_size_ok, val_size_of
from binsort.errors import BinsortError
from binsort.files import replacing
from binsort.models.factory import build_model
from binsort.models.serialization import load_failure, safe_load  # noqa: F401 (re-export)
from binsort.onnx_model import is_onnx

MEMBER = "[member "  # a member's path: FILE[member I]
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
    tta: str = "none"  # the views the temperature was fitted for (ensemble --calibrate --tta)

    @property
    def split(self) -> dict[str, Any] | None:
        return self.hparams.get("split")


def run_checkpoint(path: str | Path) -> Path:
    """``path`` itself, or for a training run folder its best checkpoint (``best.ckpt``, else
    ``last.ckpt``): ``-m runs/x/version_0`` works wherever a checkpoint does."""
    path = Path(path)
    if not path.is_dir():
        return path
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    for name in ("best.ckpt", "last.ckpt"):
        if (folder / name).is_file():
            return folder / name
    raise BinsortError(f"{path}: a folder without best.ckpt or last.ckpt (not a training run)")


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's dict, loaded without unpickling arbitrary objects."""
    path = run_checkpoint(path)
    if not path.is_file():
        raise BinsortError(f"{path}: no such checkpoint file")
    if is_onnx(path):
        # An export is a one-way street: its graph has no checkpoint to rebuild.
        raise BinsortError(
            f"{path}: an exported ONNX model; this needs the checkpoint or ensemble file it was "
            "exported from (evaluate and predict take .onnx files)"
        )
    data = safe_load(path)
    if not isinstance(data, dict):
        raise BinsortError(f"{path}: not a binsort checkpoint (it holds a {type(data).__name__})")
    return data


def hyperparameters(data: dict[str, Any], path: Path) -> dict[str, Any]:
    hparams = data.get("hyper_parameters")
    if not isinstance(hparams, dict):
        raise BinsortError(f"{path}: not a binsort checkpoint (it has no hyper_parameters)")
    missing = [key for key in REQUIRED if key not in hparams]
    config = hparams.get("config")
    if isinstance(config, dict):
        missing += [f"config.{k}" for k in ("model", "input_size") if k not in config]
    if missing:
        raise BinsortError(f"{path}: not a binsort checkpoint (missing {', '.join(missing)})")
    _check_hyperparameters(hparams, path)
    return hparams


def _check_hyperparameters(hparams: dict[str, Any], path: Path) -> None:
    """Types and ranges of what rebuilding the model reads, so a damaged or hand-made file is
    one clear error instead of a crash deep inside torchvision."""

    def numbers(value: Any) -> bool:
        return (
            isinstance(value, (list, tuple))
            and len(value) == 3
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        )

    config = hparams["config"]
    classes = hparams["classes"]
    problems = []
    if not isinstance(config, dict):
        problems.append("config is not a mapping")
    else:
        if not isinstance(config["model"], str):
            problems.append("config.model is not a model name")
        size = config["input_size"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            problems.append("config.input_size is not a positive whole number")
        if config.get("eval_size") is not None and not input_size_ok(config["eval_size"]):
            problems.append("config.eval_size is not a valid input size")
    if (
        not isinstance(classes, (list, tuple))
        or not classes
        or not all(isinstance(c, str) for c in classes)
    ):
        problems.append("classes is not a list of class names")
    for key in ("mean", "std"):
        if not numbers(hparams[key]):
            problems.append(f"{key} is not three numbers")
    if not isinstance(hparams.get("transform_input", False), bool):
        problems.append("transform_input is not true or false")
    if problems:
        raise BinsortError(f"{path}: damaged binsort checkpoint ({'; '.join(problems)})")


def _build(
    hparams: dict[str, Any], weights: dict[str, Any], path: Path, **extra: Any
) -> LoadedModel:
    config = hparams["config"]
    classes = list(hparams["classes"])
    model = build_model(
        config["model"],
        len(classes),
        hparams["mean"],
        hparams["std"],
        config["input_size"],
        # Absent from checkpoints made before it was recorded, which were built without it.
        transform_input=hparams.get("transform_input", False),
    )
    if not isinstance(weights, dict):
        raise BinsortError(f"{path}: damaged binsort checkpoint (its weights are not a mapping)")
    try:
        model.load_state_dict(weights)
    except (RuntimeError, TypeError, AttributeError) as exc:
        detail = " ".join(str(exc).split())  # one line: torch lists mismatches on many
        raise BinsortError(
            f"{path}: weights do not fit {config['model']}: {detail[:200]}"
        ) from None
    model.eval()
    return LoadedModel(
        model, config["model"], classes, int(val_size_of(config)), path, hparams, **extra
    )


def load_checkpoint(path: str | Path) -> LoadedModel:
    path = run_checkpoint(path)
    data = read_checkpoint(path)
    hparams = hyperparameters(data, path)
    return _build(hparams, _module_weights(data, path), path)


def _module_weights(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """The plain model's weights from a Lightning checkpoint's ``state_dict``."""
    state = data.get("state_dict", {})
    if not isinstance(state, dict):
        raise BinsortError(f"{path}: damaged binsort checkpoint (its state_dict is not a mapping)")
    return {
        k.removeprefix("model."): v
        for k, v in state.items()
        if isinstance(k, str) and k.startswith("model.")
    }


def load_members(path: str | Path) -> list[LoadedModel]:
    """The models in a checkpoint (one) or an ensemble file (several), ready for inference."""
    path = run_checkpoint(path)
    data = read_checkpoint(path)
    if data.get("format") != ENSEMBLE_FORMAT:
        hparams = hyperparameters(data, path)
        return [_build(hparams, _module_weights(data, path), path)]
    loaded = []
    for where, member, hparams in ensemble_members(data, path):
        temperature = member.get("temperature", 1.0)
        if not isinstance(temperature, (int, float)) or not 0 < temperature < float("inf"):
            raise BinsortError(f"{where}: damaged ensemble file (temperature {temperature!r})")
        built = _build(hparams, member.get("state_dict"), where, temperature=float(temperature))
        size = member.get("input_size", built.input_size)
        if not input_size_ok(size):
            raise BinsortError(f"{where}: damaged ensemble file (input size {size!r})")
        built.input_size = size
        built.tta = member.get("tta", "none")
        if built.tta not in TTA_MODES:
            raise BinsortError(f"{where}: damaged ensemble file (tta {built.tta!r})")
        loaded.append(built)
    check_same_classes(loaded)
    return loaded


def ensemble_members(
    data: dict[str, Any], path: Path
) -> list[tuple[Path, dict[str, Any], dict[str, Any]]]:
    """(where, record, checked hyper_parameters) of each member of a read ensemble file."""
    members = data.get("members")
    if not isinstance(members, list) or not members:
        raise BinsortError(f"{path}: ensemble file without members")
    out = []
    for i, member in enumerate(members):
        where = Path(f"{path}{MEMBER}{i}]")
        if not isinstance(member, dict):
            raise BinsortError(f"{where}: damaged ensemble file (a member is not a mapping)")
        out.append((where, member, hyperparameters(member, where)))
    return out


def same_member(a: LoadedModel, b: LoadedModel) -> bool:
    """Whether two loaded members compute the same thing (a repeat in an ensemble file)."""
    if (a.arch, a.temperature, a.input_size, a.tta) != (b.arch, b.temperature, b.input_size, b.tta):
        return False
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def distinct_members(members: list[LoadedModel]) -> list[tuple[LoadedModel, int]]:
    """Each distinct member once, with the number of times it appears (its weight).

    Greedy selection stores a member chosen twice twice; running it once and weighting its
    answer gives the same mean for half the work."""
    groups: list[list[LoadedModel]] = []
    for member in members:
        same = next((g for g in groups if same_member(g[0], member)), None)
        if same is None:
            groups.append([member])
        else:
            same.append(member)
    return [(g[0], len(g)) for g in groups]


def source_file(path: Path) -> Path:
    """The file a loaded model came from: an ensemble member's path is its file's plus
    ``[member I]``."""
    return path.with_name(path.name.partition(MEMBER)[0])


def calibrated_tta(members: list[LoadedModel]) -> str | None:
    """The views the members' temperatures were fitted for (``ensemble --calibrate --tta``):
    what the file should predict with. None for uncalibrated members (temperature 1) or a mix."""
    fitted = {m.tta for m in members if m.temperature != 1.0}
    return fitted.pop() if len(fitted) == 1 else None


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
                "input_size": int(m.input_size),
                "tta": m.tta,
            }
            for m in members
        ],
    }
    with replacing(path) as tmp:
        torch.save(data, tmp)
    return path
