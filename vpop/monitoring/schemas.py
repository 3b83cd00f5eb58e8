"""The monitoring domain's JSON bodies: current QoS, QoS samples, the public ISP catalogue.

The catalogue is here because it is the ISPs with their live QoS: it joins the catalogue's
plans (:mod:`vpop.catalogue.service`) with :func:`~vpop.monitoring.qos.current_qos`. The
views build plain dicts (``GET /api/v1/isps`` is the busiest read); the API's tests hold
every response against these models' JSON schemas.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field

from vpop.catalogue.service import schemas as catalogue
from vpop.core.schemas import NAME_PATTERN, Strict

#: One QoS figure: null when no fresh sample has it.
Figure = float | None


class QosAge(Strict):
    """Each figure's age in seconds: that of the oldest sample in its mean."""

    latency_ms: Figure
    jitter_ms: Figure
    loss_pct: Figure
    throughput_mbps: Figure


class Qos(Strict):
    """An ISP's current QoS.

    Per figure: each router's newest sample with that figure counts if it is at most 5
    minutes old; the figure is the mean over those routers, null when there is none.
    ``age_seconds`` gives each figure's age (its oldest sample); ``measured_at`` is the
    oldest sample shown.
    """

    latency_ms: Annotated[Figure, Field(description="round-trip time through the ISP")]
    jitter_ms: Figure
    loss_pct: Annotated[Figure, Field(description="probe loss, percent")]
    throughput_mbps: Figure
    measured_at: datetime | None
    age_seconds: QosAge


class QosSample(Strict):
    """One QoS measurement of an ISP through one router."""

    at: datetime
    router: str
    latency_ms: Figure
    jitter_ms: Figure
    loss_pct: Figure
    throughput_mbps: Figure
    sent: Annotated[int, Field(description="probes sent")]
    received: Annotated[int, Field(description="probe answers received")]


class QosSampleList(Strict):
    """An ISP's QoS samples, the newest first."""

    isp: Annotated[str, Field(pattern=NAME_PATTERN)]
    samples: list[QosSample]


class CatalogueIsp(Strict):
    """One ISP of the public catalogue: its plans and its current QoS."""

    id: Annotated[str, Field(pattern=NAME_PATTERN)]
    name: str
    plans: list[catalogue.Plan]
    qos: Qos


class Catalogue(Strict):
    """The public catalogue: every ISP, its plans, speeds, prices and current QoS."""

    isps: list[CatalogueIsp]
