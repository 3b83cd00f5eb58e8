"""The usage report as CSV (formula-safe, a totals line last), JSON (the report itself) or a
self-contained HTML page (bar chart of the top rows, traffic over time, the table with a
totals row; coverage under 100 % flagged on its row)."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

from vpop.core.errors import BadInput
from vpop.reports.charts import bar_chart, human_bytes, series_chart
from vpop.reports.formats import FORMATS, cell, csv_text, html_page

#: How many rows the HTML bar chart shows (the busiest, in + out).
TOP_ROWS = 15

_KEY = {"subscriber": ("subscriber", "isp"), "isp": ("isp",), "lease": ("lease", "version")}

_STYLE = (
    "tr.partial td{background:#fff7ed}td.flag{color:#b45309;font-weight:600}\n"
    "tfoot td{font-weight:600;border-top:2px solid #888}\n"
    "svg.chart{display:block;margin:.5rem 0 1.25rem;max-width:100%;height:auto}\n"
    "p.scope{color:#555}\n"
)


def render_usage(report: Mapping[str, Any], fmt: str) -> str:
    """A usage report (as :func:`vpop.reports.usage.usage_report` gives) as text.

    Args:
        report: The report.
        fmt: ``csv``, ``json`` or ``html``.

    Returns:
        CSV: the header, one line per row, then a ``total`` line (the first column says
        ``total``, the summed columns their sums); a text cell a spreadsheet would run as a
        formula gets a leading ``'``. JSON: the report. HTML: a page that loads nothing.

    Raises:
        BadInput: unknown format.
    """
    columns: Sequence[str] = report["columns"]
    rows: Sequence[Mapping[str, Any]] = report["rows"]
    totals: Mapping[str, Any] = report["totals"]
    if fmt == "csv":
        last = [_total_cell(totals, name, i) for i, name in enumerate(columns)]
        return csv_text(columns, rows, last)
    if fmt == "json":
        return json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    if fmt == "html":
        return _html(report, columns, rows, totals)
    raise BadInput(f"format: {fmt!r} is not one of: {', '.join(FORMATS)}")


def title_of(report: Mapping[str, Any]) -> str:
    """The report's title: what it counts and its window."""
    return f"vpop usage by {report['by']}, {report['from']} to {report['to']}"


def _total_cell(totals: Mapping[str, Any], name: str, index: int) -> Any:
    if index == 0:
        return "total"
    return totals.get(name)


def _row_name(report: Mapping[str, Any], row: Mapping[str, Any]) -> str:
    by = report["by"]
    if by == "subscriber":
        return f"{row['subscriber']} via {row['isp']}"
    if by == "lease":
        return f"lease {row['lease']} v{row['version']} ({row['isp']})"
    return str(row["isp"])


def _html(
    report: Mapping[str, Any],
    columns: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    totals: Mapping[str, Any],
) -> str:
    esc = html.escape
    title = title_of(report)
    scope = []
    if report.get("isp"):
        scope.append(f"ISP {report['isp']}")
    if report.get("subscriber"):
        scope.append(f"subscriber {report['subscriber']}")
    traffic = (totals.get("bytes_in") or 0) + (totals.get("bytes_out") or 0)
    summary = (
        f"{len(rows)} rows; traffic {human_bytes(traffic)}; "
        f"coverage {_pct(totals.get('coverage_pct'))}"
        + (f"; only {', '.join(scope)}" if scope else "")
    )
    busiest = sorted(rows, key=lambda row: -(row["bytes_in"] + row["bytes_out"]))[:TOP_ROWS]
    bars = bar_chart(
        [(_row_name(report, row), row["bytes_in"], row["bytes_out"]) for row in busiest],
        label=f"Traffic of the {len(busiest)} busiest rows (in and out)",
    )
    series = report.get("series") or []
    timeline = series_chart(
        [(point["bucket"], point["bytes_in"], point["bytes_out"]) for point in series],
        label="Traffic over time (in and out per bucket)",
    )
    head = "".join(f'<th scope="col">{esc(name)}</th>' for name in columns)
    body = []
    partial = 0
    for row in rows:
        pct = row.get("coverage_pct")
        low = pct is not None and pct < 100
        partial += low
        cells = []
        for name in columns:
            if name == "coverage_pct" and low:
                cells.append(f'<td class="num flag" title="polls missing">{esc(str(pct))} ⚠</td>')
            else:
                cells.append(cell(row.get(name)))
        opening = '<tr class="partial">' if low else "<tr>"
        body.append(f"{opening}{''.join(cells)}</tr>")
    foot = "".join(cell(_total_cell(totals, name, i)) for i, name in enumerate(columns))
    note = (
        f"<p>{partial} rows have coverage under 100 %: polls were missing, counters reset "
        "or raw samples of an edge were pruned for part of their time in service.</p>\n"
        if partial
        else ""
    )
    empty = "" if rows else "<p>No data in this period.</p>\n"
    markup = (
        f'<p class="scope">{esc(summary)}</p>\n{bars}\n{timeline}\n{note}{empty}'
        f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n"
        + "".join(line + "\n" for line in body)
        + f'</tbody>\n<tfoot><tr class="total">{foot}</tr></tfoot>\n</table>\n'
    )
    return html_page(title, markup, style=_STYLE)


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{value} %"
