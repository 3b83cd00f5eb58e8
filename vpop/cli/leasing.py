"""Leases from the command line: ``vpop lease create|list|change|versions|end``.

``create`` takes what the API's ``POST /api/v1/leases`` takes, and ``change`` what
``POST /api/v1/leases/{id}/versions`` takes, with the same ranges and defaults: each integer
option is a :class:`LeaseRange` over the leasing domain's table
(:data:`vpop.leasing.service.LEASE_RANGES`), read when the command runs or shows its help,
not when ``vpop`` attaches its groups (that must import no database code).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import click

from vpop.cli.common import (
    ISO_TIME,
    CommandError,
    OneLineGroup,
    cli_actor,
    echo_views,
    reported_errors,
)

F = TypeVar("F", bound=Callable[..., Any])


class LeaseRange(click.IntRange):
    """``click.IntRange`` over one lease field's bounds in the leasing domain's table.

    The bounds are looked up on first use, so the table stays the one statement of the
    ranges (the API's request model and ``create_lease`` read it too).
    """

    def __init__(self, field: str) -> None:
        """The range of the lease field ``field`` (``committed_mbps``...)."""
        super().__init__()
        self.field = field

    def resolve(self) -> LeaseRange:
        """Fill ``min`` and ``max`` from :data:`vpop.leasing.service.LEASE_RANGES`."""
        from vpop.leasing.service import LEASE_RANGES

        bounds = LEASE_RANGES[self.field]
        self.min, self.max = bounds.low, bounds.high
        return self

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """An integer within the field's range, or click's one-line usage error."""
        return super(LeaseRange, self.resolve()).convert(value, param, ctx)

    def _describe_range(self) -> str:
        """``low<=x<=high``, for ``--help``."""
        return super(LeaseRange, self.resolve())._describe_range()


class LeaseOption(click.Option):
    """An integer lease option whose default is the leasing domain's, read on first use."""

    def get_default(self, ctx: click.Context, call: bool = True) -> Any:
        """The field's default in :data:`vpop.leasing.service.LEASE_DEFAULTS` (None: required)."""
        from vpop.leasing.service import LEASE_DEFAULTS

        return LEASE_DEFAULTS.get(self.name or "")


def lease_option(field: str, text: str, *, required: bool = False) -> Callable[[F], F]:
    """The ``--committed-mbps``-style option of the integer lease field ``field``."""
    return click.option(
        "--" + field.replace("_", "-"),
        field,
        cls=LeaseOption,
        type=LeaseRange(field),
        required=required,
        show_default=not required,
        help=text,
    )


def lease_enqueuer() -> Callable[[int], None]:
    """``vpop.queue.enqueue_lease``, imported only now (opening the queue is a side effect).

    Raises:
        CommandError: this installation's queue cannot provision leases.
    """
    try:
        from vpop.jobs.queue import enqueue_lease
    except ImportError as err:
        raise CommandError(
            "VPOP-CFG",
            f"leases cannot be queued: vpop.queue has no enqueue_lease ({err}); "
            "upgrade vpop on this host",
        ) from err
    return enqueue_lease


def _lease_line(view: Mapping[str, Any]) -> str:
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
@lease_option("committed_mbps", "Committed rate, Mbit/s.", required=True)
@lease_option("price_minor", "Price in minor units (cents).", required=True)
@lease_option("peak_pct", "Shaped peak, %.")
@lease_option("under_pct", "Under below, %.")
@lease_option("over_pct", "Over above, %.")
@lease_option("hysteresis_pct", "Event hysteresis, %.")
@lease_option("event_seconds", "Seconds before an event opens or closes.")
@click.option(
    "--starts-at",
    type=ISO_TIME,
    default=None,
    help="Start (ISO 8601; default now). Later than now: scheduled, shaped when it starts.",
)
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
    starts_at: datetime | None,
    ends_at: datetime | None,
) -> None:
    """Lease ISP's uplink on ROUTER and queue its provisioning (or, for a later start,
    leave it scheduled: `vpop serve` starts it on time); prints the lease."""
    from vpop.core import validate
    from vpop.leasing.service import create_lease, lease_view

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
            starts_at=starts_at,
            ends_at=ends_at,
            actor=cli_actor(),
        )
    click.echo(_lease_line(lease_view(created)))
    if created.status != "scheduled":
        _queue(created.id, enqueue, "provisioning")


