"""``--weights bundled``: start training from a member of the bundled default model.

The bundled model (``binsort/assets/default-model.onnx``) is an ensemble of EfficientNet-Lite
networks fine-tuned on TrashNet, exported by ``binsort.export``: one ONNX graph, int8 weights,
short tensor names (``t1a``), and each member's batch norms folded into its convolutions by
the exporter. Its members' weights are read back from the graph, not from names:

- each member is the part of the graph that ends in one of the ``Softmax`` nodes, in the order
  of the file's metadata (each is checked against its member's temperature);
- its ``Conv`` nodes, in graph order, are its timm network's ``Conv2d`` modules in module
  order; every pair must agree in shape, groups and stride, and so must the counts, or the
  file is refused: a layer is never filled from a tensor that merely has the right size;
- its ``Gemm`` is the classifier, the ``Sub``/``Div`` on the input its mean and std.

Stored weights are turned back into float32 as the graph itself does at load time (int8 times
its channel's scale, float16 cast), so the rebuilt network computes what the file computes.

A folded convolution carries its batch norm's scale and shift. The network gets them back as
a batch norm that does nothing yet in eval mode (mean 0, variance 1, weight sqrt(1 + eps),
bias the folded shift): exact for prediction, but not for training, where a batch norm uses
the batch's own statistics. ``SourceWeights.folded_norms`` says so, and training re-estimates
them on the user's photos first (``binsort.models.norms``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from binsort.config import BUNDLED_WEIGHTS
from binsort.errors import BinsortError
from binsort.models.factory import TIMM, resolve_model_name

if TYPE_CHECKING:
    from binsort.models.pretrained import SourceWeights

# ONNX TensorProto.FLOAT: the type a Cast must restore for a weight to be read back.
ONNX_FLOAT = 1


def is_bundled(spec: str) -> bool:
    """Whether ``--weights spec`` names the bundled model (``bundled`` or ``bundled:N``)."""
    spec = spec.lower()
    return spec == BUNDLED_WEIGHTS or spec.startswith(f"{BUNDLED_WEIGHTS}:")


def bundled_weights(spec: str, arch: str, path: Path | None = None) -> SourceWeights:
    """The weights of the bundled model's member that ``spec`` names, for the model ``arch``.

    ``bundled`` takes the file's first member of ``arch``'s architecture, ``bundled:N`` its
    N-th member (from 1), which must be of ``arch``'s architecture. ``path`` is for tests."""
    import onnx

    from binsort.models.pretrained import SourceWeights
    from binsort.onnx_model import METADATA_KEY
    from binsort.predict import default_model_path

    path = path or default_model_path()
    if path is None:
        raise BinsortError(
            f"--weights {spec}: this installation of binsort ships without the bundled model; "
            "use --weights imagenet or a checkpoint file"
        )
    arch = resolve_model_name(arch)
    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}.get(METADATA_KEY)
    members, classes, split = _members(meta, path)
    index = _choose(spec, arch, members)
    member = members[index]
    graph = _Graph(proto.graph)
    end = graph.softmaxes()
    if len(end) != len(members):
        raise BinsortError(
            f"{path}: {len(end)} member outputs in the graph for {len(members)} members in its "
            "metadata; cannot tell the members apart"
        )
    temperature = graph.temperature(end[index])
    if not np.isclose(temperature, float(member["temperature"]), rtol=1e-5):
        raise BinsortError(f"{path}: member {index + 1}'s output is not where its metadata says")
    what = f"{path.name} member {index + 1}"
    state, mean, std = _member_state(graph, end[index], arch, len(classes), what)
    return SourceWeights(
        state,
        f"the bundled model (member {index + 1}, {arch}, fine-tuned on TrashNet)",
        mean,
        std,
        classes=classes,
        # The TrashNet photos it was trained on: training on them again keeps that split, or
        # is warned about, as for a checkpoint (binsort.train).
        split=split,
        folded_norms=True,
    )


def _members(meta: str | None, path: Path) -> tuple[list[dict], list[str], dict | None]:
    """The file's members (architecture, temperature, ...), class names and training split."""
    import json

    try:
        data = json.loads(meta) if meta else {}
        members, classes = data["members"], [str(c) for c in data["classes"]]
    except (ValueError, KeyError, TypeError):
        data, members, classes = {}, None, []
    if not members or not all(isinstance(m, dict) and "arch" in m for m in members):
        raise BinsortError(f"{path}: not a binsort ensemble (no members in its metadata)")
    split = data.get("split")
    return members, classes, split if isinstance(split, dict) else None


