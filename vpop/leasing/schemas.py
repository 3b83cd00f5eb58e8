"""The leasing domain's JSON bodies and rules: the lease request, leases, utilisation, events.

:class:`LeaseRequest` is the one statement of what a lease accepts: its fields, which are
required, each integer's range (a :class:`~vpop.core.schemas.Bounds`) and default.
:data:`LEASE_RANGES` and :data:`LEASE_DEFAULTS` are read off it, and
:func:`~vpop.leasing.leases.create_lease`, the API and ``vpop lease create`` all use them, so
the three cannot disagree; :class:`LeaseChangeRequest` holds a change of terms to the same
ranges. The response models describe what
:func:`~vpop.leasing.leases.lease_view` and the API's ``event_view`` return; the views build
plain dicts, and the API's tests hold every response against these models' JSON schemas.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, get_args

from pydantic import Field

from vpop.core import validate
from vpop.core.schemas import NAME_PATTERN, Bounds, Canonical, Currency, Request, Strict
from vpop.core.time import parse_time
from vpop.leasing.utilisation import Kind

#: A lease's life: ``scheduled`` until its start (a lease may start in the future), then
#: ``provisioning``, ``active`` once shaped, ``ending`` until its shaping is removed, then
#: ``ended``.
LeaseStatus = Literal["scheduled", "provisioning", "active", "ending", "ended"]

LEASE_STATUSES: tuple[str, ...] = get_args(LeaseStatus)

#: Why a lease version was written: the lease was created, renewed (a new planned end) or its
#: terms changed.
VersionReason = Literal["create", "renew", "change"]


class LeaseRequest(Request):
    """Lease an ISP's uplink on a router.

    The uplink is shaped to committed_mbps * peak_pct / 100; utilisation is measured
    against committed_mbps.
    """

    missing_message = "missing field(s) {missing}; required: {required}"
    missing_first = True

    isp: Annotated[str, Canonical(validate.name, pattern=NAME_PATTERN, examples=["isp-b"])]
    router: Annotated[str, Canonical(validate.name, pattern=NAME_PATTERN, examples=["rc1"])]
    committed_mbps: Annotated[int, Bounds(1, 400_000, "committed rate, Mbit/s")]
    # the column is a 64-bit integer: any price up to 10**12 is stored as given
    price_minor: Annotated[int, Bounds(0, 10**12, "price in minor units (cents)")]
    peak_pct: Annotated[int, Bounds(100, 1000, "shaped peak, percent of committed")] = 125
    under_pct: Annotated[int, Bounds(0, 99, "under-utilisation below this percent")] = 10
    over_pct: Annotated[int, Bounds(1, 1000, "over-utilisation above this percent")] = 100
    hysteresis_pct: Annotated[
        int, Bounds(0, 50, "how far back inside the band an event must be to close")
    ] = 5
    event_seconds: Annotated[
        int, Bounds(1, 86_400, "how long a condition lasts before an event opens or closes")
    ] = 60
    starts_at: Annotated[
        datetime | None,
        Canonical(
            parse_time,
            format="date-time",
            description="start, ISO 8601 with a UTC offset (default now); a start more than a"
            " second ahead schedules the lease, which is shaped when it starts; at most a day"
            " in the past",
        ),
    ] = None
    ends_at: Annotated[
        datetime | None,
        Canonical(
            parse_time,
            format="date-time",
            description="planned end, ISO 8601 with a UTC offset; after now and after starts_at",
        ),
    ] = None


#: Each integer field of a lease and its range.
LEASE_RANGES: dict[str, Bounds] = {
    name: bounds
    for name, field in LeaseRequest.model_fields.items()
    for bounds in field.metadata
    if isinstance(bounds, Bounds)
}

#: The integer fields that may be left out, and their values then.
LEASE_DEFAULTS: dict[str, int] = {
    name: field.default
    for name, field in LeaseRequest.model_fields.items()
    if name in LEASE_RANGES and not field.is_required()
}

#: The fields a lease request must give.
LEASE_REQUIRED: tuple[str, ...] = tuple(
    name for name, field in LeaseRequest.model_fields.items() if field.is_required()
)


class LeaseChangeRequest(Request):
    """Renew a lease (a new planned end) or change its terms, effective now.

    Each field left out keeps its value; at least one must change. The ranges are a new
    lease's. A new committed rate or peak reshapes the uplink of a shaped lease.
    """

    committed_mbps: Annotated[int, LEASE_RANGES["committed_mbps"]] | None = None
    peak_pct: Annotated[int, LEASE_RANGES["peak_pct"]] | None = None
    price_minor: Annotated[int, LEASE_RANGES["price_minor"]] | None = None
    ends_at: Annotated[
        datetime | None,
        Canonical(
            parse_time,
            format="date-time",
            description="new planned end (a renewal), ISO 8601 with a UTC offset; after now",
        ),
    ] = None


class LeaseVersion(Strict):
    """The terms of a lease in force from valid_from until valid_to (null: still in force)."""

    lease: int
    version: Annotated[int, Field(description="1 for the terms the lease was created with")]
    valid_from: datetime
    valid_to: datetime | None
    committed_mbps: int
    peak_pct: int
    price_minor: int
    currency: Currency
    ends_at: Annotated[datetime | None, Field(description="the planned end under these terms")]
    reason: VersionReason
    actor: Annotated[str, Field(description="who wrote this version")]
    created_at: datetime


class LeaseVersionList(Strict):
    """A lease's versions, oldest first."""

    versions: list[LeaseVersion]


class Lease(Strict):
    """One lease: an ISP's uplink on a router, its committed rate, price and event rules."""

    lease: int
    isp: str
    router: str
    uplink: Annotated[str, Field(description="the uplink interface")]
    committed_mbps: int
    peak_pct: int
    price_minor: int
    currency: Currency
    starts_at: datetime | None
    ends_at: datetime | None
    under_pct: int
    over_pct: int
    hysteresis_pct: int
    event_seconds: int
    status: LeaseStatus


class LeaseList(Strict):
    """Leases by id."""

    leases: list[Lease]


class UtilisationSample(Strict):
    """A lease's rate at one poll, and that rate over its committed rate."""

    at: datetime
    rate_mbps: float
    utilisation_pct: Annotated[float, Field(description="rate / committed * 100")]


class UtilisationEvent(Strict):
    """An under- or over-utilisation episode of a lease."""

    event: int
    lease: int
    isp: str
    kind: Kind
    open: bool
    opened_at: datetime
    closed_at: datetime | None
    seconds: Annotated[float, Field(description="duration; until now while open")]
    extreme_pct: Annotated[
        float, Field(description="peak (over) or lowest (under) utilisation, percent")
    ]


class Utilisation(Strict):
    """A lease's utilisation samples in a window, their 95th percentile and open events."""

    lease: Lease
    since: datetime
    until: datetime
    samples: Annotated[list[UtilisationSample], Field(description="oldest first")]
    p95_mbps: Annotated[
        float | None,
        Field(description="95th-percentile rate of the window's samples, picked as LibreNMS bills"),
    ]
    p95_pct: Annotated[float | None, Field(description="p95_mbps over the committed rate, percent")]
    open_events: list[UtilisationEvent]


class EventList(Strict):
    """Under- and over-utilisation events, the newest opened first."""

    events: list[UtilisationEvent]
