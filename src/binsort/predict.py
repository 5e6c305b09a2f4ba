"""Sorting photos into bins: the library behind ``binsort predict``.

Typical use::

    model = load_model("runs/x/best.ckpt")   # a checkpoint, an ensemble file or an .onnx file
    bin_map = load_bin_map("psu", classes=model.classes)
    for row in predict_photos(find_photos(["photos/"]), model, bin_map):
        print(row.path, row.label, row.bin.name if row.bin else row.error)

An ``.onnx`` file (``binsort export``), the bundled default model among them, runs on
onnxruntime: neither torch nor Lightning is imported, so a one-photo prediction starts fast.
Checkpoints and ensemble files run on PyTorch (never Lightning).

``predict_photos`` streams: it decodes one batch ahead in a thread pool while the model runs on
the current one, and yields a ``Prediction`` per photo, so a folder of 10,000 photos never sits
in memory. A photo that cannot be read yields a row with ``error`` set instead of stopping.
Nothing here prints.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from binsort.bins import Bin, BinMap
from binsort.config import (
    PREDICT_BATCH,
    PREDICT_MIN_CONFIDENCE,
    PREDICT_TOP_K,
    PREDICT_WORKERS,
    TTA_MODES,
)
from binsort.data.folder import files_under
from binsort.data.images import (
    MAX_MEGAPIXELS,
    check_max_megapixels,
    describe,
    is_image_name,
    open_rgb,
    resize_shorter,
)
from binsort.errors import BinsortError, check_choice
from binsort.onnx_model import OnnxModel, describe_members, is_onnx
from binsort.ood import REASON as NOT_WASTE
from binsort.screening import screen

DEFAULT_MODEL_FILE = "default-model.onnx"  # the bundled model, in binsort/assets
# Up to this many photos, an ONNX model starts without graph optimisation: for the bundled
# model before the current one (seven shufflenets) that saved about 0.6 s of start-up and cost
# about 20 ms a photo.
FEW_PHOTOS = 8


@dataclass
class Prediction:
    """One photo's answer, or its ``error`` (then every other field is empty)."""

    path: str
    label: str | None = None  # the most likely class
    probability: float | None = None  # of that class
    top: list[tuple[str, float]] = field(default_factory=list)  # top-k (class, probability)
    bin: Bin | None = None  # the most likely bin (its classes' probabilities summed)
    bin_probability: float | None = None  # summed over every class that goes into that bin
    uncertain: bool = False  # bin_probability < min_confidence
    other_bin: Bin | None = None  # the runner-up bin, if the map has more than one
    other_bin_probability: float | None = None
    error: str | None = None  # why the photo could not be classified
    # Why it is not a photo of an item the model can sort: a blank or noise frame
    # (binsort.screening), or a photo far from the model's classes (its ood_score, binsort.ood).
    not_recognised: str | None = None


def default_model_path() -> Path | None:
    """The bundled default model, or None in a build that ships without one."""
    path = Path(__file__).parent / "assets" / DEFAULT_MODEL_FILE
    return path if path.is_file() else None


class TorchModel:
    """Checkpoint or ensemble-file members run by PyTorch: the same interface as ``OnnxModel``
    (``classes``, ``input_size``, ``tta_modes``, ``tta``, ``describe()``,
    ``probabilities(images, tta)``)."""

    tta_modes = TTA_MODES

    def __init__(self, path: str | Path) -> None:
        from binsort.models.checkpoint import calibrated_tta, load_members

        self.path = Path(path)
        self.members = load_members(path)
        # An ensemble calibrated with --tta answers with those views; a checkpoint with none.
        self.tta = calibrated_tta(self.members) or "none"
        self.classes = self.members[0].classes
        self.input_sizes = sorted({m.input_size for m in self.members})
        self.input_size = self.input_sizes[-1]

    def describe(self) -> str:
        return describe_members(self.path.name, [m.arch for m in self.members])

    def probabilities(self, images: Sequence[Image.Image], tta: str = "none"):
        from binsort.inference import probabilities
        from binsort.metrics import weighted_mean

        # load_members repeats a member its weight's number of times: each counts once here.
        probs = probabilities(self.members, images, tta=tta)
        return weighted_mean(probs, [1] * len(self.members)).numpy()


