"""Combine trained models into one ensemble file: the library behind ``binsort ensemble``.

``build_ensemble(["a.ckpt", "b.ckpt"], "ens.pt")`` packs the models as they are;
``select="greedy"`` with a validation set (``root`` or a run's ``split``) keeps only the
members that help, by greedy forward selection with replacement (Caruana et al. 2004):
start empty, repeatedly add the candidate that most improves the accuracy of the mean
probabilities (ties: lower NLL), and keep the best prefix. A member chosen twice counts twice
in the mean. ``calibrate`` fits each candidate's temperature on the same validation set first,
then one factor on the kept members' temperatures that calibrates their mean, and stores
the results in the file. ``select_greedy`` works on a probability tensor alone.

``soup=True`` averages the models' weights instead of their answers: one network, one
network's cost per photo (a uniform "model soup", Wortsman et al. 2022). It works for
fine-tunes of one architecture from the same starting weights, which stay close enough for
their average to be a good network too; ``--calibrate`` then fits the soup's temperature.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch

from binsort.candidates import Candidate, load_candidates
from binsort.config import MAX_INPUT, MIN_INPUT, input_size_ok
from binsort.errors import BinsortError, check_choice
from binsort.files import refuse_to_replace
from binsort.imagesets import image_set, read_split
from binsort.leakage import guard_overlap
from binsort.metrics import accuracy, nll
from binsort.models.checkpoint import save_ensemble
from binsort.models.factory import check_input_size
from binsort.results import EnsembleResult, Selection, Step
from binsort.runner import Progress, calibrate_members, run_models, temperature_warnings

SELECTIONS = ("none", "greedy")


def select_greedy(
    probs: torch.Tensor,
    labels: torch.Tensor,
    max_steps: int | None = None,
    patience: int = 3,
    names: list[str] | None = None,
) -> Selection:
    """Greedy forward selection with replacement over candidates' probabilities ``[M, N, C]``.

    Stops after ``max_steps`` (default: twice the candidates) or ``patience`` steps without a
    better ensemble than the best so far; "better" is higher accuracy, then lower NLL.
    """
    count = probs.shape[0]
    if count == 0:
        raise BinsortError("no candidates to select from")
    max_steps = 2 * count if max_steps is None else max_steps
    if max_steps < 1 or patience < 1:
        raise BinsortError("--max-steps and --patience must be at least 1")
    names = names or [str(i) for i in range(count)]
    probs = probs.double()
    total = torch.zeros_like(probs[0])
    steps: list[Step] = []
    best_key: tuple[float, float] | None = None
    kept = since_best = 0
    while len(steps) < max_steps and since_best < patience:
        n = len(steps) + 1
        keys = []
        for i in range(count):
            mean = (total + probs[i]) / n
            keys.append((accuracy(labels, mean.argmax(1)), -nll(mean, labels)))
        pick = max(range(count), key=lambda i: keys[i])  # first of equals: stable
        total += probs[pick]
        steps.append(Step(pick, names[pick], keys[pick][0], -keys[pick][1]))
        if best_key is None or keys[pick] > best_key:
            best_key, kept, since_best = keys[pick], n, 0
        else:
            since_best += 1
    return Selection(steps, kept)


def build_ensemble(
    checkpoints: list[str | Path],
    out: str | Path,
    force: bool = False,
    select: str = "none",
    root: str | Path | Sequence[str | Path] | None = None,
    split: str | Path | None = None,
    calibrate: bool = False,
    input_size: int | None = None,
    max_steps: int | None = None,
    patience: int = 3,
    tta: str = "none",
    allow_overlap: bool = False,
    batch_size: int = 32,
    workers: int = 0,
    progress: Progress | None = None,
    soup: bool = False,
) -> EnsembleResult:
    """Write the given models (or a greedy selection of them, or with ``soup`` the average of
    their weights) to one ensemble file."""
    out = Path(out)
    check_choice("--select", select, SELECTIONS)
    if soup and select != "none":
        raise BinsortError("--soup makes one network of every model: leave out --select")
    refuse_to_replace(out, force)
    if out.is_dir():
        raise BinsortError(f"{out} is a folder; -o wants a file name such as ensemble.pt")
    candidates = load_candidates(checkpoints)
    if input_size is not None:
        if not input_size_ok(input_size):
            raise BinsortError(f"--input-size must be {MIN_INPUT} to {MAX_INPUT} pixels")
        for c in candidates:
            check_input_size(c.member.model, c.member.arch, input_size, "--input-size")
        # Before calibration and selection, so that both see what inference will feed.
        candidates = [
            replace(c, member=replace(c.member, input_size=input_size)) for c in candidates
        ]
    if soup:
        candidates = [weight_soup(candidates)]
    needs_data = select == "greedy" or calibrate
    if needs_data and root is None and split is None:
        raise BinsortError(
            "--select greedy and --calibrate need validation images: --root DIR or --split RUN_DIR"
        )
    result = EnsembleResult(out, candidates, candidates)
    if needs_data:
        classes = candidates[0].member.classes
        recorded = read_split(split) if split is not None else None
        images = image_set(classes, root, recorded, "val", workers=max(2, workers))
        result.images, result.skipped = len(images.samples), images.skipped
        result.warnings = guard_overlap(candidates, images, allow_overlap, "validation")
        if calibrate:
            members = [c.member for c in candidates]
            calibration = calibrate_members(members, images, tta, batch_size, workers)
            temps = calibration.temperatures
            result.warnings += temperature_warnings(candidates, temps)
            candidates = _with_temperatures(candidates, temps, tta)
            result.candidates = result.members = candidates
        chosen = list(range(len(candidates)))
        weights = [c.weight for c in candidates]
        if select == "greedy":
            members = [c.member for c in candidates]
            probs = run_models(members, images, tta, batch_size, workers, progress).probs
            labels = torch.tensor(images.labels)
            names = [c.name for c in candidates]
            result.selection = select_greedy(probs, labels, max_steps, patience, names)
            picks = result.selection.chosen
            chosen = sorted(set(picks))
            weights = [picks.count(i) for i in chosen]
            result.members = [
                replace(candidates[i], weight=w) for i, w in zip(chosen, weights, strict=True)
            ]
        if calibrate:
            # Last, on the members actually kept: their mean is what predict will return.
            temps, result.scale = calibration.for_ensemble(chosen, weights)
            result.members = _with_temperatures(result.members, temps, tta)
    members = [c.member for c in result.members for _ in range(c.weight)]
    out.parent.mkdir(parents=True, exist_ok=True)
    save_ensemble(members, out)
    return result


def weight_soup(candidates: list[Candidate]) -> Candidate:
    """One network whose weights are the candidates' mean (a member repeated in an ensemble
    file counts as often as it appears), its temperature 1 until calibrated."""
    if len(candidates) < 2:
        raise BinsortError("--soup averages two or more models; give more")
    first = candidates[0].member
    states = [c.member.model.state_dict() for c in candidates]
    for c, state in zip(candidates[1:], states[1:], strict=True):
        if c.member.arch != first.arch:
            raise BinsortError(
                f"--soup: {c.name} is a {c.member.arch}, {candidates[0].name} a {first.arch}; "
                "a soup averages networks of one architecture"
            )
        if c.member.input_size != first.input_size:
            raise BinsortError(
                f"--soup: {c.name} takes {c.member.input_size} px, {candidates[0].name} "
                f"{first.input_size} px; choose one with --input-size"
            )
        if _photos(c.member.split) != _photos(first.split):
            # Each run validated on photos the other may have trained on: the soup learnt
            # from both, so no validation figure of it could be trusted.
            raise BinsortError(
                f"--soup: {c.name} and {candidates[0].name} were trained on different splits "
                "of the photos; train them with the same --split-seed"
            )
        mismatched = [
            k for k, v in states[0].items() if k not in state or state[k].shape != v.shape
        ]
        if mismatched or len(state) != len(states[0]):
            raise BinsortError(
                f"--soup: {c.name}'s weights do not match {candidates[0].name}'s "
                f"({(mismatched or ['their names'])[0]})"
            )
    weights = [c.weight for c in candidates]
    total = sum(weights)
    averaged = {}
    for key, value in states[0].items():
        if value.is_floating_point():
            mixed = sum(w * s[key].double() for w, s in zip(weights, states, strict=True))
            averaged[key] = (mixed / total).to(value.dtype)
        else:
            averaged[key] = value  # counters (num_batches_tracked): nothing to average
    model = copy.deepcopy(first.model)
    model.load_state_dict(averaged)
    # The file says what the network is the mean of (checkpoints describe themselves).
    hparams = {
        **first.hparams,
        "soup": [str(c.member.path) for c in candidates for _ in range(c.weight)],
    }
    member = replace(first, model=model.eval(), hparams=hparams, temperature=1.0, tta="none")
    name = f"soup of {len(candidates)}"
    return Candidate(member, name, 1, candidates[0].parameters)


def _photos(split: dict | None) -> tuple[list[str], list[str]]:
    """The training and validation photos a split records (its seed and root aside)."""
    split = split or {}
    return sorted(split.get("train", [])), sorted(split.get("val", []))


def _with_temperatures(
    candidates: list[Candidate], temps: list[float], tta: str
) -> list[Candidate]:
    """The candidates with temperatures fitted for the views of ``tta``, which they record."""
    return [
        replace(c, member=replace(c.member, temperature=t, tta=tta))
        for c, t in zip(candidates, temps, strict=True)
    ]
