"""The rich tables ``binsort audit`` prints: counts per issue and class, and the worst
findings. Built and returned here; only the CLI prints them."""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape
from rich.table import Table

from binsort.audit.core import AuditResult, Finding


def counts_table(result: AuditResult) -> Table:
    table = Table(title="findings per issue")
    table.add_column("issue")
    table.add_column("count", justify="right")
    for issue, n in result.by_issue().items():
        table.add_row(issue, str(n))
    table.add_section()
    for cls, n in result.counts.items():
        small = " (too few to validate)" if cls in result.small_classes else ""
        table.add_row(escape(f"photos of {cls}{small}"), str(n))
    return table


def findings_table(findings: list[Finding], wide: bool) -> Table:
    table = Table(title=f"the worst {len(findings)} findings")
    table.add_column("issue", no_wrap=True)
    table.add_column("photo", overflow="fold")
    table.add_column("other", overflow="fold")
    table.add_column("label")
    table.add_column("suggested / other's")
    table.add_column("score", justify="right")
    if wide:
        table.add_column("note", overflow="fold")
    for f in findings:
        name = (lambda p: p if not p else Path(p).name) if not wide else (lambda p: p)
        cells = [f.issue, escape(name(f.path) or ""), escape(name(f.other) or "")]
        cells += [escape(f.label or ""), escape(f.suggested or f.other_label or "")]
        cells.append(f"{f.score:.2f}")
        if wide:
            cells.append(escape(f.note))
        table.add_row(*cells)
    return table
