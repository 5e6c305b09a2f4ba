"""``binsort.metrics`` against plain counting, scikit-learn and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from binsort.metrics import (
    accuracy,
    accuracy_interval,
    averaged,
    confusion_matrix,
    expected_calibration_error,
    fit_shared_scale,
    fit_temperature,
    nll,
    one_vs_rest,
    paired_difference,
    per_class,
    weighted_mean,
    wilson_interval,
)
from conftest import view_mean_nll


def random_case(seed: int, n: int = 300, classes: int = 6):
    """Labels in 0..3 and predictions 60% right: class 3 is never predicted, class 4 neither
    occurs nor is predicted, class 5 is only predicted."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g)
    guesses = torch.tensor([0, 1, 2, 5])[torch.randint(0, 4, (n,), generator=g)]
    preds = torch.where(torch.rand(n, generator=g) < 0.6, labels, guesses)
    preds[preds == 3] = 0
    return labels, preds, classes


def plain_scores(labels: list[int], preds: list[int], classes: int):
    """Confusion matrix, per-class and averaged figures by counting, with 0/0 = 0."""
    cm = [[0] * classes for _ in range(classes)]
    for y, p in zip(labels, preds, strict=True):
        cm[y][p] += 1
    rows = {"precision": [], "recall": [], "f1": [], "support": []}
    for c in range(classes):
        tp = cm[c][c]
        predicted = sum(cm[r][c] for r in range(classes))
        support = sum(cm[c])
        p = tp / predicted if predicted else 0.0
        r = tp / support if support else 0.0
        rows["precision"].append(p)
        rows["recall"].append(r)
        rows["f1"].append(2 * p * r / (p + r) if p + r else 0.0)
        rows["support"].append(support)
    seen = sorted(set(labels) | set(preds))
    avg = {
        "macro": {
            k: sum(rows[k][c] for c in seen) / len(seen) for k in ("precision", "recall", "f1")
        },
        "weighted": {
            k: sum(rows[k][c] * rows["support"][c] for c in range(classes)) / len(labels)
            for k in ("precision", "recall", "f1")
        },
    }
    return cm, rows, avg


@pytest.mark.parametrize("seed", range(5))
def test_classification_scores_match_counting(seed: int) -> None:
    labels, preds, c = random_case(seed)
    cm, rows, avg = plain_scores(labels.tolist(), preds.tolist(), c)
    assert 3 not in preds and 4 not in labels and 4 not in preds and 5 not in labels
    assert confusion_matrix(labels, preds, c).tolist() == cm
    assert accuracy(labels, preds) == pytest.approx(sum(cm[i][i] for i in range(c)) / len(labels))
    ours = per_class(labels, preds, c)
    assert ours["support"] == rows["support"]
    for key in ("precision", "recall", "f1"):
        assert ours[key] == pytest.approx(rows[key], abs=1e-6)
    assert ours["precision"][3] == 0.0  # never predicted: 0/0 counts as 0
    for average in ("weighted", "macro"):
        assert averaged(labels, preds, average) == pytest.approx(avg[average], abs=1e-6)


