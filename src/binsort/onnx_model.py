"""Prediction with an exported ONNX model: onnxruntime, numpy and PIL, no torch.

This is what makes ``binsort predict`` start fast: importing torch and torchvision costs
seconds, onnxruntime a fraction of that. The file is one that ``binsort export`` wrote
(``binsort.export``): its metadata names the classes and the input size of each graph input.
Images are prepared exactly as the PyTorch path prepares them (shorter side to the input
size with PIL's bilinear filter, centre crop, [0, 1]), so both paths give the same answer.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from binsort.data.images import center_crop, resize_shorter
from binsort.errors import BinsortError
from binsort.ood import OOD_KEY, OOD_OUTPUT

METADATA_KEY = "binsort"  # the metadata entry binsort.export writes
ONNX_TTA_MODES = ("none", "flip")


def is_onnx(path: str | Path) -> bool:
    """Whether ``path`` names an ONNX file (by its suffix, as export requires of its output)."""
    return Path(path).suffix.lower() == ".onnx"


def input_name(size: int) -> str:
    """The graph input that takes images of ``size`` px (one per distinct member size)."""
    return f"images_{size}"


def session_options(threads: int = 0, optimize: bool = True):
    """onnxruntime's options for a binsort file (``OnnxModel``, ``binsort.ood_fit``)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads  # 0: onnxruntime's choice, one per core
    options.log_severity_level = 3  # errors only: its warnings are not the user's business
    # binsort's graphs dequantize only constant weights (export --int8). Without this,
    # onnxruntime keeps DequantizeLinear for quantized-kernel fusion, runs it on every
    # call and is 25 % slower; with it, the weights are dequantized once, at load.
    options.add_session_config_entry("session.disable_quant_qdq", "1")
    if not optimize:
        # Preparing the graph is most of a cold start for a large file (seven members:
        # about 1.1 s of optimisation, 0.5 s without), and each batch then runs slower:
        # worth it only for a few photos (predict.FEW_PHOTOS).
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return options


class OnnxModel:
    """An exported binsort model: ``classes``, ``input_size`` and ``probabilities(images)``."""

    tta_modes = ONNX_TTA_MODES  # flip5crop resamples inside PyTorch: not in the graph

    def __init__(self, path: str | Path, threads: int = 0, optimize: bool = True) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise BinsortError(f"{self.path}: no such model file")
        try:
            self.session = ort.InferenceSession(
                str(self.path), session_options(threads, optimize), ["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise BinsortError(f"{self.path}: not a readable ONNX model ({first})") from None
        meta = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        try:
            self.metadata = json.loads(meta) if meta else None
            self.classes = [str(c) for c in self.metadata["classes"]]
            self.input_sizes = [int(s) for s in self.metadata["input_sizes"]]
        except (TypeError, KeyError, ValueError):
            raise BinsortError(
                f"{self.path}: an ONNX model without binsort's metadata (classes, input sizes); "
                "make it with binsort export"
            ) from None
        expected = {input_name(s) for s in self.input_sizes}
        if {i.name for i in self.session.get_inputs()} != expected:
            raise BinsortError(f"{self.path}: its inputs do not match its metadata")
        self.members = list(self.metadata.get("members", []))
        # The test-time augmentation the file asks for (export --tta); files before it: none.
        self.tta = str(self.metadata.get("tta", "none"))
        if self.tta not in ONNX_TTA_MODES:
            raise BinsortError(f"{self.path}: its metadata asks for an unknown --tta {self.tta!r}")
        # The file's own "not waste" score (binsort.ood) and the threshold above which a photo
        # is not recognised; files without the output have neither and answer as before.
        self.ood = self.metadata.get(OOD_KEY)
        self.ood_threshold: float | None = None
        if OOD_OUTPUT in {o.name for o in self.session.get_outputs()}:
            try:
                self.ood_threshold = float(self.ood["threshold"])
            except (TypeError, KeyError, ValueError):
                raise BinsortError(
                    f"{self.path}: it has an {OOD_OUTPUT} output but no threshold for it in its "
                    "metadata"
                ) from None

    @property
    def input_size(self) -> int:
        """The largest input size: photos are decoded at least this large."""
        return max(self.input_sizes)

    @property
    def archs(self) -> list[str]:
        """Each member's architecture, a repeated member as often as its weight."""
        archs = [str(m.get("arch", "?")) for m in self.members for _ in range(m.get("weight", 1))]
        return archs or ["?"]

    def describe(self) -> str:
        return describe_members(self.path.name, self.archs, "ONNX")

    def feeds(self, images: Sequence[Image.Image]) -> dict[str, np.ndarray]:
        """The graph's inputs for RGB PIL images: one batch per input size."""
        return {input_name(s): to_batch(images, s) for s in self.input_sizes}

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        (probs,) = self.session.run(["probabilities"], feeds)
        return probs

    def probabilities(self, images: Sequence[Image.Image], tta: str = "none") -> np.ndarray:
        """``[N, C]`` class probabilities for RGB PIL images (the members' mean)."""
        return self.answers(images, tta)[0]

    def answers(
        self, images: Sequence[Image.Image], tta: str = "none"
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """``[N, C]`` probabilities and the ``[N]`` ood scores (``None`` for a file without
        them), from one run of the graph; with ``tta`` both are the views' mean."""
        if tta not in ONNX_TTA_MODES:
            raise BinsortError(
                f"--tta {tta} is not available with an ONNX model (use none or flip)"
            )
        feeds = self.feeds(images)
        views = [feeds]
        if tta == "flip":
            # The same views as binsort.inference: as is, flipped left-right, upside down.
            for axis in (-1, -2):
                views.append({k: np.ascontiguousarray(np.flip(v, axis)) for k, v in feeds.items()})
        if self.ood_threshold is None:
            answers = [(self.run(v), None) for v in views]
        else:
            answers = [tuple(self.session.run(["probabilities", OOD_OUTPUT], v)) for v in views]
        if len(answers) == 1:
            return answers[0]
        probs = np.mean([a[0] for a in answers], axis=0)
        return probs, None if self.ood_threshold is None else np.mean([a[1] for a in answers], 0)


def arch_counts(archs: list[str]) -> str:
    """``7× shufflenet_v2_x1_0``, ``2× resnet18, mobilenet_v3_small``: each architecture once."""
    return ", ".join(a if n == 1 else f"{n}× {a}" for a, n in Counter(archs).items())


def describe_members(name: str, archs: list[str], runtime: str = "") -> str:
    """``model.onnx (ensemble of 7: 7× shufflenet_v2_x1_0, ONNX)``: the file and what answers."""
    parts = arch_counts(archs)
    text = parts if len(archs) == 1 else f"ensemble of {len(archs)}: {parts}"
    return f"{name} ({text}, {runtime})" if runtime else f"{name} ({text})"


def to_batch(images: Sequence[Image.Image], size: int) -> np.ndarray:
    """``[N, 3, size, size]`` float32 in [0, 1]: the eval transform, in numpy."""
    arrays = [np.asarray(center_crop(resize_shorter(im, size), size)) for im in images]
    # Times 1/255 in float32, as torchvision scales, so both paths agree to the last bit.
    batch = np.stack(arrays).astype(np.float32) * np.float32(1 / 255)
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
