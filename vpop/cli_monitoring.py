"""The ``vpop lease`` and ``vpop report`` commands (attached to ``vpop`` by :mod:`vpop.cli`).

Usage::

    vpop lease create --isp isp-b --router rc1 --committed-mbps 100 --price-minor 50000 \\
        [--peak-pct 125 --under-pct 10 --over-pct 100 --hysteresis-pct 5 \\
         --event-seconds 60 --ends-at 2026-01-01T00:00:00Z]
    vpop lease list [--isp isp-b] [--json]
    vpop lease end 7
    vpop report qos --from 2025-06-01 --to 2025-07-01 [--format csv|json|html] [--output FILE]
    vpop report utilisation --from 2025-06-01T00:00:00Z --to 2025-06-02T00:00:00Z ...

Exit codes as for every ``vpop`` command: 0 success, 1 a failure that is not the caller's
(the queue or the database cannot be reached), 2 bad input. Every error is one line on
stderr, ``error: <code>: <what to fix>`` (codes in ``docs/errors.md``).

Like :mod:`vpop.cli`, the module imports the database, leasing and reports only inside the
commands, so attaching these groups costs other ``vpop`` commands nothing at start-up.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import click

from vpop.errors import BadInput, NotFound, VpopError

# kept equal to vpop.reports.FORMATS by a test (not imported: see the module docstring)
FORMATS = ("csv", "json", "html")


class CommandError(click.ClickException):
    """A failure that is not the caller's, reported on one line: exit code 1."""

    def __init__(self, code: str, message: str) -> None:
        """Build the error.

        Args:
            code: The stable code (``docs/errors.md``).
            message: What went wrong and what to do.
        """
        super().__init__(message)
        self.code = code

    def show(self, file: IO[Any] | None = None) -> None:
        """Print the one line to stderr (or ``file``)."""
        line = f"error: {self.code}: {self.format_message()}"
        if file is None:
            click.echo(line, err=True)
        else:
            click.echo(line, file=file)


class InputError(CommandError):
    """Bad input on the command line, reported on one line: exit code 2."""

    exit_code = 2


def bad_input(message: str, code: str = "VPOP-400") -> InputError:
    """A one-line usage error (exit 2)."""
    return InputError(code, message)


class OneLineCommand(click.Command):
    """A command whose usage errors are one line (and exit 2), not click's usage block."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Parse as click does; turn a usage error into one line naming the fix."""
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as err:
            raise bad_input(f"{err.format_message()} (see `{ctx.command_path} --help`)") from err


class OneLineGroup(click.Group):
    """A group of :class:`OneLineCommand` that names an unknown subcommand on one line."""

    command_class = OneLineCommand

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """Find the subcommand; an unknown one is a one-line usage error."""
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as err:
            raise bad_input(f"{err.format_message()} (see `{ctx.command_path} --help`)") from err


class IsoTime(click.ParamType[datetime, Any]):
    """An ISO 8601 time with a UTC offset, or a date (midnight UTC); yields aware UTC."""

    name = "ISO-8601"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        """Parse ``value`` with :func:`vpop.reports.parse_time`."""
        from vpop.reports import as_utc, parse_time

        if isinstance(value, datetime):
            return as_utc(value)
        field = param.opts[0] if param is not None and param.opts else "time"
        try:
            return parse_time(value, field)
        except BadInput as err:
            raise bad_input(err.message, err.code) from err


ISO_TIME = IsoTime()


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turn vpop's errors into one-line :class:`CommandError` s with the right exit code.

    Errors in what the caller typed (bad value, unknown object, busy uplink) exit 2.
    """
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from vpop.leasing import LeaseConflict

    try:
        yield
    except (BadInput, NotFound, LeaseConflict) as err:
        raise InputError(err.code, err.message) from err
    except VpopError as err:
        raise CommandError(err.code, err.message) from err
    except (OperationalError, ProgrammingError) as err:
        reason = str(err.orig).splitlines()[0] if err.orig is not None else type(err).__name__
        raise CommandError(
            "VPOP-CFG",
            f"the database is not reachable or not migrated ({reason}); "
            "check VPOP_DATABASE_URL and run `vpop db upgrade`",
        ) from err


def lease_enqueuer() -> Callable[[int], None]:
    """``vpop.queue.enqueue_lease``, imported only now (opening the queue is a side effect).

    Raises:
        CommandError: this installation's queue cannot provision leases.
    """
    try:
        from vpop.queue import enqueue_lease
    except ImportError as err:
        raise CommandError(
            "VPOP-CFG",
            f"leases cannot be queued: vpop.queue has no enqueue_lease ({err}); "
            "upgrade vpop on this host",
        ) from err
    return enqueue_lease


def _actor() -> str:
    return "cli:" + (os.environ.get("SUDO_USER") or os.environ.get("USER") or "root")


def _lease_line(view: dict[str, Any]) -> str:
    ends = view["ends_at"] or "-"
    return (
        f"lease {view['lease']}: {view['isp']} on {view['router']} uplink {view['uplink']}, "
        f"{view['committed_mbps']} Mbit/s (peak {view['peak_pct']}%), "
        f"{view['price_minor']} {view['currency']} minor units, {view['status']}, "
        f"{view['starts_at']} .. {ends}"
    )


def _queue(lease_id: int, enqueue: Callable[[int], None], what: str) -> None:
    try:
        enqueue(lease_id)
    except Exception as err:
        raise CommandError(
            "VPOP-000",
            f"lease {lease_id} is recorded but its {what} could not be queued "
            f"({type(err).__name__}: {err}); check VPOP_QUEUE_URL",
        ) from err


@click.group(cls=OneLineGroup)
def lease() -> None:
    """Leases: an ISP's uplink on a router at a committed rate, shaped and watched."""


