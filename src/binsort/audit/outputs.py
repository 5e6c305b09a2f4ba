"""What ``binsort audit --out DIR`` writes: every finding as CSV and JSON, a contact sheet of
the worst suspects (a PNG of thumbnails) and an HTML page that lists every finding with its
thumbnails, self-contained (thumbnails embedded), so it can be mailed or archived.

Photos are only read here (``open_rgb``), never changed.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from PIL import Image, ImageDraw, ImageFont

from binsort.audit.core import COLUMNS, AuditResult, Finding
from binsort.data.images import open_rgb
from binsort.files import replacing

THUMB = 160  # px, the longer side of a thumbnail
SHEET_MAX = 24  # suspects on the contact sheet: the worst ones
SHEET_COLUMNS = 4


def write_csv(findings: Iterable[Finding], out: IO[str]) -> None:
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for f in findings:
        writer.writerow(["" if v is None else v for v in f.as_record().values()])


def write_json(findings: Iterable[Finding], out: IO[str]) -> None:
    json.dump([f.as_record() for f in findings], out, indent=1, ensure_ascii=False)
    out.write("\n")


def write_outputs(result: AuditResult, folder: Path) -> list[Path]:
    """findings.csv, findings.json, suspects.png and audit.html in ``folder`` (made if absent)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, write in (("findings.csv", write_csv), ("findings.json", write_json)):
        with replacing(folder / name) as tmp, tmp.open("w", encoding="utf-8", newline="") as f:
            write(result.findings, f)
        written.append(folder / name)
    sheet = contact_sheet(result.findings)
    if sheet is not None:
        with replacing(folder / "suspects.png") as tmp:
            sheet.save(tmp, "PNG", optimize=True)
        written.append(folder / "suspects.png")
    with replacing(folder / "audit.html") as tmp:
        tmp.write_text(html_page(result), encoding="utf-8")
    written.append(folder / "audit.html")
    return written


def _thumbnail(path: str | None, size: int = THUMB) -> Image.Image | None:
    if path is None:
        return None
    try:
        im = open_rgb(path, min_side=size)
    except Exception:  # noqa: BLE001 - an unreadable photo is shown as a grey box
        return None
    im.thumbnail((size, size))
    return im


def _caption(f: Finding) -> list[str]:
    name = Path(f.path).name
    if f.issue == "label":
        return [f"{name}", f"label {f.label} -> {f.suggested} ({f.score:.2f})"]
    if f.other is not None:
        return [f"{f.issue}: {name} ({f.label})", f"= {Path(f.other).name} ({f.other_label})"]
    return [f"{f.issue}: {name}", f.note[:40]]


def contact_sheet(
    findings: list[Finding], limit: int = SHEET_MAX, size: int = THUMB
) -> Image.Image | None:
    """The worst ``limit`` photo findings as a grid: each photo (with its pair's other photo
    beside it), its label and the suggestion or the pair it is in; None if there are none."""
    chosen = [f for f in findings if f.issue != "small_class"][:limit]
    if not chosen:
        return None
    font = ImageFont.load_default(size=max(10, size // 12))
    line = max(12, size // 10)
    tile_w, tile_h = 2 * size + 12, size + 2 * line + 10
    cols = min(SHEET_COLUMNS, len(chosen))
    rows = -(-len(chosen) // cols)
    sheet = Image.new("RGB", (cols * tile_w, rows * tile_h), "white")
    draw = ImageDraw.Draw(sheet)
    for n, f in enumerate(chosen):
        x, y = (n % cols) * tile_w + 4, (n // cols) * tile_h + 4
        for k, path in enumerate((f.path, f.other)):
            if k and path is None:
                break
            thumb = _thumbnail(path, size)
            if thumb is None:
                draw.rectangle((x, y, x + size - 1, y + size - 1), fill=(200, 200, 200))
            else:
                sheet.paste(thumb, (x + k * (size + 4), y))
        for k, text in enumerate(_caption(f)):
            draw.text((x, y + size + 2 + k * line), text, fill=(160, 0, 0) if not k else "black",
                      font=font)  # fmt: skip
    return sheet


def _data_uri(path: str | None) -> str:
    thumb = _thumbnail(path, 128)
    if thumb is None:
        return ""
    buffer = io.BytesIO()
    thumb.save(buffer, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def html_page(result: AuditResult) -> str:
    """Every finding, one table row each, with thumbnails of the photo and its pair."""
    esc = html.escape
    counts = "".join(f"<li>{esc(k)}: {v}</li>" for k, v in result.by_issue().items() if v)
    rows = []
    for f in result.findings:
        cells = []
        for path in (f.path, f.other):
            uri = _data_uri(path) if path and f.issue != "small_class" else ""
            img = f'<img src="{uri}" alt="">' if uri else ""
            cells.append(f"<td>{img}<br><small>{esc(path or '')}</small></td>")
        rows.append(
            f"<tr><td>{esc(f.issue)}</td>{''.join(cells)}<td>{esc(f.label or '')}</td>"
            f"<td>{esc(f.other_label or f.suggested or '')}</td><td>{f.score:.3f}</td>"
            f"<td>{esc(f.note)}</td></tr>"
        )
    roots = esc(", ".join(map(str, result.roots)))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>binsort audit of {roots}</title>
<style>body{{font-family:sans-serif}}td{{vertical-align:top;padding:4px;border-bottom:1px solid
#ddd}}img{{max-width:128px}}small{{color:#555;word-break:break-all}}</style></head><body>
<h1>binsort audit</h1><p>{roots}: {result.photos} photos; model: {esc(result.model or "none")}
</p><ul>{counts or "<li>nothing found</li>"}</ul>
<table><tr><th>issue</th><th>photo</th><th>other</th><th>label</th><th>other label or
suggested</th><th>score</th><th>note</th></tr>
{chr(10).join(rows)}
</table></body></html>
"""
