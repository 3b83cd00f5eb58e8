"""The usage report and service sessions as the API shows them (response models only).

:class:`UsageReport` is the JSON shape of :func:`vpop.reports.usage.usage_report` (``GET
/api/v1/reports/usage?format=json``); its rows are one of :class:`SubscriberUsage`,
:class:`IspUsage` or :class:`LeaseUsage`, as ``by`` says. :class:`ServiceSession` is
:func:`vpop.accounting.service.session_view` (``GET /api/v1/sessions``). The API's tests hold
every response against these schemas through the OpenAPI document, so a view that changes
shape fails there.

Directions are the subscriber's (``docs/accounting.md``): ``in`` is traffic from the
subscriber (upload), ``out`` is traffic to it; for a lease, ``in`` is what the uplink received
from the ISP and ``out`` what it sent. Seconds are floats; bytes, packets and money integers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from vpop.core.schemas import Currency, Strict

#: What a usage report is grouped by.
UsageBy = Literal["subscriber", "isp", "lease"]

Coverage = Annotated[
    float | None,
    Field(
        description="covered_seconds over service_seconds, in percent: below 100, some polls "
        "are missing (gaps, counter resets, first polls); null when there was no service"
    ),
]
ServiceSeconds = Annotated[
    float, Field(description="seconds of service in the window (summed over sessions)")
]
CoveredSeconds = Annotated[float, Field(description="of those, seconds measured by regular polls")]


class SubscriberUsage(Strict):
    """One subscriber's traffic through one ISP in the window."""

    subscriber: str
    isp: str
    isp_name: str
    sessions: int
    bytes_in: int
    bytes_out: int
    packets_in: int
    packets_out: int
    service_seconds: ServiceSeconds
    covered_seconds: CoveredSeconds
    coverage_pct: Coverage


class IspUsage(Strict):
    """One ISP's traffic (all its subscribers) in the window."""

    isp: str
    isp_name: str
    subscribers: int
    sessions: int
    bytes_in: int
    bytes_out: int
    packets_in: int
    packets_out: int
    service_seconds: ServiceSeconds
    covered_seconds: CoveredSeconds
    coverage_pct: Coverage


class LeaseUsage(Strict):
    """One version of a lease (the terms in force) and its uplink's traffic while in force."""

    lease: int
    version: int | None
    isp: str
    router: str
    uplink: str
    committed_mbps: int
    price_minor: int
    currency: Currency
    valid_from: datetime | None
    valid_to: datetime | None
    bytes_in: int
    bytes_out: int
    packets_in: int
    packets_out: int
    service_seconds: ServiceSeconds
    covered_seconds: CoveredSeconds
    coverage_pct: Coverage


class UsageBucket(Strict):
    """The traffic of one hour or UTC day of the window (every row together)."""

    bucket: datetime
    bytes_in: int
    bytes_out: int


class UsageReport(Strict):
    """Usage over a window (``[from, to)``), one row per subscriber, ISP or lease version,
    with totals and a series for charts."""

    by: UsageBy
    from_: Annotated[datetime, Field(alias="from", description="the window's start")]
    to: Annotated[datetime, Field(description="the window's end (exclusive)")]
    isp: Annotated[str | None, Field(description="the ISP the report is scoped to, if any")]
    subscriber: Annotated[str | None, Field(description="the subscriber filter, if any")]
    columns: Annotated[list[str], Field(description="the rows' keys, in order")]
    rows: list[SubscriberUsage] | list[IspUsage] | list[LeaseUsage]
    totals: Annotated[
        dict[str, int | float | None],
        Field(description="the sums of the rows' figures (coverage over the summed seconds)"),
    ]
    series: list[UsageBucket]


SessionSource = Literal["selection", "radius"]


class ServiceSession(Strict):
    """One period of routing service of a line through one ISP, with its traffic.
    ``ended_at`` is null while the session is open."""

    id: int
    source: Annotated[
        SessionSource,
        Field(description="selection: metered by the line counters; radius: by the NAS"),
    ]
    line: int
    subscriber: str
    isp: str
    router: str | None
    interface: str | None
    order: Annotated[int | None, Field(description="the order that opened it, if any")]
    radius_session: Annotated[int | None, Field(description="the RADIUS session it mirrors")]
    started_at: datetime
    ended_at: datetime | None
    end_reason: Annotated[
        str | None, Field(description="moved, line-removed, radius-stop, nas-off or stale")
    ]
    bytes_in: int
    bytes_out: int
    packets_in: int
    packets_out: int
    covered_seconds: CoveredSeconds


class ServiceSessionList(Strict):
    """Service sessions, the latest started first."""

    sessions: list[ServiceSession]
