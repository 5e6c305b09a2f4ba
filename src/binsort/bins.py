"""Class -> bin maps: which bin a photo of each class goes into, with a note for the user.

A model answers with a class (``glass``); people need a bin (``Glass``), and the rules differ
from one campus or town to the next. A ``BinMap`` holds those rules. ``load_bin_map("psu")``
gives a built-in map; ``load_bin_map("mytown.toml")`` (or ``.json``) reads a user's map, and
with ``classes=`` checks that every class of the model has a bin, so a gap is found before any
photo is sorted. The file format is documented in ``docs/predict.md``::

    name = "My town"
    [bins]
    paper = "Mixed Paper"                       # a bin without a note
    [bins.plastic]
    bin = "Plastic Bottles, Jugs & Jars"
    note = "Only bottle-shaped plastic; other plastic is landfill."
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from binsort.errors import BinsortError


@dataclass(frozen=True)
class Bin:
    name: str  # what is written on the bin, e.g. "Mixed Paper"
    note: str = ""  # what the user should know, e.g. "flatten boxes"


@dataclass(frozen=True)
class BinMap:
    source: str  # a built-in name or the file it was read from: shown to the user
    bins: dict[str, Bin]  # class name (as the model was trained) -> bin
    title: str = ""  # the map's own description, e.g. "Penn State University Park"

    def bin_for(self, cls: str) -> Bin:
        try:
            return self.bins[cls]
        except KeyError:
            raise BinsortError(f"bin map {self.source}: no bin for class {cls!r}") from None

    def check_classes(self, classes: Sequence[str]) -> None:
        """Raise unless every class of the model has a bin (extra entries are fine)."""
        missing = [c for c in classes if c not in self.bins]
        if missing:
            raise BinsortError(
                f"bin map {self.source} has no bin for the model's class(es) "
                f"{', '.join(map(repr, missing))} (it maps {', '.join(sorted(self.bins))}); "
                "add them to the map"
            )


_PSU_BOTTLES = "Plastic Bottles, Jugs & Jars"

# Penn State University Park's bins. Only the two notes the sorting guide insists on are
# specific; the others say what belongs in the bin in general terms.
BUILTIN_MAPS: dict[str, BinMap] = {
    "psu": BinMap(
        source="psu",
        title="Penn State University Park",
        bins={
            "paper": Bin("Mixed Paper", "Clean, dry paper."),
            "cardboard": Bin(
                "Mixed Paper", "Flatten corrugated boxes and put them beside the bin."
            ),
            "glass": Bin("Glass", "Empty bottles and jars."),
            "metal": Bin("Metal", "Empty cans."),
            "plastic": Bin(
                _PSU_BOTTLES, "Only bottle-shaped plastic; other plastic goes to Landfill."
            ),
            "trash": Bin("Landfill", "Anything the recycling bins do not take."),
        },
    ),
}


def load_bin_map(spec: str | Path, classes: Sequence[str] | None = None) -> BinMap:
    """A built-in map by name (``psu``) or a ``.toml``/``.json`` file, checked for ``classes``."""
    text = str(spec)
    if text in BUILTIN_MAPS:
        bin_map = BUILTIN_MAPS[text]
    elif Path(text).suffix.lower() in (".toml", ".json") or Path(text).exists():
        bin_map = read_bin_file(text)
    else:
        raise BinsortError(
            f"unknown bin map {text!r}: give a built-in name ({', '.join(BUILTIN_MAPS)}) "
            "or a .toml or .json file"
        )
    if classes is not None:
        bin_map.check_classes(classes)
    return bin_map


def read_bin_file(path: str | Path) -> BinMap:
    """Read and validate a bin map file; every problem is a ``BinsortError`` naming it."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise BinsortError(f"{path}: a bin map file must end in .toml or .json")
    if not path.is_file():
        raise BinsortError(f"{path}: no such bin map file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise BinsortError(f"{path}: not a text file (expected UTF-8 {suffix[1:]})") from None
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BinsortError(f"{path}: not valid JSON: {exc}") from None
    else:
        try:
            import tomllib  # the standard library's TOML reader, Python 3.11+
        except ImportError:
            raise BinsortError(f"{path}: reading TOML needs Python 3.11+; use JSON") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise BinsortError(f"{path}: not valid TOML: {exc}") from None
    return parse_bin_map(data, str(path))


def parse_bin_map(data: Any, source: str) -> BinMap:
    """A ``BinMap`` from the parsed file: ``{"name": ..., "bins": {class: bin or {bin, note}}}``."""
    if not isinstance(data, dict):
        raise BinsortError(f"{source}: expected a table with a 'bins' table at the top")
    unknown = sorted(set(data) - {"name", "bins"})
    if unknown:
        # A typo such as 'bin' for 'bins' would otherwise be silently ignored.
        raise BinsortError(f"{source}: unknown key(s) {', '.join(unknown)} (expected name, bins)")
    title = data.get("name", "")
    if not isinstance(title, str):
        raise BinsortError(f"{source}: 'name' must be a string")
    entries = data.get("bins")
    if not isinstance(entries, dict) or not entries:
        raise BinsortError(f"{source}: expected a non-empty 'bins' table (class = bin)")
    bins = {str(c): _parse_entry(value, f"{source}: bins.{c}") for c, value in entries.items()}
    return BinMap(source=source, bins=bins, title=title)


def _parse_entry(entry: Any, where: str) -> Bin:
    if isinstance(entry, str):
        entry = {"bin": entry}
    if not isinstance(entry, dict):
        raise BinsortError(f"{where}: expected a bin name or a table with 'bin' and 'note'")
    unknown = sorted(set(entry) - {"bin", "note"})
    if unknown:
        raise BinsortError(f"{where}: unknown key(s) {', '.join(unknown)} (expected bin, note)")
    bin_name, note = entry.get("bin"), entry.get("note", "")
    if not isinstance(bin_name, str) or not bin_name.strip():
        raise BinsortError(f"{where}: 'bin' must be a non-empty string")
    if not isinstance(note, str):
        raise BinsortError(f"{where}: 'note' must be a string")
    return Bin(bin_name.strip(), note.strip())
