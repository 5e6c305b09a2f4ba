"""Not waste: an out-of-distribution score that an exported model computes itself.

A classifier answers every photo with one of its classes: a cat got *Metal, 71 % sure* from
the bundled model. Its confidence does not tell a cat from a dented can, but the features
its members pool before their classifiers do: a photo of waste points the way the training
photos of one of its classes point on average, a cat the way none of them do. The score is

    1 - mean over members of (max over classes of cos(f, class mean))

with ``f`` a member's pooled feature vector (the input of its ``Gemm`` classifier) and each
class mean taken over that class's training photos. It is 0 for a photo along a class mean
and grows as a photo looks like none of the classes. Measured against four other scores
(``benchmarks/not_waste.py``, docs/benchmarks.md): the same cosine after centring the
features, a Mahalanobis distance, the logits' energy and the top probability; at 2 % of
validation photos flagged it flags as many non-waste photos as the best of them that fits
in the file, and the fewest TrashNet test photos.

``add_ood_score`` writes it into a copy of an exported file as the output ``ood_score``, from
the feature tensors already in the graph and one new constant a member (its class means:
6 x 1280 floats), and records in the file's metadata the score's name and its threshold: the
value that flags at most a given share (2 %) of validation photos. ``binsort.ood_fit`` takes
the means and the threshold from the photos of the file's recorded split (``binsort export
--not-waste ROOT``). ``binsort.onnx_model.OnnxModel`` reads both, and ``binsort.predict``
marks a photo above the threshold ``not_recognised``. Files without the output answer as
before.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from binsort.errors import BinsortError

OOD_OUTPUT = "ood_score"  # the graph output add_ood_score adds
OOD_KEY = "ood"  # its entry in the file's binsort metadata: score, threshold, flag rate
SCORE_NAME = "cosine-to-nearest-class-mean"  # what the output computes, by name
REASON = "does not look like any of the model's classes of waste"  # as predict reports it
# Far above the graph's float32 rounding of a score (~1e-7), far below the scores' spread.
THRESHOLD_MARGIN = 1e-4


def member_tensors(graph) -> list[tuple[str, str]]:
    """Each member's (pooled features, logits) tensor names, in graph order.

    A binsort export ends each member in ``Gemm -> Div (temperature) -> Softmax``
    (``binsort.export``, a single checkpoint too: its Div is by 1.0), and the members'
    Softmaxes meet in their weighted mean, ``probabilities``. The Gemm's input is the member's
    pooled feature vector."""
    producer = {out: node for node in graph.node for out in node.output}
    # A transformer's attention has Softmaxes of its own, behind its classifier: a member's
    # is one reached from the output without passing through another Softmax.
    ends, seen, todo = set(), set(), ["probabilities"]
    while todo:
        node = producer.get(todo.pop())
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if node.op_type == "Softmax":
            ends.add(id(node))
        else:
            todo.extend(node.input)
    found = []
    for i, softmax in enumerate(n for n in graph.node if id(n) in ends):
        node = producer.get(softmax.input[0])
        # The exporter writes the Div even at temperature 1, but a graph optimiser may fold
        # a division by 1 away; the Gemm is what the score needs.
        if node is not None and node.op_type == "Div":
            node = producer.get(node.input[0])
        if node is None or node.op_type != "Gemm":
            found_op = "an input" if node is None else f"a {node.op_type}"
            raise BinsortError(
                f"member {i} does not end in a fully connected classifier (Gemm, then its "
                f"temperature) but in {found_op}: the score needs the features such a layer "
                "takes (a convolutional classifier, as squeezenet's, has none)"
            )
        found.append((node.input[0], node.output[0]))
    if not found:
        raise BinsortError(
            "not a binsort export: no member outputs (Softmax) behind its probabilities"
        )
    return found


def with_member_outputs(proto):
    """A copy of ``proto`` that also answers each member's features and logits
    (``features_0``, ``logits_0``, ...): what ``class_means`` and the benchmark read."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    for i, (features, logits) in enumerate(member_tensors(copy.graph)):
        for name, tensor in ((f"features_{i}", features), (f"logits_{i}", logits)):
            copy.graph.node.append(onnx.helper.make_node("Identity", [tensor], [name]))
            copy.graph.output.append(
                onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
            )
    return copy


