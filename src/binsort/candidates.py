"""The models to score or combine, loaded once: the first step of ``evaluate`` and ``ensemble``.

``load_candidates(["a.ckpt", "ens.pt"])`` reads checkpoints and ensemble files (and, for
``evaluate``, exported ``.onnx`` files) into ``Candidate``s: the loaded model, a short name for
tables, its weight and its parameter count. Identical members of an ensemble file become one
candidate that counts them, so a member chosen twice is run once and weighs twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from binsort.errors import BinsortError
from binsort.models.checkpoint import (
    LoadedModel,
    check_same_classes,
    distinct_members,
    load_members,
)
from binsort.models.onnx_member import OnnxModule, load_onnx_member, stored_parameters
from binsort.onnx_model import is_onnx


@dataclass
class Candidate:
    """One distinct model: a checkpoint, or a distinct member of an ensemble file."""

    member: LoadedModel
    name: str  # shortest unique tail of its path, for tables
    weight: int = 1  # times it appears in its ensemble file: repeats weight the mean
    parameters: int = 0


def display_names(paths: list[Path]) -> list[str]:
    """The shortest path tails that tell the paths apart (two runs' ``last.ckpt`` clash)."""
    names = [p.name for p in paths]
    depth = 1
    while len(set(names)) < len(names) and depth < max(len(p.parts) for p in paths):
        depth += 1
        names = [Path(*p.parts[-depth:]).as_posix() for p in paths]
    if len(set(names)) < len(names):  # the same file given twice
        names = [f"{n} ({i})" for i, n in enumerate(names)]
    return names


def load_candidates(paths: list[str | Path], onnx: bool = False) -> list[Candidate]:
    """Load checkpoints and ensemble files (and with ``onnx``, exported files, which can be
    scored but not packed into an ensemble); identical members of a file become one weighted."""
    if not paths:
        raise BinsortError("give at least one checkpoint or ensemble file")
    groups = [g for path in paths for g in distinct_members(_load(path, onnx))]
    check_same_classes([m for m, _ in groups])
    names = display_names([m.path for m, _ in groups])
    return [
        Candidate(m, name, weight, _parameters(m))
        for (m, weight), name in zip(groups, names, strict=True)
    ]


BUNDLED = "default"  # the model that ships with binsort, as a MODEL argument


def _load(path: str | Path, onnx: bool) -> list[LoadedModel]:
    path = bundled_or(path)
    return [load_onnx_member(path)] if onnx and is_onnx(path) else load_members(path)


def bundled_or(path: str | Path) -> str | Path:
    """``path``, or the bundled model's file for the word ``default`` (a file of that name is
    ``./default``)."""
    if str(path) != BUNDLED:
        return path
    from binsort.predict import default_model_path

    bundled = default_model_path()
    if bundled is None:
        raise BinsortError("this build of binsort has no bundled model to score as 'default'")
    return bundled


def _inner_members(member: LoadedModel) -> int:
    """How many members answer inside one loaded model: an exported ensemble holds several."""
    if isinstance(member.model, OnnxModule):
        return sum(int(m.get("weight", 1)) for m in member.model.onnx.members) or 1
    return 1


def ensemble_label(candidates: list[Candidate]) -> str:
    """The ensemble row's description. An exported ensemble is one model in the mean (its
    members were averaged inside the file), so with one the row counts models and members."""
    models = sum(c.weight for c in candidates)
    members = sum(c.weight * _inner_members(c.member) for c in candidates)
    return f"{members} members" if members == models else f"{models} models, {members} members"


def _parameters(member: LoadedModel) -> int:
    if isinstance(member.model, OnnxModule):
        return stored_parameters(member.path)
    return sum(p.numel() for p in member.model.parameters())
