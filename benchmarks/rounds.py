"""Alternating rounds, shared by the benchmarks that compare two or more speeds in one run.

Every measurement runs once per round, in reverse order every other round, so that a drift in
the machine's speed (another process on the other core, allocator and cache warm-up) does not
favour whichever is measured first; the figures are the means over the rounds.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable


def alternating_rounds(measures: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """Mean of each measure (images/s) over ``rounds``; prints every round's figures."""
    speeds: dict[str, list[float]] = {label: [] for label in measures}
    for round_ in range(rounds):
        order = list(measures) if round_ % 2 == 0 else list(reversed(measures))
        for label in order:
            speeds[label].append(measures[label]())
        figures = ", ".join(f"{label} {speeds[label][-1]:.1f}" for label in measures)
        print(f"round {round_ + 1}: {figures} images/s ({order[0]} first)", flush=True)
    return {label: statistics.mean(values) for label, values in speeds.items()}
