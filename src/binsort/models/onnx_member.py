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

from binsort.models.checkpoint import LoadedModel
from binsort.onnx_model import OnnxModel, arch_counts, input_name


class OnnxModule(nn.Module):
    """``[N, 3, S, S]`` images in [0, 1] -> log-probabilities, computed by onnxruntime.

    A file whose members take different input sizes takes ``{size: images}``, one batch per
    size in ``input_sizes``, as predict feeds it (``binsort.inference`` builds them).
    """

    def __init__(self, onnx: OnnxModel) -> None:
        super().__init__()
        self.onnx = onnx
        self.input_sizes = list(onnx.input_sizes)

    def forward(self, images: torch.Tensor | dict[int, torch.Tensor]) -> torch.Tensor:
        if not isinstance(images, dict):
            images = {self.onnx.input_size: images}
        device = next(iter(images.values())).device
        feeds = {input_name(s): t.float().cpu().contiguous().numpy() for s, t in images.items()}
        return torch.from_numpy(self.onnx.run(feeds)).clamp_min(1e-12).log().to(device)


def load_onnx_member(path: str | Path) -> LoadedModel:
    """An exported file as a ``LoadedModel`` (one per file, whatever its member count)."""
    onnx = OnnxModel(path)
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