def plain_ece(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """Guo et al.'s ECE by looping: bin b holds confidences in (b/bins, (b+1)/bins]."""
    members: list[list[tuple[float, bool]]] = [[] for _ in range(bins)]
    for row, y in zip(probs.tolist(), labels.tolist(), strict=True):
        conf = max(row)
        b = min(b for b in range(bins) if conf <= (b + 1) / bins)
        members[b].append((conf, row.index(conf) == y))
    total = 0.0
    for m in members:
        if m:
            gap = sum(c for c, _ in m) / len(m) - sum(ok for _, ok in m) / len(m)
            total += len(m) / len(labels) * abs(gap)
    return total


@pytest.mark.parametrize("seed", range(5))
def test_ece_matches_binning_by_hand(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(3 * torch.randn(400, 5, generator=g), 1)
    labels = torch.randint(0, 5, (400,), generator=g)
    assert expected_calibration_error(probs, labels) == pytest.approx(
        plain_ece(probs, labels), abs=1e-6
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_ece_on_bin_edges(dtype: torch.dtype) -> None:
    # Top probabilities exactly k/15 (as that dtype rounds it), 1.0 included.
    top = torch.tensor([k / 15 for k in range(8, 16)] * 2, dtype=dtype)
    probs = torch.stack([top, 1 - top], 1)
    labels = torch.tensor([0, 1] * 8)
    assert expected_calibration_error(probs, labels) == pytest.approx(
        plain_ece(probs, labels), abs=1e-6
    )


def test_torchmetrics_ece_bins_differently() -> None:
    """Why ours stays: torchmetrics gives confidence 1.0 a bin of its own, apart from 0.95."""
    from torchmetrics.functional.classification import multiclass_calibration_error

    probs = torch.tensor([[1.0, 0.0]] * 5 + [[0.95, 0.05]] * 5)
    labels = torch.tensor([0, 0, 0, 0, 1, 0, 0, 0, 0, 0])
    library = multiclass_calibration_error(probs, labels, num_classes=2, n_bins=15, norm="l1")
    assert expected_calibration_error(probs, labels) == pytest.approx(plain_ece(probs, labels))
    assert expected_calibration_error(probs, labels) == pytest.approx(0.075)
    assert float(library) == pytest.approx(0.125)


def test_ece_on_a_constructed_case() -> None:
    # Two images at confidence 0.9 (one right): gap 0.4; two at 0.6, both right: gap 0.4.
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    labels = torch.tensor([0, 1, 0, 0])
    assert expected_calibration_error(probs, labels) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)
    # Confidence 0.75 and three right out of four: perfectly calibrated.
    probs = torch.tensor([[0.75, 0.25]] * 4)
    assert expected_calibration_error(probs, torch.tensor([0, 0, 0, 1])) == pytest.approx(0.0)


def test_nll_by_hand() -> None:
    probs = torch.tensor([[0.5, 0.5], [0.2, 0.8]])
    assert nll(probs, torch.tensor([0, 1])) == pytest.approx(-(math.log(0.5) + math.log(0.8)) / 2)


def overconfident(n: int = 2000, classes: int = 4, right: float = 0.7, scale: float = 10.0):
    """Logits of a model that is right 70% of the time and says so with ~100% confidence."""
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, classes, (n,), generator=g)
    wrong = (labels + torch.randint(1, classes, (n,), generator=g)) % classes
    preds = torch.where(torch.rand(n, generator=g) < right, labels, wrong)
    logits = torch.nn.functional.one_hot(preds, classes).float()
    logits += 0.05 * torch.randn(n, classes, generator=g)  # a little spread in confidence
    return logits * scale, labels


def test_temperature_scaling_lowers_ece_of_an_overconfident_model() -> None:
    logits, labels = overconfident()
    before = expected_calibration_error(torch.softmax(logits, 1), labels)
    t = fit_temperature(logits, labels)
    after = expected_calibration_error(torch.softmax(logits / t, 1), labels)
    assert t > 2
    assert before > 0.2
    assert after < 0.05
    assert nll(torch.softmax(logits / t, 1), labels) < nll(torch.softmax(logits, 1), labels)


def test_fit_temperature_recovers_a_known_temperature() -> None:
    g = torch.Generator().manual_seed(1)
    z = 2 * torch.randn(5000, 3, generator=g)
    labels = torch.multinomial(torch.softmax(z, 1), 1, generator=g).squeeze(1)
    assert fit_temperature(3 * z, labels) == pytest.approx(3.0, rel=0.1)
    # Log-probabilities give the same answer as logits (a per-row constant apart).
    assert fit_temperature(torch.log_softmax(3 * z, 1), labels) == pytest.approx(
        fit_temperature(3 * z, labels), rel=1e-4
    )


def test_fit_temperature_fits_the_mean_of_tta_views() -> None:
    """With views (``--tta flip``), T is fitted for the mean of their softmaxes, which is what
    is predicted; identical views are one view."""
    g = torch.Generator().manual_seed(2)
    z = 2 * torch.randn(3000, 4, generator=g)
    labels = torch.multinomial(torch.softmax(z, 1), 1, generator=g).squeeze(1)
    one = 3 * z + torch.randn(z.shape, generator=g)
    assert fit_temperature(torch.stack([one] * 3), labels) == pytest.approx(
        fit_temperature(one, labels), rel=1e-4
    )
    views = torch.stack([3 * z + 1.5 * torch.randn(z.shape, generator=g) for _ in range(3)])
    on_views = fit_temperature(views, labels)
    on_one_view = fit_temperature(views[0], labels)
    # Views that disagree make an under-confident mean, which a lower T sharpens.
    assert on_views < on_one_view
    assert view_mean_nll(views, on_views, labels) < view_mean_nll(views, on_one_view, labels)


def test_shared_scale_with_views_matches_one_view_when_they_agree() -> None:
    g = torch.Generator().manual_seed(4)
    z = 2 * torch.randn(2000, 3, generator=g)
    labels = torch.multinomial(torch.softmax(z, 1), 1, generator=g).squeeze(1)
    logits = [z + 1.5 * torch.randn(z.shape, generator=g) for _ in range(3)]
    temps = [fit_temperature(lg, labels) for lg in logits]
    views = [torch.stack([lg, lg]) for lg in logits]
    assert fit_shared_scale(views, temps, [1, 2, 1], labels) == pytest.approx(
        fit_shared_scale(logits, temps, [1, 2, 1], labels), rel=1e-4
    )


def ensemble_nll(logits: list[torch.Tensor], temps: list[float], labels: torch.Tensor) -> float:
    mean = torch.stack([torch.softmax(lg / t, 1) for lg, t in zip(logits, temps, strict=True)])
    return nll(mean.mean(0), labels)


def test_shared_scale_sharpens_the_mean_of_members_calibrated_alone() -> None:
    """Five members see the true logits through independent noise. Each calibrated alone,
    their mean is under-confident; one shared factor below 1 fixes it."""
    g = torch.Generator().manual_seed(3)
    z = 2 * torch.randn(4000, 4, generator=g)
    labels = torch.multinomial(torch.softmax(z, 1), 1, generator=g).squeeze(1)
    logits = [z + 1.5 * torch.randn(z.shape, generator=g) for _ in range(5)]
    temps = [fit_temperature(lg, labels) for lg in logits]

    scale = fit_shared_scale(logits, temps, [1] * 5, labels)

    assert scale < 0.9
    scaled = [t * scale for t in temps]
    assert ensemble_nll(logits, scaled, labels) < ensemble_nll(logits, temps, labels) - 0.01
    # One member at its own temperature needs no factor.
    assert fit_shared_scale(logits[:1], temps[:1], [1], labels) == pytest.approx(1.0, abs=0.01)


def test_one_vs_rest_matches_sklearn_and_is_null_without_positives() -> None:
    g = torch.Generator().manual_seed(2)
    probs = torch.softmax(torch.randn(60, 3, generator=g), 1)
    labels = torch.randint(0, 2, (60,), generator=g)  # class 2 has no image
    out = one_vs_rest(probs, labels)
    for c in (0, 1):
        positive = (labels == c).numpy()
        assert out["roc_auc"][c] == pytest.approx(skm.roc_auc_score(positive, probs[:, c]))
        assert out["average_precision"][c] == pytest.approx(
            skm.average_precision_score(positive, probs[:, c])
        )
    assert out["roc_auc"][2] is None and out["average_precision"][2] is None
    assert np.isfinite(out["roc_auc"][0])


def test_weighted_mean_counts_a_member_its_weight_times() -> None:
    probs = torch.softmax(torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(0)), 2)
    repeated = torch.stack([probs[0], probs[0], probs[1], probs[2]]).mean(0)
    assert torch.allclose(weighted_mean(probs, [2, 1, 1]), repeated, atol=1e-7)
    # A stacked tensor and a list of members give the same mean, and rows still sum to 1.
    assert torch.equal(weighted_mean(list(probs), [2, 1, 1]), weighted_mean(probs, [2, 1, 1]))
    assert torch.allclose(weighted_mean(probs, [1, 1, 1]).sum(1), torch.ones(5))


