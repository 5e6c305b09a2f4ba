"""Tables and figures for ``evaluate`` and ``ensemble``: built and returned, never printed.

Rich tables are printed by the CLI; matplotlib figures are saved by ``write_outputs``.
Figures are plain ``matplotlib.figure.Figure`` objects on an Agg canvas (no pyplot), so they
work without a display, keep no global state, and matplotlib is imported only when drawing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from rich import box
from rich.markup import escape
from rich.table import Table

from binsort.errors import BinsortError
from binsort.files import write_atomically

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from PIL import Image

    from binsort.results import Evaluation, Scores, Selection

MISTAKE = "#d62728"  # matplotlib's red: mistakes in the sample grid
SAMPLE_GRID = 24  # images in samples.png, the highest losses first
FIGURES = (
    "confusion_matrix.png",
    "confusion_matrix_normalized.png",
    "roc.png",
    "precision_recall.png",
    "samples.png",
)
OUTPUTS = ("metrics.json", *FIGURES)  # what write_outputs writes into its folder


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def results_table(result: Evaluation, wide: bool = True) -> Table:
    """One row per model (and the ensemble last): GarbageML's table plus calibration and speed.

    The architecture goes under the model's name rather than into a column of its own, and the
    numbers never wrap. Not ``wide`` (80 columns) leaves out precision and recall, which the
    classification report and metrics.json give.
    """
    from binsort.data.folder import describe_roots

    avg = result.average
    scores = "prec(ision), recall and F1" if wide else "F1"
    title = (
        f"{len(result.images.samples)} images ({result.source}: "
        f"{describe_roots(result.images)}), TTA {result.tta}. In %: acc(uracy); {scores}, "
        f"{avg} average over classes; ECE, "
        "expected calibration error"
        + (" (pre: before the temperature T)" if result.calibrated else "")
    )
    table = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
    )
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("model", overflow="fold", min_width=12)
    numbers = ["params", "acc", "prec", "recall", "F1"] if wide else ["params", "acc", "F1"]
    if result.calibrated:
        numbers += ["T", "ECE pre"]
    for name in [*numbers, "ECE", "img/s"]:
        table.add_column(name, justify="right", no_wrap=True)

    def row(index: str, s: Scores) -> list[str]:
        arch = s.arch + (f" (x{s.weight})" if s.weight > 1 else "")
        model = f"{escape(s.name)}\n[dim]{escape(arch)}[/]"
        cells = [index, model, f"{s.parameters / 1e6:.2f}M", _pct(s.accuracy)]
        if wide:
            cells += [_pct(s.precision[avg]), _pct(s.recall[avg])]
        cells.append(_pct(s.f1[avg]))
        if result.calibrated:
            temp = "-" if s.temperature is None else f"{s.temperature:.3f}"
            if s is result.ensemble and s.temperature is not None:
                temp = "x" + temp  # a factor on the members' own temperatures
            cells += [temp, _pct(s.ece_before)]
        return cells + [_pct(s.ece), f"{s.images_per_second:.1f}"]

    for i, s in enumerate(result.rows):
        table.add_row(*row(str(i), s))
    if result.ensemble is not None:
        table.add_section()
        table.add_row(*row("", result.ensemble), style="bold")
    return table


def uncertainty_text(result: Evaluation) -> str:
    """How far to trust the table: each accuracy's 95 % interval and, with two or more models,
    each one against the first, photo by photo."""
    scored = [(str(i), s) for i, s in enumerate(result.rows)]
    if result.ensemble is not None:
        scored.append(("ensemble", result.ensemble))
    intervals = ", ".join(
        f"{label} {_pct(s.accuracy_interval[0])}-{_pct(s.accuracy_interval[1])}"
        for label, s in scored
        if s.accuracy_interval is not None
    )
    lines = [f"Accuracy, 95 % interval (Wilson), in %: {intervals}"]
    for label, s in scored:
        d = s.against_first
        if d is not None:
            lines.append(
                f"  {label} vs 0: gains {d['gains']}, loses {d['losses']} images "
                f"(McNemar p = {d['p_value']:.2f})"
            )
    return "\n".join(lines)


def steps_table(selection: Selection) -> Table:
    """Greedy ensemble selection, one row per step; the kept steps are marked."""
    table = Table(title="Greedy selection (validation set)", title_justify="left")
    table.add_column("step", justify="right")
    table.add_column("added")
    table.add_column("accuracy %", justify="right")
    table.add_column("NLL", justify="right")
    table.add_column("kept")
    for i, step in enumerate(selection.steps):
        kept = "yes" if i < selection.kept else ""
        table.add_row(str(i + 1), step.name, _pct(step.accuracy), f"{step.nll:.4f}", kept)
    return table


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def confusion_figure(cm: torch.Tensor, classes: list[str], normalize: bool, title: str) -> Figure:
    """The confusion matrix (rows: true class), as counts or as row fractions (recall)."""
    values = cm.double()
    if normalize:
        values = values / values.sum(1, keepdim=True).clamp(min=1)
    size = 2.0 + 0.6 * len(classes)
    figure = _figure(size + 1.0, size)
    ax = figure.add_subplot()
    image = ax.imshow(values.numpy(), cmap="Blues", vmin=0)
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    top = float(values.max()) if values.numel() else 0.0
    for (r, c), v in zip(
        [(r, c) for r in range(len(classes)) for c in range(len(classes))],
        values.flatten().tolist(),
        strict=True,
    ):
        text = f"{v:.2f}" if normalize else f"{int(v)}"
        colour = "white" if top and v > top / 2 else "black"
        ax.text(c, r, text, ha="center", va="center", color=colour, fontsize=8)
    ticks = range(len(classes))
    ax.set_xticks(ticks, classes, rotation=45, ha="right")
    ax.set_yticks(ticks, classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title + (" (row-normalised)" if normalize else ""))
    return figure


def _curves(
    probs: torch.Tensor, labels: torch.Tensor, classes: list[str], title: str, kind: str
) -> Figure:
    from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

    figure = _figure(6.5, 5.5)
    ax = figure.add_subplot()
    y, p = labels.numpy(), probs.double().numpy()
    for c, name in enumerate(classes):
        positive = y == c
        if not positive.any() or (kind == "roc" and positive.all()):
            continue  # no curve without positives (and, for ROC, negatives)
        if kind == "roc":
            fpr, tpr, _ = roc_curve(positive, p[:, c])
            ax.plot(fpr, tpr, label=f"{name} (AUC {auc(fpr, tpr):.3f})")
        else:
            precision, recall, _ = precision_recall_curve(positive, p[:, c])
            ap = average_precision_score(positive, p[:, c])
            ax.step(recall, precision, where="post", label=f"{name} (AP {ap:.3f})")
    if kind == "roc":
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title(f"ROC, one class vs rest: {title}")
    else:
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title(f"Precision-recall, one class vs rest: {title}")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right" if kind == "roc" else "lower left", fontsize=8)
    return figure


def roc_figure(probs: torch.Tensor, labels: torch.Tensor, classes: list[str], title: str) -> Figure:
    return _curves(probs, labels, classes, title, "roc")


def pr_figure(probs: torch.Tensor, labels: torch.Tensor, classes: list[str], title: str) -> Figure:
    return _curves(probs, labels, classes, title, "pr")


def samples_figure(
    shown: list[tuple[Image.Image, int, list[float]]], classes: list[str], title: str
) -> Figure:
    """A grid of (image, true class, probabilities), in the order given: each titled with the
    predicted class and its probability, and the true class's; mistakes framed in red."""
    cols = min(6, max(1, len(shown)))
    rows = max(1, math.ceil(len(shown) / cols))
    figure = _figure(2.6 * cols, 3.0 * rows + 0.5)
    figure.suptitle(f"{title}: highest loss first; predicted p / true p (mistakes in red)")
    for i, (image, true, probs) in enumerate(shown):
        ax = figure.add_subplot(rows, cols, i + 1)
        ax.imshow(image)
        ax.set_xticks([])
        ax.set_yticks([])
        pred = max(range(len(probs)), key=probs.__getitem__)
        wrong = true != pred
        colour = MISTAKE if wrong else "black"
        text = f"{classes[pred]} {probs[pred]:.2f}"
        if wrong:
            text += f"\ntrue: {classes[true]} {probs[true]:.2f}"
        ax.set_title(text, color=colour, fontsize=9)
        for spine in ax.spines.values():
            spine.set_edgecolor(colour if wrong else "lightgrey")
            spine.set_linewidth(3 if wrong else 1)
    return figure


