"""Export a checkpoint or an ensemble file to ONNX, for prediction without torch.

The exported graph takes [0, 1] images, one input per distinct member input size
(``images_128``, ``images_160``, ...), each ``[N, 3, S, S]`` float32, and returns
``probabilities`` ``[N, C]``: the mean over members of softmax(logits / temperature), the same
answer as ``binsort.inference``. Normalisation is inside the graph, as it is inside the model.
One input per size, rather than resizing inside the graph, keeps the pixels each member sees
identical to what the PyTorch path feeds it (PIL's antialiased resize of the photo).

What ``binsort.onnx_model`` needs to use the file without torch (class names, input sizes,
the members) is stored as JSON under the ``binsort`` key of the model's metadata.

Every export is checked: ONNX Runtime and PyTorch run the same random batch and the largest
difference of their probabilities is returned (and must be below ``TOLERANCE``).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from binsort.errors import BinsortError
from binsort.models.checkpoint import LoadedModel, load_members
from binsort.onnx_model import METADATA_KEY, OnnxModel, input_name

METADATA_FORMAT = "binsort-onnx"
OPSET = 17  # supported by every onnxruntime release of the last three years
TOLERANCE = 1e-4  # on probabilities; fp32 kernels of two runtimes differ by ~1e-6


@dataclass
class ExportResult:
    path: Path
    classes: list[str]
    input_sizes: list[int]
    members: int
    max_difference: float  # largest |onnxruntime - torch| over a random check batch
    bytes: int


def export_onnx(
    model: str | Path, output: str | Path, *, force: bool = False, seed: int = 0
) -> ExportResult:
    """Write ``model`` (a checkpoint or an ensemble file) to ``output`` as ONNX and verify it."""
    output = Path(output)
    if output.suffix.lower() != ".onnx":
        raise BinsortError(f"{output}: the output's name must end in .onnx")
    if output.exists() and not force:
        raise BinsortError(f"{output} exists; pass --force to replace it")
    if not output.parent.is_dir():
        raise BinsortError(f"{output.parent}: no such folder")
    members = load_members(model)
    graph = EnsembleGraph(members).eval()
    sizes = graph.sizes
    generator = torch.Generator().manual_seed(seed)
    sample = tuple(torch.rand(2, 3, s, s, generator=generator) for s in sizes)
    metadata = {
        "format": METADATA_FORMAT,
        "version": 1,
        "classes": members[0].classes,
        "input_sizes": sizes,
        "members": [
            {"arch": m.arch, "input_size": m.input_size, "temperature": m.temperature}
            for m in members
        ],
        "source": Path(model).name,
    }
    tmp = output.with_name(f".{output.name}.tmp")
    try:
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
        _add_metadata(tmp, metadata)
        with torch.inference_mode():
            expected = graph(*sample).numpy()
        feeds = {input_name(s): x.numpy() for s, x in zip(sizes, sample, strict=True)}
        got = OnnxModel(tmp).run(feeds)
        difference = float(abs(got - expected).max())
        if not difference <= TOLERANCE:
            raise BinsortError(
                f"the exported model differs from PyTorch's by {difference:.2e} "
                f"(tolerance {TOLERANCE:.0e}); nothing was written"
            )
        tmp.replace(output)
    finally:
        tmp.unlink(missing_ok=True)
    return ExportResult(
        path=output,
        classes=list(members[0].classes),
        input_sizes=sizes,
        members=len(members),
        max_difference=difference,
        bytes=output.stat().st_size,
    )


def _add_metadata(path: Path, metadata: dict) -> None:
    import onnx

    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = json.dumps(metadata)
    proto.producer_name = "binsort"
    onnx.save(proto, str(path))


class EnsembleGraph(nn.Module):
    """Members in one module: an input per input size in, mean of tempered softmaxes out."""

    def __init__(self, members: list[LoadedModel]) -> None:
        super().__init__()
        self.nets = nn.ModuleList(m.model for m in members)
        self.sizes = sorted({m.input_size for m in members})
        self.slots = [self.sizes.index(m.input_size) for m in members]
        self.temperatures = [float(m.temperature) for m in members]

    def forward(self, *images: torch.Tensor) -> torch.Tensor:
        probs = [
            torch.softmax(net(images[slot]) / t, dim=1)
            for net, slot, t in zip(self.nets, self.slots, self.temperatures, strict=True)
        ]
        return torch.stack(probs).mean(0)
