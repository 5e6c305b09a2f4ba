"""Export a checkpoint or an ensemble file to ONNX, for prediction without torch.

The exported graph takes [0, 1] images, one input per distinct member input size
(``images_128``, ``images_160``, ...), each ``[N, 3, S, S]`` float32, and returns
``probabilities`` ``[N, C]``: the mean over members of softmax(logits / temperature), the same
answer as ``binsort.inference``. A member stored several times (greedy selection's weights) is
in the graph once, with its weight. Normalisation is inside the graph, as it is inside the model.
One input per size, rather than resizing inside the graph, keeps the pixels each member sees
identical to what the PyTorch path feeds it (PIL's antialiased resize of the photo).

What ``binsort.onnx_model`` needs to use the file without torch (class names, input sizes,
the members) is stored as JSON under the ``binsort`` key of the model's metadata.

Every export is checked: ONNX Runtime and PyTorch run the same random batch of two, and its
first image alone (the batch size ``binsort serve`` runs), and the largest difference of their
probabilities is returned (and must be below ``TOLERANCE``).

``half=True`` stores the weights as float16 and casts them back to float32 inside the graph:
half the file, the same float32 arithmetic. ONNX Runtime folds the casts when it loads the
file, so it runs as fast as a float32 file. The graph is first checked in float32 (so a wrong
export is still caught at ``TOLERANCE``), then the rounded weights against ``HALF_TOLERANCE``.

``int8=True`` stores each weight matrix and convolution kernel with at least ``INT8_FAN_IN``
weights per output as int8, with one float32 scale per output channel (symmetric,
weight-only), and a DequantizeLinear back to float32 before use; smaller kernels (depthwise
convolutions, the first convolution) are stored as float16. About a quarter of the file, the
same float32 arithmetic on rounded weights. Biases and other vectors stay float32. Checked
like ``half``, against ``INT8_TOLERANCE``.

``not_waste=ROOT`` (the image folder the model was trained on) adds the model's "not waste"
score (``binsort.ood``): its class means and threshold are fitted on the photos of the split
the file records (``binsort.ood_fit``), on the file as it ships, before it takes its name.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from binsort.config import NOT_WASTE_RATE
from binsort.errors import BinsortError, check_choice
from binsort.files import refuse_to_replace, replacing
from binsort.metrics import tempered_softmax, weighted_mean
from binsort.models.checkpoint import (
    LoadedModel,
    calibrated_tta,
    distinct_members,
    load_members,
)
from binsort.onnx_model import METADATA_KEY, ONNX_TTA_MODES, OnnxModel, input_name, is_onnx
from binsort.ood_fit import OodFit, check_rate, fit_ood, split_photos, write_ood

METADATA_FORMAT = "binsort-onnx"
OPSET = 17  # supported by every onnxruntime release of the last three years
TOLERANCE = 1e-4  # on probabilities; fp32 kernels of two runtimes differ by ~1e-6
# float16 keeps 11 significant bits (relative rounding <= 4.9e-4 per weight). Through this
# project's models that moved probabilities by at most 1e-4 on the random check batch and
# 8e-3 on the 321 test photos, none of whose answers changed (docs/export.md).
HALF_TOLERANCE = 1e-2
# int8 rounds a weight by up to 1/254 of its channel's largest: ~30x float16's error. On a
# fine-tuned EfficientNet-Lite0 that moved probabilities by 1.3e-2 on the random check batch
# and by up to 6.6e-2 on the 321 test photos, 1 of whose answers changed (docs/export.md): a
# looser bound than half's.
INT8_TOLERANCE = 5e-2
# An output sums its kernel's rounding errors, and the sum's relative error shrinks as the
# kernel grows: a depthwise 3x3 (9 weights per output) or 5x5 kernel, or the first
# convolution (27), averages too few to hide 8-bit rounding. In int8 those moved
# EfficientNet-Lite0's probabilities on the validation photos by 0.26 and changed 4 of 183
# answers; kept as float16 (+4 % of the int8 file), by 0.05 and none (docs/export.md).
INT8_FAN_IN = 64


@dataclass
class ExportResult:
    path: Path
    classes: list[str]
    input_sizes: list[int]
    members: int
    max_difference: float  # largest |onnxruntime - torch| over the random check batches
    bytes: int
    weights: str = "float32"  # how the file stores them: float32, float16 (half) or int8
    tta: str = "none"  # the test-time augmentation predict uses with the file by default
    warnings: list[str] = field(default_factory=list)
    ood: OodFit | None = None  # the "not waste" score's fit, when asked for (not_waste)


def export_onnx(
    model: str | Path,
    output: str | Path,
    *,
    force: bool = False,
    half: bool = False,
    int8: bool = False,
    seed: int = 0,
    tta: str | None = None,
    not_waste: str | Path | None = None,
    not_waste_rate: float = NOT_WASTE_RATE,
) -> ExportResult:
    """Write ``model`` (a checkpoint or an ensemble file) to ``output`` as ONNX and verify it.

    ``tta`` is recorded in the file as the test-time augmentation ``predict`` uses with it
    when not told otherwise (the views it was validated with). By default it is the one the
    members' temperatures were fitted for (``ensemble --calibrate --tta``), else none.

    ``not_waste``, the image folder the model was trained on, adds the "not waste" score
    (``binsort.ood``), its threshold flagging at most ``not_waste_rate`` of the recorded
    validation photos (``binsort.ood_fit``)."""
    output = Path(output)
    if not is_onnx(output):
        raise BinsortError(f"{output}: the output's name must end in .onnx")
    refuse_to_replace(output, force)
    if half and int8:
        raise BinsortError("--half and --int8 are two ways to store the weights: choose one")
    if tta is not None:
        check_choice("--tta", tta, ONNX_TTA_MODES, " for an ONNX file")
    if not_waste is not None:
        check_rate(not_waste_rate)
    weights = "float16" if half else "int8" if int8 else "float32"
    if not output.parent.is_dir():
        raise BinsortError(f"{output.parent}: no such folder")
    members = distinct_members(load_members(model))
    tta, cautions = _file_tta(tta, calibrated_tta([m for m, _ in members]))
    graph = EnsembleGraph(members).eval()
    sizes = graph.sizes
    generator = torch.Generator().manual_seed(seed)
    sample = tuple(torch.rand(2, 3, s, s, generator=generator) for s in sizes)
    metadata = {
        "format": METADATA_FORMAT,
        "version": 1,
        "classes": members[0][0].classes,
        "input_sizes": sizes,
        "members": [
            {
                "arch": m.arch,
                "input_size": m.input_size,
                "temperature": m.temperature,
                "weight": weight,
            }
            for m, weight in members
        ],
        "source": Path(model).name,
        "weights": weights,
        "tta": tta,
    }
    # The training split travels with the file, as with a checkpoint, so that evaluate can
    # refuse to score it on its own training images and take it as --split. Members trained
    # on different splits have no one split to record. The folder does not tell splits apart:
    # a copy made by binsort resize keeps the file names, so a member trained on it and one
    # trained on the originals share one split (the first member's folder is recorded).
    splits = [m.split for m, _ in members]
    if splits[0] is not None and all(_same_photos(s, splits[0]) for s in splits):
        metadata["split"] = splits[0]
    if not_waste is not None:
        # The fit needs these photos: refused now, not after minutes of export.
        split_photos(metadata.get("split"), metadata["classes"], Path(not_waste), Path(model).name)
    with replacing(output) as tmp:
        with warnings.catch_warnings():
            # The TorchScript-based exporter is deprecated in favour of one that needs the
            # onnxscript package; it is still supported and needs nothing beyond torch.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                graph,
                sample,
                str(tmp),
                dynamo=False,
                input_names=[input_name(s) for s in sizes],
                output_names=["probabilities"],
                dynamic_axes={
                    **{input_name(s): {0: "batch"} for s in sizes},
                    "probabilities": {0: "batch"},
                },
                opset_version=OPSET,
            )
        _finish(tmp, metadata)
        # The batch of two checks the free batch axis; serve runs one photo at a time, and a
        # graph can go wrong at batch 1 alone (a squeeze that drops the batch axis too).
        checks = [_expected(graph, sizes, sample), _expected(graph, sizes, [x[:1] for x in sample])]
        difference = _check(tmp, checks, TOLERANCE)
        if half:
            _weights_to_half(tmp)
            difference = _check(tmp, checks, HALF_TOLERANCE)
        if int8:
            _weights_to_int8(tmp)
            difference = _check(tmp, checks, INT8_TOLERANCE)
        ood = None
        if not_waste is not None:
            # On the file as it ships (its weights rounded, if asked), and before it takes
            # output's name: a fit that fails leaves whatever output was there.
            ood = fit_ood(tmp, Path(not_waste), not_waste_rate)
            write_ood(tmp, tmp, ood)
    return ExportResult(
        path=output,
        classes=list(members[0][0].classes),
        input_sizes=sizes,
        members=len(members),
        max_difference=difference,
        bytes=output.stat().st_size,
        weights=weights,
        tta=tta,
        warnings=cautions,
        ood=ood,
    )


def _file_tta(asked: str | None, calibrated: str | None) -> tuple[str, list[str]]:
    """The views the file predicts with: those asked for, else those its members' temperatures
    were fitted for; and a warning when the two differ, since then its confidence is not
    calibrated for what it predicts."""
    if asked is None:
        asked = calibrated if calibrated in ONNX_TTA_MODES else "none"
    if calibrated is None or calibrated == asked:
        return asked, []
    return asked, [
        f"the members' temperatures were fitted for --tta {calibrated} (ensemble --calibrate "
        f"--tta), but the file predicts with --tta {asked}: its confidences are not calibrated "
        "for that"
    ]


def _expected(graph: nn.Module, sizes: list[int], images) -> tuple[dict, object]:
    """ONNX Runtime's feeds for ``images`` (one batch per input size) and PyTorch's answer."""
    with torch.inference_mode():
        expected = graph(*images).numpy()
    return {input_name(s): x.numpy() for s, x in zip(sizes, images, strict=True)}, expected


def _check(path: Path, checks: list[tuple[dict, object]], tolerance: float) -> float:
    """The largest difference from PyTorch's answers over the check batches, within
    ``tolerance`` or refused."""
    model = OnnxModel(path)
    difference = max(float(abs(model.run(feeds) - expected).max()) for feeds, expected in checks)
    if not difference <= tolerance:
        raise BinsortError(
            f"the exported model differs from PyTorch's by {difference:.2e} "
            f"(tolerance {tolerance:.0e}); nothing was written"
        )
    return difference


def _rewrite_weights(path: Path, convert) -> None:
    """Replace float32 initializers by ``convert(name, values)``'s smaller stored form.

    ``convert`` returns None to keep a tensor as it is, or the initializers to store and the
    node that turns them back into the float32 tensor ``name`` (placed before every use).
    """
    import onnx
    from onnx import TensorProto, numpy_helper

    proto = onnx.load(str(path))
    graph = proto.graph
    kept, restore = [], []
    for init in graph.initializer:
        converted = None
        if init.data_type == TensorProto.FLOAT:
            converted = convert(init.name, numpy_helper.to_array(init))
        if converted is None:
            kept.append(init)
        else:
            kept += converted[0]
            restore.append(converted[1])
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(restore + nodes)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def _weights_to_half(path: Path) -> None:
    """Store every float32 initializer as float16, with a Cast back to float32 before use."""
    # Not onnxruntime.transformers.float16 (onnxconverter-common's converter): it computes in
    # float16, and even with every op blocked and force_fp16_initializers it rounds each node's
    # output to float16 (a Cast pair per node): 3e-3 from this rewrite's probabilities on
    # EfficientNet-Lite0 and 32 test photos.
    _rewrite_weights(path, _stored_as_half)


def _stored_as_half(name: str, values):
    """``values`` stored as float16 and the Cast back (None: beyond float16's range)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    if not np.isfinite(values.astype(np.float16)).all():
        return None  # beyond float16's range (65504): keep it exact
    stored = numpy_helper.from_array(values.astype(np.float16), f"{name}.fp16")
    return [stored], helper.make_node("Cast", [stored.name], [name], to=TensorProto.FLOAT)


def _weights_to_int8(path: Path) -> None:
    """Store float32 kernels as int8 with a per-output-channel scale (small ones as float16)."""
    # Not onnxruntime.quantization (1.32): quantize_dynamic and quantize_static (QDQ, per
    # channel) quantize the activations too, which moved EfficientNet-Lite0's probabilities on
    # 32 test photos by 0.46 and 0.36, against 0.11 for rounding every kernel's weights alone;
    # its weight-only MatMulNBitsQuantizer takes MatMul and Gather, not the Conv and Gemm these
    # graphs are made of.
    import numpy as np
    from onnx import helper, numpy_helper

    def int8(name: str, values):
        if values.ndim < 2:
            return None  # biases and other vectors: small, and sensitive to rounding
        if values[0].size < INT8_FAN_IN:
            return _stored_as_half(name, values)
        largest = np.abs(values.reshape(values.shape[0], -1)).max(axis=1)
        scale = np.where(largest > 0, largest / 127, 1).astype(np.float32)
        shape = (-1,) + (1,) * (values.ndim - 1)
        quantized = np.clip(np.round(values / scale.reshape(shape)), -127, 127).astype(np.int8)
        stored = [
            numpy_helper.from_array(quantized, f"{name}.int8"),
            numpy_helper.from_array(scale, f"{name}.scale"),
            numpy_helper.from_array(np.zeros(scale.shape, np.int8), f"{name}.zero"),
        ]
        node = helper.make_node("DequantizeLinear", [t.name for t in stored], [name], axis=0)
        return stored, node

    _rewrite_weights(path, int8)


def _finish(path: Path, metadata: dict) -> None:
    """Give the graph's tensors and nodes short names, and store ``metadata`` in the file."""
    import onnx

    proto = onnx.load(str(path))
    _shorten_names(proto.graph)
    entry = proto.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = json.dumps(metadata)
    proto.producer_name = "binsort"
    onnx.save(proto, str(path))


def _shorten_names(graph) -> None:
    """Rename every internal tensor ``t<hex>`` and drop node names.

    The exporter names them after module paths (``/members.0/model/stage2/stage2.0/...``):
    about 115 kB per shufflenet, a tenth of an int8 member. Only the graph's inputs and
    outputs are part of the file's interface; those keep their names.
    """
    interface = {v.name for v in (*graph.input, *graph.output)}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in interface:
            return name
        return names.setdefault(name, f"t{len(names):x}")

    for init in graph.initializer:
        init.name = short(init.name)
    for node in graph.node:
        node.name = ""
        node.input[:] = [short(n) for n in node.input]
        node.output[:] = [short(n) for n in node.output]
    for info in graph.value_info:
        info.name = short(info.name)


class EnsembleGraph(nn.Module):
    """Members in one module: an input per input size in, weighted mean of tempered softmaxes
    out. ``members`` pairs each distinct member with its weight (``distinct_members``)."""

    def __init__(self, members: list[tuple[LoadedModel, int]]) -> None:
        super().__init__()
        self.nets = nn.ModuleList(m.model for m, _ in members)
        self.sizes = sorted({m.input_size for m, _ in members})
        self.slots = [self.sizes.index(m.input_size) for m, _ in members]
        self.temperatures = [float(m.temperature) for m, _ in members]
        self.weights = [weight for _, weight in members]

    def forward(self, *images: torch.Tensor) -> torch.Tensor:
        members = zip(self.nets, self.slots, self.temperatures, strict=True)
        probs = [tempered_softmax(net(images[slot]), t) for net, slot, t in members]
        return weighted_mean(probs, self.weights)


def _same_photos(a: dict | None, b: dict) -> bool:
    """Two recorded splits list the same photos in each part, wherever their folders were."""
    where = ("root", "roots")
    return a is not None and {k: v for k, v in a.items() if k not in where} == {
        k: v for k, v in b.items() if k not in where
    }
