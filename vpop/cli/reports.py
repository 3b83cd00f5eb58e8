"""``vpop report``: usage, QoS and utilisation reports over a period, as CSV, JSON or HTML,
built by :mod:`vpop.reports.service` (the same figures the API and the NOC pages show).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from vpop.cli.common import FORMATS, ISO_TIME, OneLineGroup, bad_input, reported_errors


@click.group(cls=OneLineGroup)
def report() -> None:
    """Reports over a period: usage, ISP QoS, lease utilisation (CSV, JSON or HTML)."""


def _period_options(command: Callable[..., None]) -> Callable[..., None]:
    command = click.option(
        "--output",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Write to FILE instead of stdout.",
    )(command)
    command = click.option(
        "--format", "fmt", type=click.Choice(FORMATS), default="csv", show_default=True
    )(command)
    command = click.option(
        "--to", "end", required=True, type=ISO_TIME, help="Period end (exclusive)."
    )(command)
    return click.option(
        "--from", "start", required=True, type=ISO_TIME, help="Period start (inclusive)."
    )(command)


def _emit(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    title: str,
    fmt: str,
    output: Path | None,
) -> None:
    from vpop.reports.service import render

    _write(render(rows, fmt, columns=columns, title=title), len(rows), output)


def _write(text: str, rows: int, output: Path | None) -> None:
    """Print ``text``, or write it to ``output`` and say how many rows went there."""
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as err:
        raise bad_input(f"--output: cannot write {output}: {err.strerror or err}") from err
    click.echo(f"wrote {rows} rows to {output}")


@report.command("qos")
@_period_options
def report_qos(start: datetime, end: datetime, fmt: str, output: Path | None) -> None:
    """QoS per ISP and router: samples, latency avg/min/max/p95, jitter, loss, throughput."""
    from vpop.core.time import iso
    from vpop.reports.service import QOS_COLUMNS, qos_report

    with reported_errors():
        rows = qos_report(None, start, end)
    _emit(rows, QOS_COLUMNS, f"vpop QoS report, {iso(start)} to {iso(end)}", fmt, output)


@report.command("utilisation")
@_period_options
def report_utilisation(start: datetime, end: datetime, fmt: str, output: Path | None) -> None:
    """Utilisation per lease: rates, 95th percentile, under/over events and their time."""
    from vpop.core.time import iso
    from vpop.reports.service import UTILISATION_COLUMNS, utilisation_report

    with reported_errors():
        rows = utilisation_report(None, start, end)
    title = f"vpop utilisation report, {iso(start)} to {iso(end)}"
    _emit(rows, UTILISATION_COLUMNS, title, fmt, output)


@report.command("usage")
@click.option(
    "--by",
    required=True,
    help="subscriber, isp or lease: one row per (subscriber, ISP), per ISP or per lease term.",
)
@click.option("--isp", default=None, help="Only this ISP's subscribers and leases.")
@click.option("--subscriber", default=None, help="Only this subscriber (by subscriber or isp).")
@_period_options
def report_usage(
    by: str,
    isp: str | None,
    subscriber: str | None,
    start: datetime,
    end: datetime,
    fmt: str,
    output: Path | None,
) -> None:
    """Usage per subscriber, ISP or lease: bytes, packets, time in service and coverage."""
    from vpop.reports.service import render_usage, usage_report

    with reported_errors():
        result = usage_report(None, start, end, by=by, isp=isp, subscriber=subscriber)
        text = render_usage(result, fmt)
    _write(text, len(result["rows"]), output)