def load_model(model: str | Path | None, photos: int | None = None) -> Any:
    """A ``TorchModel`` or ``OnnxModel`` for ``model`` (a checkpoint, an ensemble file or an
    .onnx file), or the bundled default model when ``model`` is None. ``photos``, when known,
    is how many photos it will classify: an ONNX model skips graph optimisation for a few."""
    if model is None:
        model = default_model_path()
        if model is None:
            raise BinsortError("no --model given, and this build of binsort has no default model")
    if is_onnx(model):
        return OnnxModel(model, optimize=photos is None or photos > FEW_PHOTOS)
    return TorchModel(model)


def chosen_tta(model: Any, tta: str | None) -> str:
    """The test-time augmentation ``model`` answers with: ``tta``, or when None the model's own
    (what an exported file records, none for a checkpoint)."""
    return model.tta if tta is None else tta


def describe_model(model: Any, default: bool = False, tta: str | None = None) -> str:
    """Which model answers, for the user: its file name and architecture(s), and the
    test-time augmentation it answers with (``chosen_tta``)."""
    text = model.describe()
    tta = chosen_tta(model, tta)
    if tta != "none":
        text += f" with --tta {tta}"
    return f"the default model, {text}" if default else text


def find_photos(
    paths: Iterable[str | Path], skipped: list[tuple[str, str]] | None = None
) -> Iterator[Path]:
    """Photos to classify, lazily: folders recursively (image extensions only, hidden skipped).

    A path named explicitly that is not a folder is always yielded, even a hidden, non-image or
    missing one: the user asked for it, so its row should say what is wrong with it. Files
    left out inside folders for their name are appended to ``skipped`` as (path, reason);
    hidden files and folders (.DS_Store, .git) are left out silently, as every command does.
    """
    for path in map(Path, paths):
        if not path.is_dir():
            yield path
            continue
        for found in files_under(path):
            if is_image_name(found.name):
                yield found
            elif skipped is not None:
                skipped.append((str(found), "not an image file name"))


def predict_photos(
    photos: Iterable[str | Path],
    model: Any,
    bin_map: BinMap,
    *,
    batch: int = PREDICT_BATCH,
    workers: int = PREDICT_WORKERS,
    top_k: int = PREDICT_TOP_K,
    min_confidence: float = PREDICT_MIN_CONFIDENCE,
    tta: str | None = None,
    max_megapixels: float = MAX_MEGAPIXELS,
) -> Iterator[Prediction]:
    """One ``Prediction`` per photo, in order, batch by batch, from ``load_model``'s model.

    ``tta`` None is the model's own test-time augmentation (``chosen_tta``).
    ``max_megapixels`` is each decode's memory budget (``binsort.data.images``).
    Options are checked here, before the first photo is read, so a bad one fails at once.
    ``top_k`` larger than the number of classes gives all of them. Whatever one photo does
    (an unreadable file, a refused size, any failure while decoding or screening it) is that
    photo's ``error``: every other photo is still classified.
    """
    if batch < 1:
        raise BinsortError(f"--batch must be at least 1, got {batch}")
    if workers < 0:
        raise BinsortError(f"--workers must be 0 or more, got {workers}")
    if top_k < 1:
        raise BinsortError(f"--top-k must be at least 1, got {top_k}")
    if not 0.0 <= min_confidence <= 1.0:
        raise BinsortError(f"--min-confidence must be between 0 and 1, got {min_confidence}")
    check_max_megapixels(max_megapixels)
    tta = chosen_tta(model, tta)
    check_choice("--tta", tta, TTA_MODES)
    if tta not in model.tta_modes:
        raise BinsortError(
            f"--tta {tta} needs a checkpoint; an ONNX model has {' or '.join(model.tta_modes)}"
        )
    bin_map.check_classes(model.classes)
    bins = [bin_map.bin_for(c) for c in model.classes]
    load = _Loader(model.input_size, len(model.input_sizes) == 1, max_megapixels)
    return _predict(photos, model, bins, batch, workers, top_k, min_confidence, tta, load)


