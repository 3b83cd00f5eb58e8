"""The reports domain's entry: usage per subscriber, ISP and lease (with coverage), QoS per ISP
and router, and lease utilisation (95th percentile, seconds under and over), read from rollups
and raw samples, rendered as CSV (formula-safe cells), JSON or a self-contained HTML page.
Used by ``vpop report``, the API and the NOC pages; everything outside the package imports
from here.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

from vpop.core.errors import BadInput
from vpop.reports import schemas
from vpop.reports.charts import nice_ceiling
from vpop.reports.formats import FORMATS, cell, csv_cell, csv_text, html_page
from vpop.reports.qos_utilisation import (
    QOS_COLUMNS,
    UTILISATION_COLUMNS,
    clipped_seconds,
    qos_report,
    utilisation_report,
)
from vpop.reports.rollup_read import P95_SOURCES
from vpop.reports.usage import (
    TOTAL_COLUMNS,
    USAGE_BY,
    USAGE_COLUMNS,
    coverage_pct,
    render_usage,
    usage_report,
)

__all__ = [
    "FORMATS",
    "P95_SOURCES",
    "QOS_COLUMNS",
    "TOTAL_COLUMNS",
    "USAGE_BY",
    "USAGE_COLUMNS",
    "UTILISATION_COLUMNS",
    "clipped_seconds",
    "nice_ceiling",
    "coverage_pct",
    "csv_cell",
    "qos_report",
    "render",
    "render_usage",
    "schemas",
    "usage_report",
    "utilisation_report",
]


def render(
    rows: Sequence[Mapping[str, Any]],
    fmt: str,
    *,
    columns: Sequence[str] | None = None,
    title: str = "vpop report",
) -> str:
    """A report as ``csv``, ``json`` or a self-contained ``html`` page.

    Args:
        rows: The report's rows (as :func:`qos_report` or :func:`utilisation_report` give).
        fmt: ``csv``, ``json`` or ``html``.
        columns: The columns, in order (default: the first row's keys); with no rows, the
            CSV header and the HTML table head still show them.
        title: The HTML page's title and heading.

    Returns:
        The text. CSV has a header line; a text cell that a spreadsheet would run as a
        formula gets a leading ``'``. HTML escapes every value and loads nothing external.

    Raises:
        BadInput: unknown format.
    """
    names = list(columns) if columns is not None else (list(rows[0]) if rows else [])
    if fmt == "csv":
        return csv_text(names, rows)
    if fmt == "json":
        picked = [{name: row.get(name) for name in names} for row in rows]
        return json.dumps(picked, indent=2, ensure_ascii=False) + "\n"
    if fmt == "html":
        return _html_page(rows, names, title)
    raise BadInput(f"format: {fmt!r} is not one of: {', '.join(FORMATS)}")


def _html_page(rows: Sequence[Mapping[str, Any]], names: Sequence[str], title: str) -> str:
    esc = html.escape
    head = "".join(f'<th scope="col">{esc(name)}</th>' for name in names)
    body = [f"<tr>{''.join(cell(row.get(name)) for name in names)}</tr>" for row in rows]
    empty = "" if rows else "<p>No data in this period.</p>\n"
    return html_page(
        title,
        f"{empty}<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n"
        + "".join(line + "\n" for line in body)
        + "</tbody>\n</table>\n",
    )
