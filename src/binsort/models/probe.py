"""``--probe``: fit the new head on frozen features before fine-tuning (linear probing).

A freshly initialised head sends random gradients into a pretrained backbone for the first
steps, which disturbs the features fine-tuning should start from. Fitting the head first, as
a logistic regression on the backbone's features of the training images, and fine-tuning
from there (Kumar et al., 2022, "Fine-Tuning can Distort Pretrained Features and
Underperform Out-of-Distribution") starts the run where a head-only phase would end, for the
price of one pass over the training images without gradients. On TrashNet with binsort's
fine-tuning defaults it did not train faster or better (docs/benchmarks.md), so it is an
option, not a default.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from binsort.errors import BinsortError

# The logistic regression's inverse regularisation strength. Pooled features of a pretrained
# network separate the training images almost perfectly; an unregularised fit would give the
# head huge weights, and fine-tuning would start from over-confident logits.
PROBE_C = 0.1


@dataclass
class ProbeResult:
    images: int
    features: int
    train_accuracy: float  # the fitted head on the images it was fitted on
    seconds: float  # the pass over the training images and the fit


def head_module(net: nn.Module, head: list[str]) -> nn.Linear:
    """The classifier head's module, which ``--probe`` needs to be one Linear layer."""
    if len(head) > 1:
        # A distilled model averages two heads fed different tokens: a regression fitted for
        # one of them would meet the other's random answers in the average.
        names = ", ".join(prefix.removesuffix(".") for prefix in head)
        raise BinsortError(f"--probe fits one classifier head; this model has {len(head)}: {names}")
    name = head[0].removesuffix(".")
    module = net.get_submodule(name)
    if not isinstance(module, nn.Linear):
        raise BinsortError(
            f"--probe needs a Linear classifier head; this model's head ({name}) is a "
            f"{type(module).__name__}"
        )
    return module


@torch.no_grad()
def features(
    model: nn.Module, head: nn.Linear, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The head's inputs and the labels for every batch, with ``model`` in eval mode."""
    seen: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda _m, args, _out: seen.append(args[0].float().cpu()))
    labels = []
    was_training = model.training
    model.eval()
    try:
        for x, y in batches:
            model(x)
            labels.append(y.cpu())
    finally:
        hook.remove()
        model.train(was_training)
    return torch.cat(seen), torch.cat(labels)


def fit_head(head: nn.Linear, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> float:
    """Set ``head`` to the multinomial logistic regression of ``y`` on ``x``; its accuracy."""
    from sklearn.linear_model import LogisticRegression

    present = sorted(set(y.tolist()))
    if len(present) < 2:
        raise BinsortError("--probe needs training images of at least two classes")
    fitted = LogisticRegression(C=PROBE_C, max_iter=1000, fit_intercept=head.bias is not None)
    fitted.fit(x.numpy(), y.numpy())
    weight = torch.zeros(num_classes, x.shape[1])
    # A class absent from the training images keeps a bias far below the others.
    bias = torch.full((num_classes,), -10.0)
    coef = torch.as_tensor(fitted.coef_, dtype=torch.float32)
    intercept = torch.as_tensor(fitted.intercept_, dtype=torch.float32)
    if len(present) == 2:
        # scikit-learn keeps one row for two classes: the second class's logit against the first.
        coef = torch.cat([-coef / 2, coef / 2])
        intercept = torch.cat([-intercept / 2, intercept / 2])
    weight[present], bias[present] = coef, intercept
    with torch.no_grad():
        head.weight.copy_(weight.to(head.weight.dtype))
        if head.bias is not None:
            head.bias.copy_(bias.to(head.bias.dtype))
    return float(fitted.score(x.numpy(), y.numpy()))