@lease.command("create")
@click.option("--isp", required=True, help="The ISP the uplink is leased to.")
@click.option("--router", required=True, help="The router (inventory name).")
@click.option("--committed-mbps", required=True, type=int, help="Committed rate, Mbit/s.")
@click.option("--price-minor", required=True, type=int, help="Price in minor units (cents).")
@click.option("--peak-pct", default=125, show_default=True, type=int, help="Shaped peak, %.")
@click.option("--under-pct", default=10, show_default=True, type=int, help="Under below, %.")
@click.option("--over-pct", default=100, show_default=True, type=int, help="Over above, %.")
@click.option("--hysteresis-pct", default=5, show_default=True, type=int)
@click.option("--event-seconds", default=60, show_default=True, type=int)
@click.option("--ends-at", type=ISO_TIME, default=None, help="Planned end (ISO 8601).")
def lease_create(
    isp: str,
    router: str,
    committed_mbps: int,
    price_minor: int,
    peak_pct: int,
    under_pct: int,
    over_pct: int,
    hysteresis_pct: int,
    event_seconds: int,
    ends_at: datetime | None,
) -> None:
    """Lease ISP's uplink on ROUTER and queue its provisioning; prints the lease."""
    from vpop import validate
    from vpop.db import utcnow
    from vpop.leasing import create_lease, lease_view

    enqueue = lease_enqueuer()  # before writing: a lease nobody provisions helps no one
    with reported_errors():
        created = create_lease(
            isp=validate.name(isp, "--isp"),
            router=validate.name(router, "--router"),
            committed_mbps=committed_mbps,
            price_minor=price_minor,
            peak_pct=peak_pct,
            under_pct=under_pct,
            over_pct=over_pct,
            hysteresis_pct=hysteresis_pct,
            event_seconds=event_seconds,
            starts_at=utcnow(),  # so that an ends_at in the past is refused
            ends_at=ends_at,
            actor=_actor(),
        )
    click.echo(_lease_line(lease_view(created)))
    _queue(created.id, enqueue, "provisioning")


@lease.command("list")
@click.option("--isp", default=None, help="Only this ISP's leases.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def lease_list(isp: str | None, as_json: bool) -> None:
    """List leases by id."""
    from sqlalchemy import select

    from vpop import validate
    from vpop.db import Lease, session_scope
    from vpop.leasing import lease_view

    with reported_errors():
        stmt = select(Lease).order_by(Lease.id)
        if isp is not None:
            stmt = stmt.where(Lease.isp_id == validate.name(isp, "--isp"))
        with session_scope() as session:
            views = [lease_view(row) for row in session.scalars(stmt)]
    if as_json:
        click.echo(json.dumps(views, indent=2))
    elif not views:
        click.echo("no leases" + (f" for {isp}" if isp else ""))
    else:
        for view in views:
            click.echo(_lease_line(view))


@lease.command("end")
@click.argument("lease_id", metavar="ID", type=click.IntRange(1, 2**63 - 1))
def lease_end(lease_id: int) -> None:
    """End lease ID: it is `ending` until the worker removes its shaping."""
    from vpop.leasing import end_lease, lease_view

    enqueue = lease_enqueuer()
    with reported_errors():
        ended = end_lease(lease_id, _actor())
    click.echo(_lease_line(lease_view(ended)))
    _queue(ended.id, enqueue, "removal")


@click.group(cls=OneLineGroup)
def report() -> None:
    """Reports over a period: ISP QoS, lease utilisation (CSV, JSON or HTML)."""


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
    from vpop.reports import render

    text = render(rows, fmt, columns=columns, title=title)
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as err:
        raise bad_input(f"--output: cannot write {output}: {err.strerror or err}") from err
    click.echo(f"wrote {len(rows)} rows to {output}")


@report.command("qos")
@_period_options
def report_qos(start: datetime, end: datetime, fmt: str, output: Path | None) -> None:
    """QoS per ISP and router: samples, latency avg/min/max/p95, jitter, loss, throughput."""
    from vpop.reports import QOS_COLUMNS, iso, qos_report

    with reported_errors():
        rows = qos_report(None, start, end)
    _emit(rows, QOS_COLUMNS, f"vpop QoS report, {iso(start)} to {iso(end)}", fmt, output)


@report.command("utilisation")
@_period_options
def report_utilisation(start: datetime, end: datetime, fmt: str, output: Path | None) -> None:
    """Utilisation per lease: rates, 95th percentile, under/over events and their time."""
    from vpop.reports import UTILISATION_COLUMNS, iso, utilisation_report

    with reported_errors():
        rows = utilisation_report(None, start, end)
    title = f"vpop utilisation report, {iso(start)} to {iso(end)}"
    _emit(rows, UTILISATION_COLUMNS, title, fmt, output)
