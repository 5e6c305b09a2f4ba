"""``binsort.metrics`` against scikit-learn and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from binsort.metrics import (
    accuracy,
    averaged,
    confusion_matrix,
    expected_calibration_error,
    fit_shared_scale,
    fit_temperature,
    nll,
    one_vs_rest,
    per_class,
)


def random_case(seed: int = 0, n: int = 200, classes: int = 5):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes - 1, (n,), generator=g)  # the last class never occurs
    preds = torch.where(torch.rand(n, generator=g) < 0.6, labels, torch.randint(0, 3, (n,)))
    return labels, preds, classes


def test_confusion_matrix_and_accuracy_match_sklearn() -> None:
    labels, preds, c = random_case()
    cm = confusion_matrix(labels, preds, c)
    assert cm.tolist() == skm.confusion_matrix(labels, preds, labels=range(c)).tolist()
    assert accuracy(labels, preds) == pytest.approx(skm.accuracy_score(labels, preds))


@pytest.mark.parametrize("average", ["weighted", "macro"])
def test_averages_match_sklearn(average: str) -> None:
    labels, preds, c = random_case(seed=1)
    ours = averaged(confusion_matrix(labels, preds, c), average)
    p, r, f, _ = skm.precision_recall_fscore_support(
        labels, preds, average=average, zero_division=0
    )
    assert ours == pytest.approx({"precision": p, "recall": r, "f1": f})


def test_per_class_matches_sklearn_with_zero_division() -> None:
    labels = torch.tensor([0, 0, 1, 1, 2])
    preds = torch.tensor([0, 1, 1, 1, 1])  # class 2 is never predicted: precision 0/0 = 0
    scores = per_class(confusion_matrix(labels, preds, 3))
    p, r, f, s = skm.precision_recall_fscore_support(labels, preds, zero_division=0)
    for key, ref in (("precision", p), ("recall", r), ("f1", f), ("support", s)):
        assert scores[key].tolist() == pytest.approx(ref.tolist())


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
