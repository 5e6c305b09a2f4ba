"""Which photos are copies of each other: exact (same pixels) and near (close perceptual hash).

``exact_groups`` groups photos by the SHA-256 of their pixels; ``near_pairs`` finds every pair
whose perceptual hashes differ in at most ``threshold`` bits. Each photo has several hashes,
of the whole photo and of centred crops (``binsort.audit.hashing.CROP_VIEWS``); a pair's
distance is the smallest between one photo's whole-photo hash and any view of the other, so a
cropped copy is found too. The Hamming distances come from one matrix product per block of
rows (for 0/1 vectors a and b it is sum(a) + sum(b) - 2 a.b): 10,000 photos take seconds,
not a Python loop over 50 million pairs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BLOCK = 1024  # rows per product: a 1024 x N float32 block stays in the tens of MB


def exact_groups(pixels: Sequence[str | None]) -> list[list[int]]:
    """Indices of photos with the same pixel hash, groups of two or more, in order."""
    groups: dict[str, list[int]] = {}
    for i, digest in enumerate(pixels):
        if digest is not None:
            groups.setdefault(digest, []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def bits(hashes: Sequence[str]) -> np.ndarray:
    """The hex hashes (all of one length) as an N x bits matrix of 0/1 floats."""
    if not hashes:
        return np.zeros((0, 0), np.float32)
    packed = np.frombuffer(b"".join(bytes.fromhex(h) for h in hashes), np.uint8)
    return np.unpackbits(packed.reshape(len(hashes), -1), axis=1).astype(np.float32)


def distances(views: Sequence[Sequence[str]], start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of the N x N matrix of pair distances (the diagonal is left 0):
    whole photo against whole photo, and whole photo against each crop view, both ways."""
    full = bits([v[0] for v in views])
    ones = full.sum(1)
    rows = slice(start, stop)
    dist = ones[rows, None] + ones[None, :] - 2 * full[rows] @ full.T
    for k in range(1, len(views[0]) if views else 0):
        crop = bits([v[k] for v in views])
        crop_ones = crop.sum(1)
        # This block's crops against every whole photo, and this block whole against crops.
        a = crop_ones[rows, None] + ones[None, :] - 2 * crop[rows] @ full.T
        b = ones[rows, None] + crop_ones[None, :] - 2 * full[rows] @ crop.T
        dist = np.minimum(dist, np.minimum(a, b))
    return np.rint(dist).astype(np.int32)


def near_pairs(views: Sequence[Sequence[str]], threshold: int) -> list[tuple[int, int, int]]:
    """(i, j, distance) with i < j for every pair at distance <= ``threshold``; ``views`` holds
    each photo's hex hashes, the whole photo's first."""
    found = []
    for start in range(0, len(views), BLOCK):
        dist = distances(views, start, min(start + BLOCK, len(views)))
        rows, cols = np.nonzero(dist <= threshold)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            if start + r < c:
                found.append((start + r, c, int(dist[r, c])))
    return sorted(found)