def _choose(spec: str, arch: str, members: list[dict]) -> int:
    """The index of the member ``spec`` names, refused unless it is of ``arch``'s kind."""
    archs = [resolve_model_name(str(m["arch"])) for m in members]
    listing = ", ".join(f"{i + 1}: {a.removeprefix(TIMM)}" for i, a in enumerate(archs))
    _, _, number = spec.partition(":")
    if not number:
        if arch not in archs:
            raise BinsortError(
                f"--weights {spec}: the bundled model has no {arch} member ({listing}); "
                f"use --model with one of those, or --weights imagenet"
            )
        return archs.index(arch)
    if not number.isdigit() or not 1 <= int(number) <= len(members):
        raise BinsortError(
            f"--weights {spec}: choose a member from 1 to {len(members)} ({listing})"
        )
    index = int(number) - 1
    if archs[index] != arch:
        raise BinsortError(
            f"--weights {spec} is a {archs[index]} network: train it with "
            f"--model {archs[index]} (not {arch})"
        )
    return index


class _Graph:
    """The nodes of an ONNX graph, with constant tensors read back as float32 arrays."""

    def __init__(self, graph) -> None:
        self.nodes = list(graph.node)
        self.inputs = {v.name for v in graph.input}
        self.initializers = {t.name: t for t in graph.initializer}
        self.producer = {out: node for node in self.nodes for out in node.output}
        self.position = {id(node): i for i, node in enumerate(self.nodes)}

    def softmaxes(self) -> list:
        return [n for n in self.nodes if n.op_type == "Softmax"]

    def temperature(self, softmax) -> float:
        div = self.producer.get(softmax.input[0])
        if div is None or div.op_type != "Div":
            return float("nan")
        return float(self.value(div.input[1]))

    def upstream(self, node) -> list:
        """The nodes ``node`` depends on, in graph order (the order they run in)."""
        seen: dict[int, object] = {}
        todo = [node]
        while todo:
            current = todo.pop()
            if id(current) in seen:
                continue
            seen[id(current)] = current
            todo += [self.producer[n] for n in current.input if n in self.producer]
        return sorted(seen.values(), key=lambda n: self.position[id(n)])

    def value(self, name: str) -> np.ndarray:
        """A constant tensor as the graph computes it when it loads: dequantised, cast."""
        from onnx import numpy_helper

        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producer.get(name)
        op = node.op_type if node is not None else None
        attrs = {a.name: a for a in node.attribute} if node is not None else {}
        if op == "Constant" and "value" in attrs:
            return numpy_helper.to_array(attrs["value"].t)
        if op == "Identity":
            return self.value(node.input[0])
        if op == "Cast" and attrs["to"].i == ONNX_FLOAT:
            return self.value(node.input[0]).astype(np.float32)
        if op == "DequantizeLinear":
            x = self.value(node.input[0]).astype(np.float32)
            axis = attrs["axis"].i if "axis" in attrs else 1
            shape = [1] * x.ndim
            shape[axis] = -1
            scale = self.value(node.input[1]).astype(np.float32).reshape(shape)
            zero = self.value(node.input[2]) if len(node.input) > 2 else np.zeros(1)
            return (x - zero.astype(np.float32).reshape(shape)) * scale
        raise _NotConstant(name)


class _NotConstant(Exception):
    pass


