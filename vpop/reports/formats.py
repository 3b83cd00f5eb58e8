"""What every report's rendering shares: formula-safe CSV cells and the HTML page frame
(a Content-Security-Policy that loads nothing from outside, escaped title, inline styles)."""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

FORMATS = ("csv", "json", "html")

# a spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV injection")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}\n"
    "table{border-collapse:collapse;font-size:.9rem}\n"
    "th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}\n"
    "th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}\n"
)


def csv_cell(value: Any) -> Any:
    """A value as a CSV cell: None empty, a text a spreadsheet would run gets a leading '."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def csv_text(
    names: Sequence[str],
    rows: Iterable[Mapping[str, Any]],
    last: Sequence[Any] | None = None,
) -> str:
    """A header line, one formula-safe line per row (its ``names`` columns, in order), and
    an optional ``last`` line (a totals line) as given."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(names)
    for row in rows:
        writer.writerow([csv_cell(row.get(name)) for name in names])
    if last is not None:
        writer.writerow([csv_cell(value) for value in last])
    return buffer.getvalue()


def html_page(title: str, body: str, *, style: str = "") -> str:
    """A self-contained HTML page: ``body`` (already escaped markup) under an escaped title.

    The Content-Security-Policy allows nothing but inline styles: no scripts, no images, no
    fonts or sheets from anywhere (inline SVG is markup, not a load).
    """
    esc = html.escape
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n"
        f"<style>\n{_STYLE}{style}</style>\n</head>\n<body>\n"
        f"<h1>{esc(title)}</h1>\n{body}</body>\n</html>\n"
    )


def cell(value: Any) -> str:
    """A table cell: numbers right-aligned, every value escaped, None empty."""
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    shown = html.escape("" if value is None else str(value))
    return f'<td class="num">{shown}</td>' if numeric else f"<td>{shown}</td>"
