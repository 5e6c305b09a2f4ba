"""An exported ONNX file as one model for ``binsort evaluate``: the file that ships is scored,
not the checkpoint it came from, so the effect of ``export --half`` or ``--int8`` shows.

The file's graph ends in probabilities (its members' tempered softmax mean). Their logarithm
stands in for logits: the softmax of ``log p`` is ``p`` again, so scoring, test-time
augmentation (the views are made before the model) and ``--calibrate`` (a temperature on
``log p``) all take the path checkpoints take. For a one-member file, dividing ``log p`` by T
is the same as dividing its logits by T.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from binsort.errors import BinsortError
from binsort.models.checkpoint import LoadedModel
from binsort.onnx_model import OnnxModel, arch_counts, input_name


class OnnxModule(nn.Module):
    """``[N, 3, S, S]`` images in [0, 1] -> log-probabilities, computed by onnxruntime."""

    def __init__(self, onnx: OnnxModel) -> None:
        super().__init__()
        self.onnx = onnx
        self.feed = input_name(onnx.input_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        probs = self.onnx.run({self.feed: images.float().contiguous().numpy()})
        return torch.from_numpy(probs).clamp_min(1e-12).log()


def load_onnx_member(path: str | Path) -> LoadedModel:
    """An exported file as a ``LoadedModel`` (one per file, whatever its member count)."""
    onnx = OnnxModel(path)
    if len(onnx.input_sizes) != 1:
        sizes = ", ".join(map(str, onnx.input_sizes))
        raise BinsortError(
            f"{onnx.path}: its members take different input sizes ({sizes}); evaluate scores "
            "ONNX files with one input size: evaluate the ensemble file it was exported from"
        )
    split = onnx.metadata.get("split")  # binsort export records the members' shared split
    return LoadedModel(
        model=OnnxModule(onnx).eval(),
        arch=f"{arch_counts(onnx.archs)} (ONNX)",
        classes=onnx.classes,
        input_size=onnx.input_size,
        path=onnx.path,
        hparams={"split": split} if isinstance(split, dict) else {},
    )


def stored_parameters(path: str | Path) -> int:
    """Numbers stored in the file's weights (int8 weights count once, their scales too)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    total = 0
    for tensor in graph.initializer:
        count = 1
        for dim in tensor.dims:
            count *= dim
        total += count
    return total