def _member_state(
    graph: _Graph, softmax, arch: str, num_classes: int, what: str
) -> tuple[dict[str, torch.Tensor], list[float], list[float]]:
    """The member ending in ``softmax`` as ``arch``'s state dict, with its mean and std."""
    from binsort.models.factory import build_model

    nodes = graph.upstream(softmax)
    convs = [n for n in nodes if n.op_type == "Conv"]
    gemms = [n for n in nodes if n.op_type == "Gemm"]
    net = build_model(arch, num_classes, [0.0] * 3, [1.0] * 3).net
    layers = _conv_norm_pairs(net, arch)
    linears = [name for name, m in net.named_modules() if isinstance(m, nn.Linear)]
    if len(convs) != len(layers) or len(gemms) != 1 or len(linears) != 1:
        raise BinsortError(
            f"{what}: {len(convs)} convolutions and {len(gemms)} classifiers in the graph, "
            f"{len(layers)} and 1 in {arch}: not that architecture"
        )
    own = net.state_dict()
    state: dict[str, torch.Tensor] = {}
    try:
        for i, (node, (conv_name, conv, norm_name, norm)) in enumerate(
            zip(convs, layers, strict=True)
        ):
            weight, bias = graph.value(node.input[1]), graph.value(node.input[2])
            attrs = {a.name: a for a in node.attribute}
            groups = attrs["group"].i if "group" in attrs else 1
            strides = tuple(attrs["strides"].ints) if "strides" in attrs else (1, 1)
            if weight.shape != tuple(conv.weight.shape) or (groups, strides) != (
                conv.groups,
                tuple(conv.stride),
            ):
                raise BinsortError(
                    f"{what}: its convolution {i + 1} ({weight.shape}, groups {groups}, stride "
                    f"{strides}) does not pair with {arch}'s {conv_name} "
                    f"({tuple(conv.weight.shape)}, groups {conv.groups}, stride "
                    f"{tuple(conv.stride)})"
                )
            state[f"{conv_name}.weight"] = torch.from_numpy(weight.copy())
            # The folded shift, behind a batch norm that does nothing in eval mode.
            channels = bias.shape[0]
            state[f"{norm_name}.weight"] = torch.full((channels,), (1 + norm.eps) ** 0.5)
            state[f"{norm_name}.bias"] = torch.from_numpy(bias.astype(np.float32).copy())
            state[f"{norm_name}.running_mean"] = torch.zeros(channels)
            state[f"{norm_name}.running_var"] = torch.ones(channels)
            state[f"{norm_name}.num_batches_tracked"] = torch.tensor(0)
        gemm = gemms[0]
        attrs = {a.name: a for a in gemm.attribute}
        weight = graph.value(gemm.input[1])
        if not (attrs.get("transB") and attrs["transB"].i == 1):
            weight = weight.T
        state[f"{linears[0]}.weight"] = torch.from_numpy(np.ascontiguousarray(weight))
        state[f"{linears[0]}.bias"] = torch.from_numpy(graph.value(gemm.input[2]).copy())
        mean, std = _normalisation(graph, nodes)
    except (_NotConstant, KeyError, IndexError):
        raise BinsortError(f"{what}: a weight of the graph is not a constant it can read") from None
    for key, tensor in state.items():
        if key not in own or own[key].shape != tensor.shape:
            raise BinsortError(f"{what}: its tensor for {key} has no counterpart in {arch}")
    missing = [k for k in own if k not in state]
    if missing:
        raise BinsortError(f"{what}: no tensor for {arch}'s {missing[0]} ({len(missing)} missing)")
    return state, mean, std


def _conv_norm_pairs(net: nn.Module, arch: str) -> list[tuple[str, nn.Conv2d, str, nn.Module]]:
    """Each convolution of ``net`` with the batch norm that follows it, in module order."""
    pairs: list = []
    pending = None
    for name, module in net.named_modules():
        if isinstance(module, nn.Conv2d):
            if pending is not None or module.bias is not None:
                pairs = []  # a convolution with no norm of its own: nothing folded into it
                break
            pending = (name, module)
        elif isinstance(module, nn.BatchNorm2d) and pending is not None:
            pairs.append((*pending, name, module))
            pending = None
    if not pairs or pending is not None:
        raise BinsortError(
            f"--weights {BUNDLED_WEIGHTS}: {arch} is not a network of convolutions each "
            "followed by a batch norm; the bundled members are EfficientNet-Lite networks"
        )
    return pairs


def _normalisation(graph: _Graph, nodes: list) -> tuple[list[float], list[float]]:
    """The member's ``(x - mean) / std``: the Sub on the graph's input and the Div after it."""
    for node in nodes:
        if node.op_type == "Sub" and node.input[0] in graph.inputs:
            div = next(n for n in nodes if n.op_type == "Div" and n.input[0] == node.output[0])
            mean = graph.value(node.input[1]).reshape(-1)
            std = graph.value(div.input[1]).reshape(-1)
            return [float(v) for v in mean], [float(v) for v in std]
    raise KeyError("normalisation")