def top_losses(probs: torch.Tensor, labels: torch.Tensor, count: int) -> list[int]:
    """The ``count`` images with the highest loss (-log p of the true class): the most
    confidently wrong first, then the least sure right ones, as fastai's plot_top_losses."""
    loss = -probs.gather(1, labels[:, None]).squeeze(1).clamp_min(1e-12).log()
    return loss.argsort(descending=True, stable=True)[:count].tolist()


def check_outputs(out: str | Path, force: bool) -> None:
    """Refuse, before any work, to overwrite an earlier evaluation's files without ``force``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BinsortError(f"--out {out} is a file, not a folder")
    taken = [name for name in OUTPUTS if (out / name).exists()]
    if taken and not force:
        raise BinsortError(f"{out / taken[0]} exists; use --force to replace it or another --out")


def write_outputs(result: Evaluation, out: str | Path) -> list[Path]:
    """metrics.json, confusion matrices, ROC and precision-recall curves, a sample grid."""
    from binsort.data.images import open_rgb

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    metrics = out / "metrics.json"
    write_atomically(metrics, json.dumps(result.to_json(), indent=2, allow_nan=False))
    written.append(metrics)

    scores = result.report_scores
    labels = torch.tensor(result.images.labels)
    probs = result.report_probs
    cm = torch.tensor(scores.confusion_matrix)
    title = f"{scores.name}: {len(labels)} images"
    images = result.images
    shown = [
        (
            open_rgb(images.file(images.samples[i][0]), min_side=256),
            int(labels[i]),
            probs[i].tolist(),
        )
        for i in top_losses(probs, labels, SAMPLE_GRID)
    ]
    figures = {
        "confusion_matrix.png": confusion_figure(cm, result.classes, False, title),
        "confusion_matrix_normalized.png": confusion_figure(cm, result.classes, True, title),
        "roc.png": roc_figure(probs, labels, result.classes, title),
        "precision_recall.png": pr_figure(probs, labels, result.classes, title),
        "samples.png": samples_figure(shown, result.classes, title),
    }
    for name, figure in figures.items():
        figure.savefig(out / name, dpi=110, bbox_inches="tight")
        written.append(out / name)
    return written


def training_figure(rows: list[dict]) -> Figure:
    """A run's curves per epoch: losses, accuracies and the learning rate (results.png)."""
    fig = _figure(12, 3.6)
    epochs = [r["epoch"] for r in rows]
    panels = [
        ("loss", ("train_loss", "val_loss")),
        ("accuracy", ("train_accuracy", "val_accuracy")),
        ("learning rate", ("lr",)),
    ]
    for i, (title, keys) in enumerate(panels, 1):
        ax = fig.add_subplot(1, 3, i)
        for key in keys:
            points = [(e, r.get(key)) for e, r in zip(epochs, rows, strict=True)]
            points = [(e, v) for e, v in points if v is not None]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", markersize=3, label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if len(keys) > 1:
            ax.legend()
    fig.tight_layout()
    return fig
