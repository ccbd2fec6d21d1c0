"""A self-contained HTML page of figures and tables: PNGs embedded, no external assets."""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from matplotlib.figure import Figure

from jacscope._io import atomic_path


class Table(NamedTuple):
    """A table of the report: a caption, column headers and rows of cells."""

    caption: str
    headers: list[str]
    rows: list[list[Any]]


class Section(NamedTuple):
    """A section of the report: a title, a paragraph, figures (PNG bytes) and tables."""

    title: str
    text: str = ""
    figures: Sequence[bytes] = ()
    tables: Sequence[Table] = ()


def figure_png(fig: Figure, dpi: int = 110) -> bytes:
    """The PNG encoding of a matplotlib figure."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def format_cell(value: Any) -> str:
    """A table cell: floats to 4 significant digits, `None` as a dash, rest as text."""
    if value is None:
        return "&ndash;"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return html.escape(str(value))
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(format_cell(v) for v in value)
    return html.escape(str(value))


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
caption { text-align: left; font-weight: bold; padding: 0.3em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; display: block; margin: 0.8em 0; }
p { line-height: 1.45; }
"""


def _table_html(table: Table) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in table.headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{format_cell(cell)}</td>" for cell in row) + "</tr>"
        for row in table.rows
    )
    caption = f"<caption>{html.escape(table.caption)}</caption>" if table.caption else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_page(title: str, sections: Sequence[Section], subtitle: str = "") -> str:
    """The HTML text of a report: each section's title, text, figures and tables.

    Figures are embedded as base64 PNG data URIs, so the page is readable offline
    and on its own.
    """
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if subtitle:
        parts.append(f"<p>{html.escape(subtitle)}</p>")
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.text:
            parts.append(f"<p>{html.escape(section.text)}</p>")
        for png in section.figures:
            data = base64.b64encode(png).decode("ascii")
            parts.append(
                f'<img alt="{html.escape(section.title)}" src="data:image/png;base64,{data}">'
            )
        parts.extend(_table_html(table) for table in section.tables)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_html(path: str | os.PathLike, text: str) -> Path:
    """Write an HTML page to `path` atomically; return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
