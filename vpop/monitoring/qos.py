"""The current QoS of each ISP as the portal and the catalogue show it: per figure (latency,
jitter, loss, throughput), the mean over routers of each router's newest sample that is at most
:data:`QOS_FRESH` old; None where no router has measured recently, never a stale figure.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, func, literal, select, union_all
from sqlalchemy.orm import Session

from vpop.catalogue.service import Isp
from vpop.core.time import as_utc, iso
from vpop.core.time import utcnow as _utcnow
from vpop.monitoring.models import QosSample

QOS_FIGURES = ("latency_ms", "jitter_ms", "loss_pct", "throughput_mbps")


# a router's newest sample of a figure counts towards the ISP's current figure this long
QOS_FRESH = timedelta(minutes=5)


def empty_qos() -> dict[str, Any]:
    """The QoS of an ISP without a fresh sample: every figure None."""
    return {
        **dict.fromkeys(QOS_FIGURES),
        "measured_at": None,
        "age_seconds": dict.fromkeys(QOS_FIGURES),
    }


def current_qos(
    session: Session, *, now: datetime | None = None, isps: Collection[str] | None = None
) -> dict[str, dict[str, Any]]:
    """Each ISP's current QoS from its newest samples, in one query.

    For every figure and router, the router's newest sample that has the figure counts if it
    is at most :data:`QOS_FRESH` (5 minutes) old; the ISP's figure is the mean over those
    routers. ``age_seconds`` gives each figure's age: that of the oldest sample in its mean.
    ``measured_at`` is the time of the oldest sample in any figure, so nothing shown is older.

    Args:
        session: An open session.
        now: The current time (default: now).
        isps: Only these ISPs (default: every ISP).

    Returns:
        ``{isp_id: {"latency_ms", "jitter_ms", "loss_pct", "throughput_mbps",
        "measured_at", "age_seconds": {figure: seconds}}}`` for ISPs with a fresh figure;
        the others are absent (see :func:`empty_qos`).
    """
    now = as_utc(now or _utcnow())
    cutoff = now - QOS_FRESH
    # the IN lets SQLite (and PostgreSQL) walk ix_qos_isp_at once per ISP
    scope = QosSample.isp_id.in_(list(isps) if isps is not None else select(Isp.id))
    newest = []
    for figure in QOS_FIGURES:
        column = getattr(QosSample, figure)
        rank = func.row_number().over(
            partition_by=(QosSample.isp_id, QosSample.router),
            order_by=(QosSample.at.desc(), QosSample.id.desc()),
        )
        ranked = (
            select(
                QosSample.isp_id.label("isp_id"),
                literal(figure, String).label("figure"),
                column.label("value"),
                QosSample.at.label("at"),
                rank.label("rank"),
            )
            .where(scope, column.is_not(None), QosSample.at >= cutoff)
            .subquery()
        )
        newest.append(
            select(ranked.c.isp_id, ranked.c.figure, ranked.c.value, ranked.c.at).where(
                ranked.c.rank == 1
            )
        )
    found: dict[str, dict[str, list[tuple[float, datetime]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for isp_id, figure, value, at in session.execute(union_all(*newest)):
        found[isp_id][figure].append((float(value), as_utc(at)))
    result: dict[str, dict[str, Any]] = {}
    for isp_id, figures in found.items():
        qos = empty_qos()
        oldest: datetime | None = None
        for figure, measured in figures.items():
            first = min(at for _, at in measured)
            qos[figure] = round(sum(v for v, _ in measured) / len(measured), 3)
            qos["age_seconds"][figure] = round(max(0.0, (now - first).total_seconds()), 1)
            oldest = first if oldest is None else min(oldest, first)
        qos["measured_at"] = iso(oldest)
        result[isp_id] = qos
    return result
