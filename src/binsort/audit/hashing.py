"""The hashing pass of ``binsort audit``: each photo decoded once, checked, and fingerprinted.

For every file it records the decoded size, why it is odd or unreadable (if it is), the
SHA-256 of its decoded RGB pixels (exact duplicates: the same pixels whatever the file's name
or format, a PNG copy of a JPEG included) and a perceptual hash (near duplicates: resized,
re-encoded, slightly cropped or brightened copies; ``imagehash.phash``, the DCT hash, which
survives all of those).

Decoding is most of the cost, so files are hashed in threads (Pillow and hashlib release the
GIL) and the results are kept in a cache keyed by the file's path, size and modification time:
a second audit of a grown folder hashes only the new photos. The cache is an SQLite file
outside the audited folders (audit never writes there), in WAL mode, one connection, written
by this thread only, one transaction per batch.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from binsort.data.images import describe, open_rgb, resize_shorter
from binsort.errors import BinsortError
from binsort.screening import screen

# 16 x 16 = 256 bits: TrashNet's photos (an item on a white board) share their coarsest
# structure, so the usual 64-bit hash puts distinct photos 4 bits apart (docs/audit.md).
PHASH_SIZE = 16
# phash moves a lot under cropping (5 % off each side: 73 bits of 256 on TrashNet), so each
# photo is also hashed with these fractions cut off each side; a centred crop of another
# photo then lies within 1 % of one of these views.
CROP_VIEWS = (0.0, 0.02, 0.04, 0.06, 0.08)
MIN_SIDE = 32  # a shorter side below this is too small to sort (and to validate a label)
ODD_ASPECT = 3.0  # longer side over shorter: camera photos are 4:3 to 16:9, panoramas rarer
SCREEN_SIZE = 224  # screening (binsort.screening) judges a photo at about a model's input size
# Changing what is hashed or how (the settings above) makes every cached entry stale.
VERSION = f"1/phash{PHASH_SIZE}/{CROP_VIEWS}/side{MIN_SIDE}/aspect{ODD_ASPECT}/screen{SCREEN_SIZE}"


@dataclass
class FileHash:
    """What the hashing pass learnt about one file."""

    width: int = 0
    height: int = 0
    pixels: str | None = None  # SHA-256 of the decoded RGB pixels and the size
    phash: str | None = None  # perceptual hashes of the CROP_VIEWS, hex, concatenated
    unreadable: str | None = None  # why the file could not be decoded
    odd: str | None = None  # why a decoded file is not a usable photo (tiny, shape, blank...)


def hash_file(path: Path) -> FileHash:
    """Decode ``path`` once and fingerprint it; never raises for what the file holds."""
    import imagehash

    try:
        im = open_rgb(path)  # full size: the exact hash is of every pixel
    except BinsortError as exc:
        return FileHash(unreadable=str(exc).removeprefix(f"{path}: "))
    except Exception as exc:  # noqa: BLE001 - one bad file is a finding, not a crash
        return FileHash(unreadable=f"could not be read ({describe(exc)})")
    w, h = im.size
    digest = hashlib.sha256(f"{w}x{h}:".encode())
    digest.update(im.tobytes())
    views = "".join(str(imagehash.phash(_crop(im, f), hash_size=PHASH_SIZE)) for f in CROP_VIEWS)
    found = FileHash(w, h, digest.hexdigest(), views)
    if min(w, h) < MIN_SIDE:
        found.odd = f"tiny ({w} x {h} pixels; shorter side under {MIN_SIDE})"
    elif max(w, h) > ODD_ASPECT * min(w, h):
        found.odd = f"odd shape ({w} x {h} pixels; sides beyond {ODD_ASPECT:g}:1)"
    else:
        found.odd = screen(resize_shorter(im, SCREEN_SIZE))
    return found


def _crop(im, fraction: float):
    if not fraction:
        return im
    w, h = im.size
    dx, dy = round(w * fraction), round(h * fraction)
    return im.crop((dx, dy, w - dx, h - dy))


def view_hashes(phash: str) -> list[str]:
    """The hex hash of each of ``CROP_VIEWS`` from a ``FileHash.phash``; the first is the
    whole photo."""
    step = len(phash) // len(CROP_VIEWS)
    return [phash[i : i + step] for i in range(0, len(phash), step)]


def default_cache() -> Path:
    """``$XDG_CACHE_HOME/binsort/audit.sqlite3`` (``~/.cache`` when unset), as the XDG base
    directory specification places a user's caches."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "binsort" / "audit.sqlite3"


class HashCache:
    """Cached ``FileHash`` results keyed by (resolved path, size, mtime); ``None`` path: none."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.db: sqlite3.Connection | None = None
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER, "
                "mtime_ns INTEGER, version TEXT, width INTEGER, height INTEGER, pixels TEXT, "
                "phash TEXT, unreadable TEXT, odd TEXT)"
            )
        except sqlite3.DatabaseError as exc:
            raise BinsortError(
                f"{path}: not a usable audit cache ({exc}); delete it or pass another --cache"
            ) from None

    def get(self, key: tuple[str, int, int]) -> FileHash | None:
        if self.db is None:
            return None
        row = self.db.execute(
            "SELECT width, height, pixels, phash, unreadable, odd FROM files "
            "WHERE path = ? AND size = ? AND mtime_ns = ? AND version = ?",
            (*key, VERSION),
        ).fetchone()
        return FileHash(*row) if row else None

    def put(self, items: list[tuple[tuple[str, int, int], FileHash]]) -> None:
        if self.db is None or not items:
            return
        with self.db:  # one transaction per batch
            self.db.executemany(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (*key, VERSION, h.width, h.height, h.pixels, h.phash, h.unreadable, h.odd)
                    for key, h in items
                ],
            )

    def close(self) -> None:
        if self.db is not None:
            self.db.close()


def file_key(path: Path) -> tuple[str, int, int] | None:
    """(resolved path, size, mtime in ns), or None for a file that cannot be stat'ed."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


@dataclass
class HashPass:
    hashes: list[FileHash]  # one per path, in order
    hashed: int  # decoded in this run
    cached: int  # taken from the cache


def hash_files(
    paths: Sequence[Path],
    cache: Path | None,
    workers: int = 4,
    progress: Callable[[int, int], None] | None = None,
) -> HashPass:
    """``hash_file`` for each path, from ``cache`` where the file is unchanged."""
    store = HashCache(cache)
    try:
        keys = [file_key(p) for p in paths]
        found: list[FileHash | None] = [store.get(k) if k else None for k in keys]
        todo = [i for i, h in enumerate(found) if h is None]
        cached = len(paths) - len(todo)
        done = cached
        batch = 64  # written to the cache as it goes: an interrupted audit keeps its work
        with ThreadPoolExecutor(max(1, workers), thread_name_prefix="binsort-hash") as pool:
            for start in range(0, len(todo), batch):
                chunk = todo[start : start + batch]
                results = list(pool.map(hash_file, (paths[i] for i in chunk)))
                for i, h in zip(chunk, results, strict=True):
                    found[i] = h
                store.put([(keys[i], h) for i, h in zip(chunk, results, strict=True) if keys[i]])
                done += len(chunk)
                if progress is not None:
                    progress(done, len(paths))
    finally:
        store.close()
    return HashPass([h for h in found if h is not None], len(todo), cached)