def test_accuracy_interval_is_wilsons():
    """95 of 100 right: the Wilson interval by its formula, not symmetric about 0.95, and
    inside [0, 1] even for a perfect score (where mean +- 1.96 SE collapses to a point)."""
    labels = torch.zeros(100, dtype=torch.long)
    preds = torch.cat([torch.zeros(95), torch.ones(5)]).long()
    z, n, p = 1.959963984540054, 100, 0.95
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low, high = accuracy_interval(labels, preds)
    assert (low, high) == pytest.approx((centre - half, centre + half), abs=1e-9)
    assert high - 0.95 < 0.95 - low
    low, high = accuracy_interval(labels, labels)
    assert high == pytest.approx(1.0) and 0.95 < low < 1.0
    # From counts alone (training's validation, cross-validation's pooled figure): the same.
    assert wilson_interval(95, 100) == accuracy_interval(labels, preds)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_paired_difference_counts_only_disagreements():
    """Photos both models get right (or both wrong) do not count; McNemar's exact p for 0
    against 3 disagreements is 2 * 0.5**3, for 5 against 5 it is 1."""
    labels = torch.zeros(20, dtype=torch.long)
    reference = torch.tensor([0] * 12 + [1] * 8)  # right on the first 12
    other = torch.tensor([0] * 9 + [1] * 3 + [1] * 8)  # loses 3 of them, gains none
    assert paired_difference(labels, reference, other) == {
        "gains": 0,
        "losses": 3,
        "p_value": pytest.approx(0.25),
    }
    other = torch.tensor([0] * 7 + [1] * 5 + [0] * 5 + [1] * 3)
    d = paired_difference(labels, reference, other)
    assert (d["gains"], d["losses"], d["p_value"]) == (5, 5, pytest.approx(1.0))
    assert paired_difference(labels, reference, reference)["p_value"] == 1.0
