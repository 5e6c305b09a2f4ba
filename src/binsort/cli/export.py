"""``binsort export``: a checkpoint or an ensemble file as one verified ONNX file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from binsort.cli._common import ReplaceOutput, console, print_warnings, user_errors
from binsort.config import NOT_WASTE_RATE


def export(
    model: Annotated[
        Path,
        typer.Argument(help="A checkpoint (.ckpt) or an ensemble file.", show_default=False),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="The .onnx file to write.",
            show_default=False,
            rich_help_panel="Output",
        ),
    ],
    force: ReplaceOutput = False,
    half: Annotated[
        bool,
        typer.Option(
            help="Store the weights as float16: half the file size; the graph still "
            "computes in float32. Checked against PyTorch to 1e-2 instead of 1e-4.",
            rich_help_panel="Weights",
        ),
    ] = False,
    int8: Annotated[
        bool,
        typer.Option(
            help="Store the weights as int8 with a scale per output channel (small kernels "
            "such as depthwise ones as float16): about a quarter of the file size; the graph "
            "still computes in float32. Checked to 5e-2.",
            rich_help_panel="Weights",
        ),
    ] = False,
    tta: Annotated[
        Literal["none", "flip"] | None,
        typer.Option(
            help="Test-time augmentation to record in the file: binsort predict uses it with "
            "this file unless --tta says otherwise (flip: three views, a third of the speed). "
            "Default: the one the model was calibrated for (ensemble --calibrate --tta), else "
            "none.",
            rich_help_panel="Weights",
            show_default=False,
        ),
    ] = None,
    not_waste: Annotated[
        Path | None,
        typer.Option(
            "--not-waste",
            help="The image folder the model was trained on. Adds the ood_score output: how "
            "unlike the model's classes a photo looks, with a threshold that flags at most "
            "--not-waste-rate of the model's validation photos; above it, predict and serve "
            "answer 'not recognised' instead of a bin. Needs the model's recorded split.",
            metavar="ROOT",
            rich_help_panel="Not waste",
            show_default=False,
        ),
    ] = None,
    not_waste_rate: Annotated[
        float,
        typer.Option(
            help="The share of the model's validation photos the threshold may flag: lower "
            "flags fewer photos of waste, and fewer of anything else.",
            metavar="RATE",
            rich_help_panel="Not waste",
        ),
    ] = NOT_WASTE_RATE,
) -> None:
    """Export a model to ONNX, for prediction with onnxruntime instead of PyTorch.

    The file takes [0, 1] images (normalisation is inside) and returns the class
    probabilities; an ensemble becomes one graph that averages its members. Class names
    and input sizes travel in the file's metadata, so binsort predict --model FILE.onnx
    needs nothing else, and never imports torch. Before the file is kept, ONNX Runtime
    and PyTorch classify the same random batch and must agree to 1e-4.

    Exit codes: 0 written; 1 an error stopped the command (output exists, not a binsort
    model, the exported graph disagrees with PyTorch, a photo for --not-waste is missing).

    Example: binsort export runs/x/version_0/checkpoints/last.ckpt -o model.onnx
    """
    with user_errors():
        from binsort.export import export_onnx

        result = export_onnx(
            model,
            output,
            force=force,
            half=half,
            int8=int8,
            tta=tta,
            not_waste=not_waste,
            not_waste_rate=not_waste_rate,
        )
    sizes = ", ".join(f"{s} px" for s in result.input_sizes)
    console.print(
        f"wrote {result.path} ({result.bytes / 1e6:.1f} MB; {result.members} "
        f"member{'s' if result.members > 1 else ''}, input {sizes}, "
        f"{len(result.classes)} classes"
        f"{'' if result.weights == 'float32' else f', {result.weights} weights'}"
        f"{'' if result.tta == 'none' else f', predicts with --tta {result.tta}'}); "
        f"largest difference from PyTorch "
        f"{result.max_difference:.1e}",
        highlight=False,
        soft_wrap=True,
    )
    if result.ood is not None:
        console.print(
            f"not recognised above {result.ood.threshold:.4f}: flags {result.ood.flagged} of "
            f"{result.ood.validation} validation photos",
            highlight=False,
            soft_wrap=True,
        )
    print_warnings(result.warnings)
