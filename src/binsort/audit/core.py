"""``audit``: the duplicates, leaks, odd files and likely wrong labels of photo folders.

Typical use::

    result = audit(["data/trashnet"], model=None, split="docs/trashnet-split.json")
    for f in result.findings:        # worst first
        print(f.issue, f.path, f.other, f.label, f.suggested, f.score)

Three passes: the folders are listed (``scan_folders``, nothing decoded); every photo is
decoded once and hashed (``binsort.audit.hashing``, cached); the model answers for the photos
it never trained on and cleanlab judges their labels (``binsort.audit.labels``). Nothing is
written into the audited folders; nothing here prints.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from binsort.audit.hashing import default_cache, hash_files, view_hashes
from binsort.audit.labels import label_issues, predict_probabilities, trained_paths
from binsort.audit.pairs import exact_groups, near_pairs
from binsort.config import NEAR_THRESHOLD, PREDICT_BATCH, PREDICT_WORKERS
from binsort.data.folder import as_roots, scan_folders, unqualify
from binsort.errors import BinsortError
from binsort.leakage import key

SMALL_CLASS = 20  # photos: fewer leave a class too small to validate (a 10 % test part of 2)
ISSUES = ("unreadable", "odd", "duplicate", "near_duplicate", "label_conflict", "leak", "label")
ISSUES += ("small_class",)

Progress = Callable[[str, int, int], None]  # (pass, done, total)


@dataclass
class Finding:
    """One row of the audit: a file (or class folder) and what is wrong with it."""

    path: str  # the file (small_class: the class folder)
    issue: str  # one of ISSUES
    other: str | None = None  # the pair's other file (duplicates, conflicts, leaks)
    label: str | None = None  # the class folder it is in
    other_label: str | None = None  # the class folder of ``other``
    suggested: str | None = None  # label: the model's most likely class
    score: float = 1.0  # how sure, 0-1, higher is worse (see docs/audit.md)
    distance: int | None = None  # pairs: perceptual-hash distance (0 for the same pixels)
    part: str | None = None  # the split part of ``path`` (train, val, test), if any
    other_part: str | None = None
    note: str = ""  # the reason, in words

    def as_record(self) -> dict[str, Any]:
        return asdict(self)


COLUMNS = tuple(Finding.__dataclass_fields__)


@dataclass
class AuditResult:
    roots: list[Path]
    classes: list[str]
    counts: dict[str, int]  # photos per class folder (image files, readable or not)
    small_classes: list[str]
    findings: list[Finding]  # worst first: by issue, then score
    photos: int  # image files audited
    hashed: int  # photos decoded and hashed in this run (the others came from the cache)
    cached: int
    hash_seconds: float
    model: str | None = None  # the model's description; None when labels were not checked
    model_seconds: float = 0.0
    label_checked: int = 0  # photos whose label the model judged
    left_out_trained: int = 0  # photos left out of the label check: the model trained on them
    split_source: str | None = None  # where the split for leaks came from
    threshold: int = NEAR_THRESHOLD
    notes: list[str] = field(default_factory=list)  # what the user should know

    def by_issue(self) -> dict[str, int]:
        counts = dict.fromkeys(ISSUES, 0)
        for f in self.findings:
            counts[f.issue] += 1
        return counts


def audit(
    roots: str | Path | Sequence[str | Path],
    model: str | Path | None = None,
    split: str | Path | None = None,
    labels: bool = True,
    threshold: int = NEAR_THRESHOLD,
    cache: str | Path | None = "default",
    workers: int = PREDICT_WORKERS,
    batch: int = PREDICT_BATCH,
    progress: Progress | None = None,
) -> AuditResult:
    """Audit one ImageFolder or several (``root/<class>/<photo>``).

    ``model`` judges the labels (None: the bundled model; ``labels=False``: no label check).
    ``split`` (a run folder, split.json, checkpoint or export) marks pairs across its parts
    as leaks; without it, the model's own recorded split is used. ``cache`` is the hash
    cache's file ("default": ``default_cache()``; None: no cache).
    """
    if not 0 <= threshold <= 255:
        raise BinsortError(f"--threshold must be from 0 to 255 bits, got {threshold}")
    if workers < 1:
        raise BinsortError(f"--workers must be at least 1, got {workers}")
    roots = as_roots(roots)
    loaded = _load_model(model) if labels else None
    images = scan_folders(roots, check=False)  # listed only: the hashing pass decodes
    if loaded is not None:
        unknown = sorted(set(images.classes) - set(loaded.classes))
        if unknown:
            raise BinsortError(
                f"class folder(s) {', '.join(unknown)} are not among the model's classes "
                f"({', '.join(loaded.classes)}); audit a folder of its classes or pass --model"
            )
    cache_file = default_cache() if cache == "default" else (Path(cache) if cache else None)
    _refuse_inside(cache_file, roots, "--cache")
    notes: list[str] = []
    recorded, split_source = _split_for_leaks(split, model, loaded, notes)

    rel = [p for p, _ in images.samples]
    files = [images.file(p) for p in rel]
    shown = [str(f) for f in files]
    label_of = [images.classes[c] for _, c in images.samples]
    part_of = _parts(recorded, rel) if recorded else [None] * len(rel)

    start = time.perf_counter()
    hashes = hash_files(files, cache_file, workers, _stage(progress, "hashing"))
    hash_seconds = time.perf_counter() - start
    found: list[Finding] = []
    for path, why in images.skipped:  # not an image file name: what scan_folder lists
        where = path if len(roots) > 1 else str(roots[0] / path)
        found.append(Finding(where, "unreadable", label=_class_of(path), note=why))
    for i, h in enumerate(hashes.hashes):
        if h.unreadable or h.odd:
            issue = "unreadable" if h.unreadable else "odd"
            found.append(Finding(shown[i], issue, label=label_of[i], note=h.unreadable or h.odd))

    def pair(i: int, j: int, distance: int, same: bool) -> Finding:
        issue = "duplicate" if same else "near_duplicate"
        note = "the same pixels" if same else f"{distance} bits apart"
        if part_of[i] and part_of[j] and part_of[i] != part_of[j]:
            issue, note = "leak", f"{note}, in the split's {part_of[i]} and {part_of[j]} parts"
        elif label_of[i] != label_of[j]:
            issue, note = "label_conflict", f"{note}, in two classes: one label is wrong"
        score = 1.0 - distance / (4 * len(view_hashes(hashes.hashes[i].phash)[0]))
        return Finding(
            shown[j], issue, shown[i], label_of[j], label_of[i], None, round(score, 4),
            distance, part_of[j], part_of[i], note,
        )  # fmt: skip

    exact = set()
    for group in exact_groups([h.pixels for h in hashes.hashes]):
        for j in group[1:]:
            found.append(pair(group[0], j, 0, True))
            exact.update((a, j) for a in group)
            exact.update((j, a) for a in group)
    usable = [i for i, h in enumerate(hashes.hashes) if h.phash is not None]
    views = [view_hashes(hashes.hashes[i].phash) for i in usable]
    for a, b, distance in near_pairs(views, threshold):
        i, j = usable[a], usable[b]
        if (i, j) not in exact:
            found.append(pair(i, j, distance, False))

    counts = {c: 0 for c in images.classes}
    for c in label_of:
        counts[c] += 1
    small = [c for c, n in counts.items() if n < SMALL_CLASS]
    for c in small:
        folders = ", ".join(str(r / c) for r in roots if (r / c).is_dir())
        note = f"{counts[c]} photo(s): too few to validate (under {SMALL_CLASS})"
        found.append(Finding(folders, "small_class", label=c, score=1 - counts[c] / SMALL_CLASS,
                             note=note))  # fmt: skip

    result = AuditResult(
        roots=roots,
        classes=images.classes,
        counts=counts,
        small_classes=small,
        findings=found,
        photos=len(files),
        hashed=hashes.hashed,
        cached=hashes.cached,
        hash_seconds=hash_seconds,
        split_source=split_source,
        threshold=threshold,
        notes=notes,
    )
    if loaded is not None:
        ok = [i for i, h in enumerate(hashes.hashes) if not (h.unreadable or h.odd)]
        _check_labels(result, loaded, model, ok, rel, files, label_of, part_of, batch, workers,
                      progress)  # fmt: skip
    order = {issue: n for n, issue in enumerate(("label_conflict", "leak", "label", "duplicate"))}
    result.findings.sort(key=lambda f: (order.get(f.issue, 9), -f.score, f.path))
    return result


def _check_labels(result, loaded, model, ok, rel, files, label_of, part_of, batch, workers,
                  progress) -> None:  # fmt: skip
    """Adds the label findings for the photos ``ok`` the model never trained on."""
    from binsort.predict import describe_model

    result.model = describe_model(loaded, model is None)
    trained, every = trained_paths(loaded)
    if not every:
        result.notes.append(
            f"{result.model} records no training split (or not for every member): make sure it "
            "never trained on these photos, or their label check is worthless"
        )
    trained_keys = {key(p) for p in trained}
    held_out = [i for i in ok if key(rel[i]) not in trained_keys]
    result.left_out_trained = len(ok) - len(held_out)
    if not held_out:
        raise BinsortError(
            f"the model trained on all {len(ok)} readable photos here: in-sample probabilities "
            "hide label errors; audit photos it never saw, pass a model that never trained on "
            "them, or --no-labels"
        )
    if result.left_out_trained:
        result.notes.append(
            f"{result.left_out_trained} photo(s) left out of the label check: the model trained "
            f"on them (in-sample probabilities hide label errors); {len(held_out)} checked"
        )
    index = {c: n for n, c in enumerate(loaded.classes)}
    passed = predict_probabilities(
        [files[i] for i in held_out], loaded, batch, workers, _stage(progress, "classifying")
    )
    result.model_seconds = passed.seconds
    checked = [held_out[k] for k in passed.kept]
    result.label_checked = len(checked)
    if len(checked) < len(held_out):
        result.notes.append(
            f"{len(held_out) - len(checked)} photo(s) not checked: at the model's input size "
            "they could not be read or look like no photo (binsort.screening)"
        )
    if len(checked) < 2:
        result.notes.append(f"only {len(checked)} photo(s) for the label check: skipped")
        return
    verdict = label_issues([index[label_of[i]] for i in checked], passed.probs)
    for k, i in enumerate(checked):
        if not verdict.flagged[k]:
            continue
        suggested = loaded.classes[int(verdict.suggested[k])]
        sure = float(passed.probs[k].max())
        result.findings.append(
            Finding(
                str(files[i]),
                "label",
                label=label_of[i],
                suggested=suggested,
                score=round(sure, 4),
                part=part_of[i],
                note=f"p({label_of[i]}) = {float(verdict.quality[k]):.3f}, "
                f"p({suggested}) = {sure:.3f}",
            )  # fmt: skip
        )


def _load_model(model: str | Path | None) -> Any:
    from binsort.predict import load_model

    return load_model(model)


def _split_for_leaks(split, model, loaded, notes) -> tuple[dict | None, str | None]:
    """The split whose parts a pair may not straddle: ``split``, else the model's own."""
    from binsort.imagesets import read_split

    if split is not None:
        return read_split(split), str(split)
    if loaded is None:
        return None, None
    from binsort.audit.labels import recorded_splits

    splits = [s for s in recorded_splits(loaded) if s]
    if not splits:
        return None, None
    if any(s.get("train") != splits[0].get("train") for s in splits):
        notes.append("the model's members record different splits: no leak check (use --split)")
        return None, None
    return splits[0], "the model's recorded split"


def _parts(record: dict[str, Any], rel: list[str]) -> list[str | None]:
    """Each photo's part of the split (matched by class and file name, as the leakage guard
    matches them, so a copy of the folder elsewhere is still recognised)."""
    part = {}
    for name in ("train", "val", "test"):
        for p in record.get(name) or []:
            part.setdefault(key(p), name)
    return [part.get(key(p)) for p in rel]


def _class_of(path: str) -> str | None:
    parts = Path(unqualify(path)[1]).parts
    return parts[-2] if len(parts) >= 2 else None


def _refuse_inside(path: Path | None, roots: list[Path], option: str) -> None:
    """audit never writes into the folders it reads."""
    if path is None:
        return
    target = path.resolve()
    for root in roots:
        if target.is_relative_to(root.resolve()):
            raise BinsortError(f"{option} {path} lies inside {root}: audit never writes there")


def refuse_output(out: Path, roots: Sequence[str | Path]) -> None:
    _refuse_inside(out, as_roots(roots), "--out")


def _stage(progress: Progress | None, name: str):
    if progress is None:
        return None
    return lambda done, total: progress(name, done, total)
