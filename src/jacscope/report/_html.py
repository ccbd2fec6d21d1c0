"""A self-contained HTML page of findings, figures and tables: PNGs embedded, no external assets.

The page opens with its title, a line on the run, a table of contents linking every
section and the first section (the findings, a bulleted list of sentences). Each
figure is embedded as a PNG and, where the report has a folder, also written there as
`figures/<name>.png` and `figures/<name>.svg`, linked under it. Tables of more than
`FOLD_ROWS` rows are folded into a `<details>` element that names their length.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import matplotlib as mpl
from matplotlib.figure import Figure

from jacscope._io import atomic_path

FOLD_ROWS = 12
"""Tables with more rows than this are folded (collapsed, their length in the summary)."""

FIGURES = "figures"
"""The folder, beside report.html, that holds each figure as PNG and SVG."""


class Table(NamedTuple):
    """A table of the report: a caption, column headers and rows of cells."""

    caption: str
    headers: list[str]
    rows: list[list[Any]]


class Plot(NamedTuple):
    """A figure of the report: its PNG (embedded in the page), a caption, and the files
    it was written to, as paths relative to the page (none for a page without folder)."""

    png: bytes
    caption: str = ""
    files: Sequence[str] = ()


class Section(NamedTuple):
    """A section of the report: a title, a paragraph, a bulleted list of sentences
    (`points`), figures (`Plot`s, or PNG bytes) and tables; `anchor` is the id of its
    heading (default: `slug(title)`), the target of its entry in the table of contents."""

    title: str
    text: str = ""
    figures: Sequence[Plot | bytes] = ()
    tables: Sequence[Table] = ()
    points: Sequence[str] = ()
    anchor: str = ""


def slug(title: str) -> str:
    """The id of a section titled `title`: lower case, runs of other characters as `-`."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"


def figure_png(fig: Figure, dpi: int = 110) -> bytes:
    """The PNG encoding of a matplotlib figure."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def figure_svg(fig: Figure) -> bytes:
    """The SVG encoding of a matplotlib figure, the same bytes for the same figure: no
    date, fixed element ids, text kept as text."""
    buffer = io.BytesIO()
    with mpl.rc_context({"svg.hashsalt": "jacscope", "svg.fonttype": "none"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()


def _write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically, leaving the file untouched if it holds them."""
    if path.is_file() and path.read_bytes() == data:
        return
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def save_figure(
    fig: Figure, folder: str | os.PathLike | None, name: str, caption: str = ""
) -> Plot:
    """A `Plot` of `fig`, written as `folder/figures/<name>.png` and `.svg` (atomically;
    a file already holding the same figure is left as it is, so its time stamp marks
    when the figure last changed). With `folder=None` the figure is only embedded."""
    png = figure_png(fig)
    if folder is None:
        return Plot(png, caption)
    files = []
    for suffix, data in (("png", png), ("svg", figure_svg(fig))):
        relative = f"{FIGURES}/{name}.{suffix}"
        _write_bytes(Path(folder) / relative, data)
        files.append(relative)
    return Plot(png, caption, tuple(files))


def human_seconds(seconds: float | None) -> str:
    """A duration: `"0.42 s"`, `"57.2 s"`, `"2 min 01 s"`, `"1 h 05 min"`."""
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.3g} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def format_cell(value: Any) -> str:
    """A table cell: floats to 4 significant digits, `None` as a dash, rest as text."""
    if value is None:
        return "&ndash;"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return html.escape(str(value))
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list | tuple):
        return ", ".join(format_cell(v) for v in value) if value else "&ndash;"
    return html.escape(str(value))


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222;
       padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; margin-top: 1.6em; }
nav.contents { font-size: 0.9em; margin: 0.6em 0 1.2em; }
nav.contents ol { display: flex; flex-wrap: wrap; gap: 0.2em 1.2em; padding: 0; margin: 0;
                  list-style: none; counter-reset: item; }
nav.contents li { counter-increment: item; }
nav.contents li::before { content: counter(item) ". "; color: #777; }
ul.points { line-height: 1.5; padding-left: 1.2em; }
ul.points li { margin: 0.25em 0; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
caption { text-align: left; font-weight: bold; padding: 0.3em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
details { margin: 0.8em 0; } summary { cursor: pointer; font-weight: bold; font-size: 0.9em; }
figure { margin: 0.8em 0; } img { max-width: 100%; display: block; }
figcaption { font-size: 0.85em; color: #444; line-height: 1.4; max-width: 900px; }
p { line-height: 1.45; } p.run { color: #444; margin-top: 0; }
"""


def _table_html(table: Table) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in table.headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{format_cell(cell)}</td>" for cell in row) + "</tr>"
        for row in table.rows
    )
    folded = len(table.rows) > FOLD_ROWS
    caption = (
        f"<caption>{html.escape(table.caption)}</caption>" if table.caption and not folded else ""
    )
    text = f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if not folded:
        return text
    title = f"{table.caption}: " if table.caption else ""
    summary = html.escape(f"{title}{len(table.rows):,} rows (click to show)")
    return f"<details><summary>{summary}</summary>{text}</details>"


def _figure_html(plot: Plot | bytes, alt: str) -> str:
    if not isinstance(plot, Plot):
        plot = Plot(plot)
    data = base64.b64encode(plot.png).decode("ascii")
    image = f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
    notes = [html.escape(plot.caption)] if plot.caption else []
    if plot.files:
        links = " · ".join(
            f'<a href="{html.escape(path)}">{html.escape(Path(path).suffix[1:].upper())}</a>'
            for path in plot.files
        )
        notes.append(f"Files: {links}")
    caption = f"<figcaption>{' '.join(notes)}</figcaption>" if notes else ""
    return f"<figure>{image}{caption}</figure>"


def _anchors(sections: Sequence[Section]) -> list[str]:
    """The id of each section, made unique by a numeric suffix."""
    seen: dict[str, int] = {}
    anchors = []
    for section in sections:
        base = section.anchor or slug(section.title)
        seen[base] = seen.get(base, 0) + 1
        anchors.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return anchors


def html_page(title: str, sections: Sequence[Section], subtitle: str = "") -> str:
    """The HTML text of a report: the title, `subtitle`, a table of contents, then each
    section's heading, text, points, figures and tables.

    Figures are embedded as base64 PNG data URIs, so the page is readable offline
    and on its own.
    """
    anchors = _anchors(sections)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if subtitle:
        parts.append(f'<p class="run">{html.escape(subtitle)}</p>')
    entries = "".join(
        f'<li><a href="#{anchor}">{html.escape(section.title)}</a></li>'
        for anchor, section in zip(anchors, sections, strict=True)
    )
    parts.append(f'<nav class="contents" aria-label="Contents"><ol>{entries}</ol></nav>')
    for anchor, section in zip(anchors, sections, strict=True):
        parts.append(f'<section><h2 id="{anchor}">{html.escape(section.title)}</h2>')
        if section.text:
            parts.append(f"<p>{html.escape(section.text)}</p>")
        if section.points:
            items = "".join(f"<li>{html.escape(point)}</li>" for point in section.points)
            parts.append(f'<ul class="points">{items}</ul>')
        parts.extend(_figure_html(plot, section.title) for plot in section.figures)
        parts.extend(_table_html(table) for table in section.tables)
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_html(path: str | os.PathLike, text: str) -> Path:
    """Write an HTML page to `path` atomically; return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
