"""Fitting the "not waste" score (``binsort.ood``) to an exported model, from its own photos.

The score needs two things the graph does not hold: each member's class means, taken over
the model's training photos, and a threshold, the score that flags at most ``rate`` of its
validation photos. Both come from the split the file records (``binsort.export`` stores the
training split in its metadata) and the image folder it was trained on:

    fit = fit_ood(Path("model.onnx"), Path("data/trashnet"))
    write_ood(Path("model.onnx"), Path("model-ood.onnx"), fit)

``binsort export --not-waste ROOT`` does both before it keeps the file;
``benchmarks/not_waste.py`` uses ``Features`` and ``fit_from_features`` to compare this
score with others on the same features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from binsort.config import NOT_WASTE_RATE
from binsort.data.images import open_rgb, resize_shorter
from binsort.errors import BinsortError
from binsort.onnx_model import OnnxModel, session_options
from binsort.ood import (
    add_ood_score,
    class_means,
    cosine_score,
    member_tensors,
    threshold_for,
    with_member_outputs,
)

DECODE_CHUNK = 64  # photos decoded at a time: memory stays small on 2,000 photos


@dataclass(frozen=True, eq=False)  # eq: numpy arrays have no one truth value
class OodFit:
    """What ``add_ood_score`` writes into a file, and how it did on the validation photos."""

    means: tuple[np.ndarray, ...]  # per member, [C, D]: unit directions of the class means
    threshold: float  # a photo scoring above it is not recognised
    rate: float  # the share of validation photos the threshold may flag
    flagged: int  # validation photos above the threshold (at most rate * validation)
    validation: int  # validation photos scored

    @property
    def details(self) -> dict:
        """The file's metadata beyond the score's name and threshold."""
        return {"rate": self.rate, "validation_flagged": [self.flagged, self.validation]}


class Features:
    """Each member's features and logits, and the ensemble's probabilities, for images."""

    def __init__(self, path: Path) -> None:
        import onnx
        import onnxruntime as ort

        self.model = OnnxModel(path)
        proto = onnx.load(str(path))
        self.members = len(member_tensors(proto.graph))
        self.size = self.model.input_size
        self.session = ort.InferenceSession(
            with_member_outputs(proto).SerializeToString(),
            session_options(),
            ["CPUExecutionProvider"],
        )
        self.outputs = ["probabilities"] + [
            f"{kind}_{i}" for kind in ("features", "logits") for i in range(self.members)
        ]

    def __call__(self, images: Sequence[Image.Image], batch: int = 16) -> dict[str, np.ndarray]:
        """``probabilities``, ``features_i`` and ``logits_i`` (member i), one row an image."""
        parts: dict[str, list] = {k: [] for k in self.outputs}
        for start in range(0, len(images), batch):
            feeds = self.model.feeds(images[start : start + batch])
            for key, value in zip(self.outputs, self.session.run(self.outputs, feeds), strict=True):
                parts[key].append(value)
        return {k: np.concatenate(v) for k, v in parts.items()}

    def of_files(self, root: Path, paths: Sequence[str], batch: int = 16) -> dict[str, np.ndarray]:
        """The same for the photos ``root / path``, decoded as ``binsort predict`` decodes."""
        one_size = len(self.model.input_sizes) == 1
        out: dict[str, list] = {}
        for start in range(0, len(paths), DECODE_CHUNK):
            ims = [
                open_rgb(root / p, min_side=self.size) for p in paths[start : start + DECODE_CHUNK]
            ]
            # As predict: at the input size at once for one member size; with several, each
            # member resizes the decoded photo itself (to_batch).
            ims = [resize_shorter(im, self.size) for im in ims] if one_size else ims
            for key, value in self(ims, batch).items():
                out.setdefault(key, []).append(value)
        return {k: np.concatenate(v) for k, v in out.items()}

    def member_features(self, data: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [data[f"features_{i}"] for i in range(self.members)]


def fit_from_features(
    train: Sequence[np.ndarray],
    labels: np.ndarray,
    val: Sequence[np.ndarray],
    num_classes: int,
    rate: float = NOT_WASTE_RATE,
) -> OodFit:
    """The class means of each member's training features ``train`` (classes ``labels``) and
    the threshold that flags at most ``rate`` of the validation features ``val``."""
    means = class_means(train, labels, num_classes)
    scores = cosine_score(val, means)
    threshold = threshold_for(scores, rate)
    return OodFit(tuple(means), threshold, rate, int((scores > threshold).sum()), len(scores))


def split_photos(
    split: dict | None, classes: Sequence[str], root: Path, name: str
) -> tuple[list[str], np.ndarray, list[str]]:
    """The training photos, their class indices and the validation photos of ``split`` (the
    file ``name``'s record), each checked to be under ``root``: refused before any work."""
    if not split or not split.get("val"):
        raise BinsortError(
            f"{name} has no recorded validation photos: the threshold needs them; export a "
            "model trained with --split"
        )
    if len(split.get("roots") or []) > 1:
        raise BinsortError(
            f"{name} was trained on {len(split['roots'])} image folders; --not-waste takes "
            "the one folder a model was trained on"
        )
    if not root.is_dir():
        raise BinsortError(f"{root}: no such folder")
    train, val = list(split["train"]), list(split["val"])
    missing = [p for p in train + val if not (root / p).is_file()]
    if missing:
        raise BinsortError(
            f"{missing[0]}: a photo of {name}'s split is not under {root} ({len(missing)} "
            "missing); pass the image folder the model was trained on"
        )
    index = {c: i for i, c in enumerate(classes)}
    unknown = [p for p in train if p.split("/")[0] not in index]
    if unknown:
        raise BinsortError(f"{unknown[0]}: a training photo of no class of {name}")
    return train, np.array([index[p.split("/")[0]] for p in train]), val


def check_rate(rate: float) -> None:
    if not 0 <= rate < 1:
        raise BinsortError(f"--not-waste-rate must be at least 0 and below 1, not {rate}")


def fit_ood(path: Path, root: Path, rate: float = NOT_WASTE_RATE, batch: int = 16) -> OodFit:
    """The score's class means and threshold for the exported file ``path``, from the photos
    of its recorded split under ``root`` (the image folder it was trained on): one pass of
    the model over the training and validation photos."""
    check_rate(rate)
    features = Features(Path(path))
    model = features.model
    train, labels, val = split_photos(
        model.metadata.get("split"), model.classes, Path(root), Path(path).name
    )
    return fit_from_features(
        features.member_features(features.of_files(Path(root), train, batch)),
        labels,
        features.member_features(features.of_files(Path(root), val, batch)),
        len(model.classes),
        rate,
    )


def write_ood(source: Path, output: Path, fit: OodFit, details: dict | None = None) -> None:
    """Write ``source`` (an exported file) with the ``ood_score`` output of ``fit`` to
    ``output`` (``source`` itself too): through a temporary file, so no reader ever sees half
    of it. ``details`` are recorded in the metadata beside ``fit.details``."""
    import onnx

    from binsort.files import replacing

    proto = add_ood_score(
        onnx.load(str(source)), fit.means, fit.threshold, {**fit.details, **(details or {})}
    )
    with replacing(output) as tmp:
        onnx.save(proto, str(tmp))
