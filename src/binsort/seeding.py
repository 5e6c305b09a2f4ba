"""One way to derive a seed for a random step from the run's seed and where the step is.

``mix(seed, epoch)`` (and ``mix(seed, epoch, rank)``) hashes its parts with NumPy's
``SeedSequence``, so nearby inputs give unrelated streams: members trained with seeds 41, 42
and 43 do not see the same shuffles shifted by an epoch, as they would with ``seed + epoch``.
"""

from __future__ import annotations

import numpy as np


def mix(*parts: int) -> int:
    """A 63-bit seed from non-negative integers, for ``torch.Generator.manual_seed``."""
    state = np.random.SeedSequence([int(p) % 2**63 for p in parts]).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(1))