def class_means(
    features: Sequence[np.ndarray], labels: np.ndarray, num_classes: int
) -> list[np.ndarray]:
    """Per member, the unit direction of each class's mean feature (``[C, D]``), from the
    features of training photos and their class indices ``labels``."""
    means = []
    for f in features:
        f = np.asarray(f, dtype=np.float64)
        rows = []
        for c in range(num_classes):
            if not (labels == c).any():
                raise BinsortError(f"no training photo of class {c}: cannot take its mean")
            rows.append(f[labels == c].mean(axis=0))
        rows = np.stack(rows)
        means.append((rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32))
    return means


def cosine_score(features: Sequence[np.ndarray], means: Sequence[np.ndarray]) -> np.ndarray:
    """``[N]``: the score in numpy, as the graph computes it (see the module's docstring)."""
    best = []
    for f, m in zip(features, means, strict=True):
        x = np.asarray(f, dtype=np.float64)
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        best.append((x @ np.asarray(m, dtype=np.float64).T).max(axis=1))
    return 1.0 - np.mean(best, axis=0)


def threshold_for(scores: np.ndarray, rate: float) -> float:
    """The score above which at most ``rate`` of ``scores`` lie: just above the (k+1)-th
    largest, with k = floor(rate * n), so exactly k are flagged when no two scores tie."""
    ranked = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    k = min(int(np.floor(rate * len(ranked) + 1e-9)), len(ranked) - 1)
    # Not the (k+1)-th score itself: the graph computes that photo's score in float32, and
    # a rounding up of 1e-7 flagged it too. A margin (half the gap to the k-th, if smaller)
    # keeps it below the threshold without letting the k-th under it.
    gap = ranked[k - 1] - ranked[k] if k > 0 else np.inf
    return float(ranked[k] + min(THRESHOLD_MARGIN, gap / 2))


def add_ood_score(
    proto, means: Sequence[np.ndarray], threshold: float, details: dict | None = None
):
    """A copy of ``proto`` (an exported binsort file) with the output ``ood_score`` (``[N]``)
    and the score's name and ``threshold`` (plus ``details``) in its binsort metadata."""
    import json

    import onnx
    from onnx import helper, numpy_helper

    from binsort.onnx_model import METADATA_KEY

    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    graph = copy.graph
    if OOD_OUTPUT in {o.name for o in graph.output}:
        raise BinsortError(f"the file already has an {OOD_OUTPUT} output")
    tensors = member_tensors(graph)
    if len(tensors) != len(means):
        raise BinsortError(f"{len(tensors)} members in the graph, {len(means)} sets of means")
    best = []
    for i, ((features, _), m) in enumerate(zip(tensors, means, strict=True)):
        p = f"ood{i}_"
        graph.initializer.append(
            numpy_helper.from_array(np.ascontiguousarray(np.asarray(m, np.float32).T), p + "means")
        )
        graph.node.extend(
            [
                helper.make_node("LpNormalization", [features], [p + "unit"], axis=1, p=2),
                helper.make_node("MatMul", [p + "unit", p + "means"], [p + "cos"]),
                # opset 17: ReduceMax and ReduceMean take their axes as attributes
                helper.make_node("ReduceMax", [p + "cos"], [p + "best"], axes=[1], keepdims=1),
            ]
        )
        best.append(p + "best")
    graph.initializer.append(numpy_helper.from_array(np.ones(1, np.float32), "ood_one"))
    graph.node.extend(
        [
            helper.make_node("Concat", best, ["ood_best"], axis=1),
            helper.make_node("ReduceMean", ["ood_best"], ["ood_mean"], axes=[1], keepdims=0),
            helper.make_node("Sub", ["ood_one", "ood_mean"], [OOD_OUTPUT]),
        ]
    )
    graph.output.append(helper.make_tensor_value_info(OOD_OUTPUT, onnx.TensorProto.FLOAT, ["N"]))
    entries = [p for p in copy.metadata_props if p.key == METADATA_KEY]
    if len(entries) != 1:
        raise BinsortError("not a binsort export: no binsort metadata in the file")
    metadata = json.loads(entries[0].value)
    metadata[OOD_KEY] = {
        "output": OOD_OUTPUT,
        "score": SCORE_NAME,
        "threshold": float(threshold),
        **(details or {}),
    }
    entries[0].value = json.dumps(metadata)
    onnx.checker.check_model(copy)
    return copy
