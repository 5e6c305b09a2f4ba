"""Classification metrics as pure functions on tensors: what ``evaluate`` and ``ensemble`` report.

Everything takes class probabilities ``[N, C]`` (or predictions) and integer labels ``[N]`` and
returns numbers; nothing reads files or prints. The confusion matrix, precision, recall and F1
are scikit-learn's (``zero_division=0``), so they match the ``classification_report`` printed
next to them. scikit-learn is imported inside the functions: ``predict`` imports this module
for ``tempered_softmax`` and should not pay for it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch

AVERAGES = ("weighted", "macro")
ECE_BINS = 15  # Guo et al. 2017, the usual choice; enough bins to see over-confidence
# Temperatures searched. A model that makes no mistake on the calibration set drives the NLL
# optimum to T -> 0; the bound keeps that finite, and a fit at a bound is worth a warning.
TEMPERATURE_RANGE = (0.05, 20.0)


def tempered_softmax(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``[N, C]`` logits -> probabilities at temperature T: softmax(logits / T) over the classes.
    Inference, the distillation teacher and the exported graph all answer with it."""
    return torch.softmax(logits / temperature, dim=1)


def weighted_mean(probs: Iterable[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """The members' probabilities averaged, member i counted ``weights[i]`` times: an ensemble's
    answer (GarbageML's softmax mean). ``probs`` is a ``[M, N, C]`` tensor or any sequence of
    ``[N, C]`` ones. The weights are Python numbers, so on a GPU (the distillation teacher,
    every step) the mean costs no host-to-device copy, and an exported graph holds them as
    constants."""
    total = sum(weights)
    return sum(p * (w / total) for p, w in zip(probs, weights, strict=True))


def confusion_matrix(labels: torch.Tensor, preds: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``[C, C]`` counts: row = true class, column = predicted class (sklearn's layout)."""
    from sklearn.metrics import confusion_matrix as counts

    # labels=range(C): a class nobody has or predicts keeps its (zero) row and column.
    return torch.from_numpy(counts(labels.numpy(), preds.numpy(), labels=range(num_classes)))


def accuracy(labels: torch.Tensor, preds: torch.Tensor) -> float:
    return float((labels == preds).float().mean()) if len(labels) else float("nan")


def accuracy_interval(
    labels: torch.Tensor, preds: torch.Tensor, level: float = 0.95
) -> tuple[float, float]:
    """Wilson score interval of the accuracy (scipy): unlike "accuracy ± 1.96 standard errors"
    it stays inside [0, 1] and keeps its coverage near 100 %, where test sets of a few hundred
    photos put good models."""
    return wilson_interval(int((labels == preds).sum()), len(labels), level)


def wilson_interval(right: int, total: int, level: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of ``right`` successes out of ``total`` (see
    ``accuracy_interval``); NaNs for no trials. Training's per-epoch validation counts and
    cross-validation's pooled count use it as they are, without the answers."""
    from scipy.stats import binomtest

    if not total:
        return float("nan"), float("nan")
    ci = binomtest(int(right), int(total)).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def paired_difference(
    labels: torch.Tensor, reference: torch.Tensor, other: torch.Tensor
) -> dict[str, float]:
    """Two models' answers on the same images, compared photo by photo (McNemar's exact
    test): ``gains``, the photos ``other`` gets right and ``reference`` wrong; ``losses``, the
    reverse; ``p_value``, how often chance alone would split the photos they disagree on at
    least this unevenly. Photos both get right or both wrong say nothing about which is better,
    which is why this is sharper than comparing two accuracy intervals."""
    from scipy.stats import binomtest

    ref_right, other_right = reference == labels, other == labels
    gains = int((other_right & ~ref_right).sum())
    losses = int((ref_right & ~other_right).sum())
    p = binomtest(gains, gains + losses).pvalue if gains + losses else 1.0
    return {"gains": gains, "losses": losses, "p_value": float(p)}


def per_class(labels: torch.Tensor, preds: torch.Tensor, num_classes: int) -> dict[str, list]:
    """Per-class precision, recall, F1 (0 where undefined) and support, for classes 0..C-1."""
    from sklearn.metrics import precision_recall_fscore_support

    p, r, f, s = precision_recall_fscore_support(
        labels.numpy(), preds.numpy(), labels=range(num_classes), zero_division=0
    )
    return {"precision": p.tolist(), "recall": r.tolist(), "f1": f.tolist(), "support": s.tolist()}


def averaged(
    labels: torch.Tensor, preds: torch.Tensor, average: str = "weighted"
) -> dict[str, float]:
    """Precision, recall and F1 averaged over classes.

    ``macro`` averages the classes that occur in the labels or the predictions (sklearn's
    ``labels=None``); ``weighted`` weighs each class by its support.
    """
    from sklearn.metrics import precision_recall_fscore_support

    if average not in AVERAGES:
        raise ValueError(f"average must be one of {AVERAGES}, got {average!r}")
    p, r, f, _ = precision_recall_fscore_support(
        labels.numpy(), preds.numpy(), average=average, zero_division=0
    )
    return {"precision": float(p), "recall": float(r), "f1": float(f)}


def expected_calibration_error(
    probs: torch.Tensor, labels: torch.Tensor, bins: int = ECE_BINS
) -> float:
    """ECE: the support-weighted gap between confidence and accuracy in equal-width bins.

    Confidence is the top probability; bin ``b`` holds confidences in ``(b/bins, (b+1)/bins]``.
    """
    # Not torchmetrics' multiclass_calibration_error: its bins are [b/bins, (b+1)/bins) with
    # confidence 1.0 in an extra bin of its own, it counts in float32, and it softmaxes the
    # input again if any value lies outside [0, 1] (a mean of probabilities at 1 + 1e-7), so
    # saturated or averaged probabilities get a different figure (tests/test_metrics.py).
    confidence, preds = probs.max(1)
    correct = (preds == labels).double()
    confidence = confidence.double()
    # ceil(c * bins) - 1 puts c in the bin whose upper edge is the first one >= c.
    index = (torch.ceil(confidence * bins).long() - 1).clamp(0, bins - 1)
    # sum_b |B|/N * |mean conf(B) - acc(B)| = sum_b |sum conf(B) - sum correct(B)| / N
    conf_sum = torch.bincount(index, weights=confidence, minlength=bins)
    correct_sum = torch.bincount(index, weights=correct, minlength=bins)
    return float((conf_sum - correct_sum).abs().sum() / max(len(labels), 1))


def nll(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean negative log-likelihood of the true class (probabilities floored at 1e-12)."""
    picked = probs.double().gather(1, labels.long().view(-1, 1)).squeeze(1)
    return float(-picked.clamp(min=1e-12).log().mean()) + 0.0  # + 0.0: no "-0.0" in JSON


def _golden_min(f: Callable[[float], float], lo: float, hi: float, steps: int = 80) -> float:
    """Minimum of a unimodal ``f`` on ``[lo, hi]`` by golden-section search."""
    ratio = (math.sqrt(5) - 1) / 2
    a, b = lo, hi
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(steps):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = f(d)
    return (a + b) / 2


def fit_temperature(
    logits: torch.Tensor,
    labels: torch.Tensor,
    low: float = TEMPERATURE_RANGE[0],
    high: float = TEMPERATURE_RANGE[1],
) -> float:
    """The temperature T that minimises the NLL of ``softmax(logits / T)`` (Guo et al. 2017).

    ``logits`` is ``[N, C]``, or ``[V, N, C]`` for V test-time views of the same images, whose
    softmaxes are averaged as ``--tta`` averages them: T is fitted for what will be predicted.
    They may be log-probabilities: those differ from logits by a per-row constant, which the
    softmax ignores. With one view the NLL is convex in 1/T, hence unimodal in log T, and
    golden-section search finds its minimum with no learning rate to tune; with several views
    a coarse grid first finds the basin (``_grid_min``).
    """
    views = _as_views(logits)
    labels = labels.long()

    def loss(log_t: float) -> float:
        return _nll_of_log_probs(_view_mean_log_probs(views / math.exp(log_t)), labels)

    if len(views) == 1:
        return math.exp(_golden_min(loss, math.log(low), math.log(high)))
    return math.exp(_grid_min(loss, math.log(low), math.log(high)))


def _as_views(logits: torch.Tensor) -> torch.Tensor:
    """``[V, N, C]`` in float64: an ``[N, C]`` tensor is one view."""
    logits = logits.double()
    return logits.unsqueeze(0) if logits.dim() == 2 else logits


def _view_mean_log_probs(views: torch.Tensor) -> torch.Tensor:
    """Log of the mean over dim -3 (the views) of the softmax, computed stably in log space."""
    count = views.shape[-3]
    return torch.logsumexp(torch.log_softmax(views, dim=-1), dim=-3) - math.log(count)


def _nll_of_log_probs(log_probs: torch.Tensor, labels: torch.Tensor) -> float:
    return float(torch.nn.functional.nll_loss(log_probs, labels))


def _grid_min(f: Callable[[float], float], lo: float, hi: float) -> float:
    """Minimum of ``f`` on ``[lo, hi]`` that need not be unimodal: a 41-point grid finds the
    basin, golden section refines it between the best point's neighbours."""
    grid = [lo + (hi - lo) * i / 40 for i in range(41)]
    best = min(range(len(grid)), key=lambda i: f(grid[i]))
    return _golden_min(f, grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)])


def fit_shared_scale(
    logits: list[torch.Tensor],
    temperatures: list[float],
    weights: list[int],
    labels: torch.Tensor,
) -> float:
    """The factor s that minimises the NLL of the weighted mean of softmax(logits_i / (T_i s)).

    Members calibrated one by one make an under-confident mean: where they disagree, the mean
    spreads probability that each member, alone, rightly kept. One factor shared by all the
    members corrects the mean and keeps their temperatures' ratios. Each member's logits may
    hold test-time views (``[V, N, C]``, as in ``fit_temperature``), averaged within the
    member first. The NLL of a mean is not always unimodal in s, so ``_grid_min`` searches it;
    s = 1 (the members as fitted) wins if nothing is better. Every T_i s stays within
    ``TEMPERATURE_RANGE``.
    """
    stacked = torch.stack([_as_views(lg) for lg in logits])  # [M, V, N, C]
    t = torch.tensor(temperatures, dtype=torch.float64).view(-1, 1, 1, 1)
    labels = labels.long()

    def loss(log_s: float) -> float:
        per_member = _view_mean_log_probs(stacked / (t * math.exp(log_s))).exp()  # [M, N, C]
        mean = weighted_mean(per_member, weights)
        return _nll_of_log_probs(mean.clamp(min=1e-300).log(), labels)

    # Every scaled temperature stays within the range a single fit searches.
    low = math.log(TEMPERATURE_RANGE[0] / min(temperatures))
    high = math.log(TEMPERATURE_RANGE[1] / max(temperatures))
    log_s = _grid_min(loss, low, high)
    return math.exp(log_s) if loss(log_s) < loss(0.0) else 1.0


def one_vs_rest(probs: torch.Tensor, labels: torch.Tensor) -> dict[str, list[float | None]]:
    """Per-class ROC AUC and average precision, one class against the rest.

    A class with no positive (or no negative) image has no ROC curve: its AUC is ``None``
    (JSON null), and so is its average precision when it has no positive.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = labels.numpy()
    p = probs.double().numpy()
    auc: list[float | None] = []
    ap: list[float | None] = []
    for c in range(p.shape[1]):
        positive = y == c
        has_pos, has_neg = bool(positive.any()), bool((~positive).any())
        auc.append(float(roc_auc_score(positive, p[:, c])) if has_pos and has_neg else None)
        ap.append(float(average_precision_score(positive, p[:, c])) if has_pos else None)
    return {"roc_auc": auc, "average_precision": ap}
