"""``binsort ensemble``: pack checkpoints (or a greedy selection of them) into one file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from binsort.cli._common import (
    Batch,
    ReplaceOutput,
    Workers,
    allow_overlap_option,
    console,
    err_console,
    print_warnings,
    root_option,
    split_option,
    user_errors,
)
from binsort.config import TTA_MODES


def ensemble(
    checkpoints: Annotated[
        list[Path],
        typer.Argument(
            help="Checkpoints (.ckpt) or ensemble files to combine.",
            metavar="MODEL",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="The ensemble file to write.",
            show_default=False,
            rich_help_panel="Output",
        ),
    ],
    force: ReplaceOutput = False,
    select: Annotated[
        Literal["none", "greedy"],
        typer.Option(
            help="none: pack every model; greedy: keep the members that raise validation "
            "accuracy (needs --root or --split).",
            rich_help_panel="Selection",
        ),
    ] = "none",
    root: Annotated[
        list[Path] | None,
        root_option("Validation ImageFolder for --select greedy and --calibrate."),
    ] = None,
    split: Annotated[Path | None, split_option("Use the validation list")] = None,
    calibrate: Annotated[
        bool,
        typer.Option(
            help="Fit each model's temperature on the validation images and store it.",
            rich_help_panel="Selection",
        ),
    ] = False,
    input_size: Annotated[
        int | None,
        typer.Option(
            help="Feed every member images of this size instead of its training size. "
            "Models trained on random crops often score higher slightly above it; pick the "
            "size on validation images (docs/evaluate.md).",
            show_default=False,
            rich_help_panel="Selection",
        ),
    ] = None,
    max_steps: Annotated[
        int | None,
        typer.Option(
            help="Most greedy steps.",
            show_default="twice the number of models",
            rich_help_panel="Selection",
        ),
    ] = None,
    patience: Annotated[
        int,
        typer.Option(
            help="Stop greedy selection after this many steps without gain.",
            rich_help_panel="Selection",
        ),
    ] = 3,
    tta: Annotated[
        Literal[TTA_MODES],  # type: ignore[valid-type]
        typer.Option(
            help="Test-time augmentation you will predict with: greedy selection scores "
            "with it, and --calibrate fits for it and records it for binsort export.",
            rich_help_panel="Selection",
        ),
    ] = "none",
    soup: Annotated[
        bool,
        typer.Option(
            help="Average the models' weights into one network (a model soup) instead of "
            "averaging their answers: one network's cost per photo. For runs of one "
            "architecture from the same starting weights and split (docs/evaluate.md).",
            rich_help_panel="Selection",
        ),
    ] = False,
    allow_overlap: Annotated[bool, allow_overlap_option("Use validation")] = False,
    batch: Batch = 32,
    workers: Workers = 0,
) -> None:
    """Combine models into one ensemble file that evaluate (and predict) load like a checkpoint.

    The ensemble's answer is the mean of its members' softmax. With --select greedy, members
    are added one at a time (repeats allowed, which weights them) while validation accuracy
    improves, and the best prefix is kept (Caruana et al. 2004). With --soup, the models'
    weights are averaged into one network instead (a model soup). The file loads with
    torch.load(weights_only=True); it is written to a temporary name and renamed.

    Example: binsort ensemble runs/*/version_0/checkpoints/last.ckpt -o ens.pt
    --select greedy --split runs/a/version_0

    Exit codes: 0 written; 1 an error stopped the command (output exists, bad checkpoint,
    class mismatch, no validation images); 2 a bad option.
    """
    from rich.table import Table

    from binsort.ensemble import build_ensemble
    from binsort.reporting import steps_table

    with user_errors():
        result = build_ensemble(
            checkpoints,
            output,
            force=force,
            select=select,
            root=root,
            split=split,
            calibrate=calibrate,
            input_size=input_size,
            max_steps=max_steps,
            patience=patience,
            tta=tta,
            allow_overlap=allow_overlap,
            batch_size=batch,
            workers=workers,
            soup=soup,
        )
    print_warnings(result.warnings)
    if result.selection is not None:
        console.print(steps_table(result.selection))
    table = Table(title=f"Members of {output}", title_justify="left")
    for name in ("member", "architecture", "input", "weight", "temperature"):
        table.add_column(name)
    for c in result.members:
        size = f"{c.member.input_size} px"
        table.add_row(c.name, c.member.arch, size, str(c.weight), f"{c.member.temperature:.3f}")
    console.print(table)
    if result.scale is not None:
        console.print(
            f"temperatures: each member's own fit x {result.scale:.3f}, the factor that "
            f"calibrates their mean{'' if tta == 'none' else f', fitted for --tta {tta}'}",
            highlight=False,
        )
    if result.skipped:
        err_console.print(f"[yellow]left out {len(result.skipped)} unusable file(s)[/]")
    total = sum(c.weight for c in result.members)
    console.print(
        f"wrote {output}: {total} member(s), {len(result.members)} distinct", highlight=False
    )