def _predict(photos, model, bins, batch, workers, top_k, min_confidence, tta, load):
    classes = model.classes
    for items in _decoded_batches(photos, batch, workers, load):
        images = [loaded.image for _, loaded in items if loaded.image is not None]
        probs, far = _answers(model, images, tta) if images else ([], [])
        rows = iter(zip(probs, far, strict=True))
        for path, loaded in items:
            if loaded.error is not None:
                yield Prediction(str(path), error=loaded.error)
            elif loaded.not_recognised is not None:
                yield Prediction(str(path), not_recognised=loaded.not_recognised)
            else:
                row, not_waste = next(rows)
                if not_waste:
                    # Like a screened frame: no class and no bin, since any would be a guess.
                    yield Prediction(str(path), not_recognised=NOT_WASTE)
                else:
                    yield _decide(str(path), row, classes, bins, top_k, min_confidence)


def _answers(model: Any, images: list[Image.Image], tta: str) -> tuple[list, list[bool]]:
    """Each image's probabilities, and whether the model's own ood score (``binsort.ood``)
    is above its threshold; always False for a model without one."""
    threshold = getattr(model, "ood_threshold", None)
    if threshold is None:
        return model.probabilities(images, tta=tta).tolist(), [False] * len(images)
    probs, scores = model.answers(images, tta=tta)
    return probs.tolist(), [bool(s > threshold) for s in scores]


def _decide(
    path: str,
    row: list[float],
    classes: list[str],
    bins: list[Bin],
    top_k: int,
    min_confidence: float,
) -> Prediction:
    order = sorted(range(len(classes)), key=lambda i: -row[i])
    best = order[0]
    # The question is which bin, so classes that share a bin (paper, cardboard) add up, and
    # the bin is the likeliest bin: 0.17 trash against 0.17 paper + 0.16 cardboard is Mixed
    # Paper (0.33), not Landfill. A bin's note is that of its likeliest class (cardboard's
    # note differs from paper's).
    by_bin: dict[str, float] = {}
    for i, p in enumerate(row):
        by_bin[bins[i].name] = by_bin.get(bins[i].name, 0.0) + p
    ranked = sorted(by_bin, key=lambda name: -by_bin[name])
    first = {name: next(bins[i] for i in order if bins[i].name == name) for name in ranked[:2]}
    other = ranked[1] if len(ranked) > 1 else None
    return Prediction(
        path=path,
        label=classes[best],
        probability=row[best],
        top=[(classes[i], row[i]) for i in order[:top_k]],
        bin=first[ranked[0]],
        bin_probability=by_bin[ranked[0]],
        uncertain=by_bin[ranked[0]] < min_confidence,
        other_bin=first[other] if other else None,
        other_bin_probability=by_bin[other] if other else None,
    )


@dataclass
class _Loaded:
    """One photo ready for the model (``image``), or why it is not."""

    image: Image.Image | None = None
    error: str | None = None
    not_recognised: str | None = None


@dataclass
class _Loader:
    """Decodes and screens one photo; the one boundary between a photo and the run."""

    size: int  # the (largest) member's input size
    shrink: bool  # one input size: hand the model the photo already at that size
    max_megapixels: float

    def __call__(self, path: Path) -> _Loaded:
        try:
            im = open_rgb(path, min_side=self.size, max_megapixels=self.max_megapixels)
            small = resize_shorter(im, self.size)
            # Non-photos (binsort.screening) are not shown to the model at all; screened at
            # the size the (largest) member sees them.
            why = screen(small)
            if why is not None:
                return _Loaded(not_recognised=why)
            # Shrinking here, in the thread, keeps two batches of 12-megapixel PNGs out of
            # memory. It is the eval transform's own first step, so a model of one input size
            # sees the same pixels as without it; members of several sizes each resize the
            # decoded photo once, as evaluate does.
            return _Loaded(image=small if self.shrink else im)
        except BinsortError as exc:
            return _Loaded(error=str(exc).removeprefix(f"{path}: "))
        except Exception as exc:  # noqa: BLE001 - whatever one photo does, the run goes on
            return _Loaded(error=f"could not be read ({describe(exc)})")


