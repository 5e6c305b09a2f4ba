"""Run loaded models over a set of labelled images, and fit their temperatures on one.

``run_models(members, images)`` streams the images through every member in batches (decoded in
DataLoader workers, so a large folder never sits in memory) and returns each member's
probabilities ``[M, N, C]`` and its time. ``calibrate_members`` runs them once at T = 1 (each
TTA view apart) and fits each member's temperature; its ``Calibration`` also fits the factor an
ensemble of them shares. ``evaluate`` and ``ensemble`` both go through here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch

from binsort.config import TTA_MODES
from binsort.data.folder import ImageSet
from binsort.data.images import open_rgb
from binsort.errors import BinsortError, check_choice
from binsort.inference import probabilities
from binsort.metrics import TEMPERATURE_RANGE, fit_shared_scale, fit_temperature
from binsort.models.checkpoint import LoadedModel

if TYPE_CHECKING:
    from binsort.candidates import Candidate

Progress = Callable[[int, int], None]  # (images done, images in all)


class _Images(torch.utils.data.Dataset):
    """PIL images of an ImageSet, decoded in DataLoader workers so a large folder streams."""

    def __init__(self, images: ImageSet, min_side: int) -> None:
        self.images, self.samples, self.min_side = images, images.samples, min_side

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        return open_rgb(self.images.file(self.samples[i][0]), min_side=self.min_side)


def _as_list(batch: list) -> list:
    return batch  # PIL images stay a list: each model resizes them to its own input size


@dataclass
class Outputs:
    probs: torch.Tensor  # [M, N, C]
    seconds: list[float]  # per member: time in preprocessing and forward passes


def run_models(
    members: list[LoadedModel],
    images: ImageSet,
    tta: str = "none",
    batch_size: int = 32,
    workers: int = 0,
    progress: Progress | None = None,
    per_view: bool = False,
) -> Outputs:
    """Every member's probabilities on every image, in batches; timed per member. With
    ``per_view``, each TTA view's instead of their mean: ``[M, V, N, C]``."""
    check_choice("--tta", tta, TTA_MODES)
    if batch_size < 1 or workers < 0:
        raise BinsortError("--batch must be at least 1 and --workers at least 0")
    loader = torch.utils.data.DataLoader(
        _Images(images, min_side=max(m.input_size for m in members)),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_as_list,
    )
    chunks: list[list[torch.Tensor]] = [[] for _ in members]
    seconds = [0.0] * len(members)
    done = 0
    for batch in loader:
        for i, member in enumerate(members):
            started = time.perf_counter()
            chunks[i].append(probabilities([member], batch, tta, per_view)[0])
            seconds[i] += time.perf_counter() - started
        done += len(batch)
        if progress is not None:
            progress(done, len(images.samples))
    return Outputs(torch.stack([torch.cat(c, dim=-2) for c in chunks]), seconds)


@dataclass
class Calibration:
    """Temperatures fitted on calibration images, and what fits an ensemble's shared factor."""

    temperatures: list[float]  # each member's own fit
    logits: list[torch.Tensor]  # per member, log-probabilities at T = 1 per view [V, N, C]
    labels: torch.Tensor

    def for_ensemble(self, indices: list[int], weights: list[int]) -> tuple[list[float], float]:
        """The temperatures of members ``indices`` (counted ``weights`` times) in one mean:
        each member's own, times the factor that calibrates their mean (``fit_shared_scale``)."""
        temps = [self.temperatures[i] for i in indices]
        logits = [self.logits[i] for i in indices]
        scale = fit_shared_scale(logits, temps, weights, self.labels)
        return [t * scale for t in temps], scale


def calibrate_members(
    members: list[LoadedModel],
    images: ImageSet,
    tta: str = "none",
    batch_size: int = 32,
    workers: int = 0,
) -> Calibration:
    """Per member, the temperature that minimises the NLL on ``images`` of what ``tta`` will
    predict: the mean of its views' softmaxes, so a file exported with ``--tta flip`` is
    calibrated for the flips it averages.

    The logits are recovered as log-probabilities at T = 1 (the same up to a per-image
    constant); a probability that underflowed to 0 is floored at 1e-30, which only matters
    for logit gaps beyond ~70, where any sensible temperature leaves it near 0 anyway.
    """
    plain = [replace(m, temperature=1.0) for m in members]
    out = run_models(plain, images, tta, batch_size, workers, per_view=True)
    labels = torch.tensor(images.labels)
    logits = [p.clamp(min=1e-30).log() for p in out.probs]
    return Calibration([fit_temperature(lg, labels) for lg in logits], logits, labels)


def temperature_warnings(candidates: list[Candidate], temperatures: list[float]) -> list[str]:
    """A fit that stopped at the search limit says the calibration set could not pin T down."""
    low, high = TEMPERATURE_RANGE
    return [
        f"the temperature of {c.name} stopped at the search limit ({t:.3g}): the calibration "
        "images are too few, or the model makes no mistakes on them"
        for c, t in zip(candidates, temperatures, strict=True)
        if not low * 1.01 < t < high * 0.99
    ]