@lease.command("list")
@click.option("--isp", default=None, help="Only this ISP's leases.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def lease_list(isp: str | None, as_json: bool) -> None:
    """List leases by id."""
    from sqlalchemy import select

    from vpop.core import validate
    from vpop.core.db import session_scope
    from vpop.leasing.service import Lease, lease_view

    with reported_errors():
        stmt = select(Lease).order_by(Lease.id)
        if isp is not None:
            stmt = stmt.where(Lease.isp_id == validate.name(isp, "--isp"))
        with session_scope() as session:
            views = [lease_view(row) for row in session.scalars(stmt)]
    echo_views(
        views, as_json=as_json, empty="no leases" + (f" for {isp}" if isp else ""), line=_lease_line
    )


def change_option(field: str, text: str) -> Callable[[F], F]:
    """The optional ``--committed-mbps``-style option of ``change``: absent keeps the value."""
    return click.option(
        "--" + field.replace("_", "-"), field, type=LeaseRange(field), default=None, help=text
    )


def _version_line(view: Mapping[str, Any]) -> str:
    until = view["valid_to"] or "now"
    ends = view["ends_at"] or "-"
    return (
        f"lease {view['lease']} v{view['version']} ({view['reason']} by {view['actor']}): "
        f"{view['committed_mbps']} Mbit/s (peak {view['peak_pct']}%), "
        f"{view['price_minor']} {view['currency']} minor units, planned end {ends}; "
        f"in force {view['valid_from']} .. {until}"
    )


@lease.command("change")
@click.argument("lease_id", metavar="ID", type=click.IntRange(1, 2**63 - 1))
@change_option("committed_mbps", "New committed rate, Mbit/s.")
@change_option("peak_pct", "New shaped peak, %.")
@change_option("price_minor", "New price in minor units (cents).")
@click.option("--ends-at", type=ISO_TIME, default=None, help="New planned end (ISO 8601).")
def lease_change(
    lease_id: int,
    committed_mbps: int | None,
    peak_pct: int | None,
    price_minor: int | None,
    ends_at: datetime | None,
) -> None:
    """Renew lease ID (--ends-at) or change its terms from now; prints its new version.

    A new committed rate or peak reshapes a shaped lease (queued for the worker).
    """
    from vpop.leasing.service import change_lease, list_versions

    enqueue = lease_enqueuer()
    with reported_errors():
        changed = change_lease(
            lease_id,
            actor=cli_actor(),
            committed_mbps=committed_mbps,
            peak_pct=peak_pct,
            price_minor=price_minor,
            ends_at=ends_at,
        )
        versions = list_versions(lease_id)
    click.echo(_version_line(versions[-1]))
    if changed.status == "provisioning" and (committed_mbps, peak_pct) != (None, None):
        _queue(changed.id, enqueue, "reshaping")


@lease.command("versions")
@click.argument("lease_id", metavar="ID", type=click.IntRange(1, 2**63 - 1))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def lease_versions(lease_id: int, as_json: bool) -> None:
    """List lease ID's versions (its terms over time), oldest first."""
    from vpop.leasing.service import list_versions

    with reported_errors():
        views = list_versions(lease_id)
    echo_views(
        views, as_json=as_json, empty=f"lease {lease_id} has no versions", line=_version_line
    )


@lease.command("end")
@click.argument("lease_id", metavar="ID", type=click.IntRange(1, 2**63 - 1))
def lease_end(lease_id: int) -> None:
    """End lease ID: it is `ending` until the worker removes its shaping."""
    from vpop.leasing.service import end_lease, lease_view

    enqueue = lease_enqueuer()
    with reported_errors():
        ended = end_lease(lease_id, cli_actor())
    click.echo(_lease_line(lease_view(ended)))
    if ended.status == "ending":  # a scheduled lease was never shaped: it ended at once
        _queue(ended.id, enqueue, "removal")