def _decoded_batches(
    photos: Iterable[str | Path], batch: int, workers: int, load: _Loader
) -> Iterator[list[tuple[Path, _Loaded]]]:
    """Batches of (path, loaded photo); the next batch decodes while this one is used."""
    chunks = _chunks(map(Path, photos), batch)
    if workers == 0:
        for chunk in chunks:
            yield [(p, load(p)) for p in chunk]
        return
    pool = ThreadPoolExecutor(workers, thread_name_prefix="binsort-decode")
    try:
        pending = None
        for chunk in chunks:
            submitted = [(p, pool.submit(load, p)) for p in chunk]
            if pending is not None:
                yield [(p, future.result()) for p, future in pending]
            pending = submitted
        if pending is not None:
            yield [(p, future.result()) for p, future in pending]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _chunks(items: Iterable[Path], size: int) -> Iterator[list[Path]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def as_record(row: Prediction) -> dict[str, Any]:
    """A JSON-ready dict: path, class, probability, bin, ..., top, error (see docs/predict.md)."""
    return {
        "path": row.path,
        "class": row.label,
        "probability": _round(row.probability),
        "bin": row.bin.name if row.bin else None,
        "bin_note": row.bin.note if row.bin else None,
        "bin_probability": _round(row.bin_probability),
        "uncertain": row.uncertain,
        "other_bin": row.other_bin.name if row.other_bin else None,
        "other_bin_note": row.other_bin.note if row.other_bin else None,
        "other_bin_probability": _round(row.other_bin_probability),
        "top": [{"class": c, "probability": _round(p)} for c, p in row.top],
        "not_recognised": row.not_recognised,
        "error": row.error,
    }


def answer_source(model: str | Path | None, loaded: Any, bin_map: BinMap) -> dict[str, Any]:
    """Which model answered and with which bins, for every CSV/JSON record: its description,
    its file (a run folder's best checkpoint; the bundled file when ``model`` is None), the
    file's SHA-256 and the bin map."""
    import hashlib

    path = Path(model) if model is not None else default_model_path()
    if path is not None and path.is_dir():
        from binsort.models.checkpoint import run_checkpoint

        path = run_checkpoint(path)
    digest = None
    if path is not None and path.is_file():
        sha = hashlib.sha256()  # hashlib.file_digest is Python 3.11+; binsort runs on 3.10
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                sha.update(chunk)
        digest = sha.hexdigest()
    return {
        "model": loaded.describe(),
        "model_file": str(path) if path is not None else None,
        "model_sha256": digest,
        "bin_map": bin_map.source,
    }


SOURCE_KEYS = ("model", "model_file", "model_sha256", "bin_map")


def csv_header(top_k: int) -> list[str]:
    """The CSV columns: the record's scalars, top1_class, top1_probability, ..., then error."""
    tops = [f"top{i}_{key}" for i in range(1, top_k + 1) for key in ("class", "probability")]
    return [*_SCALAR_KEYS, *tops, "error", *SOURCE_KEYS]


def csv_row(row: Prediction, top_k: int, source: dict[str, Any]) -> list[Any]:
    record = as_record(row)
    cells = [_cell(record[k]) for k in _SCALAR_KEYS]
    for i in range(top_k):
        cls, p = row.top[i] if i < len(row.top) else (None, None)
        cells += [_cell(cls), _cell(_round(p))]
    return [*cells, _cell(row.error), *(_cell(source.get(k)) for k in SOURCE_KEYS)]


def _cell(value: Any) -> Any:
    if isinstance(value, bool):
        return str(value).lower()  # as in the JSON output
    return "" if value is None else value


def _round(p: float | None) -> float | None:
    return None if p is None else round(p, 6)


# The CSV's leading columns: the JSON record's, in its order (top and error come after).
_SCALAR_KEYS = [k for k in as_record(Prediction("")) if k not in ("top", "error")]
