"""The catalogue side of the JSON API: subscribers, the public ISP catalogue, QoS samples.

``GET /isps`` is public (no token) and the busiest read: it builds plain dicts from one
query for the ISPs and their plans and one for their current QoS
(:func:`~vpop.monitoring.qos.current_qos`). QoS samples and subscribers need a token: an
``isp`` token reads only its own ISP's samples, and a subscriber only when one of its lines
uses that ISP.
"""

from __future__ import annotations

from typing import Any

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from vpop.catalogue.service import Isp, Subscriber
from vpop.core import validate
from vpop.core.db import session_scope
from vpop.core.errors import NotFound
from vpop.core.time import iso
from vpop.monitoring.service import QosSample, current_qos, empty_qos
from vpop.selection.service import Forbidden
from webhooks.api.common import bp, limit_arg, query_args, window_args
from webhooks.auth import authenticate

SAMPLES_DEFAULT_LIMIT = 100


SAMPLES_MAX_LIMIT = 1000


@bp.get("/subscribers/<subscriber_id>")
def get_subscriber(subscriber_id: str) -> dict[str, Any]:
    """A subscriber's lines and the ISP each line uses now."""
    caller = authenticate(allow_webhook=False).caller
    subscriber_id = validate.name(subscriber_id, "subscriber")
    with session_scope(current_app.config["DATABASE_URL"]) as session:
        subscriber = session.scalars(
            select(Subscriber)
            .where(Subscriber.id == subscriber_id)
            .options(selectinload(Subscriber.lines))
        ).first()
        if subscriber is None:
            raise NotFound(f"unknown subscriber {subscriber_id!r}", code="VPOP-404-SUBSCRIBER")
        if caller.role == "isp" and not any(
            line.selection is not None and line.selection.isp_id == caller.isp
            for line in subscriber.lines
        ):
            raise Forbidden(f"subscriber {subscriber_id!r} does not use this ISP")
        return {
            "subscriber": subscriber.id,
            "name": subscriber.name,
            "lines": [
                {
                    "line": line.id,
                    "router": line.router,
                    "interface": line.interface,
                    "prefix": line.prefix,
                    "calling_number": line.calling_number,
                    "circuit_id": line.circuit_id,
                    "access_id": line.access_id,
                    "current_isp": line.selection.isp_id if line.selection else None,
                    "default": line.selection is None,
                }
                for line in subscriber.lines
            ],
        }


@bp.get("/isps")
def list_isps() -> dict[str, Any]:
    """The public catalogue: every ISP, its plans and its current QoS (no authentication).

    ``qos`` comes from :func:`vpop.reports.current_qos`: per figure, the mean over routers of
    each router's newest sample at most 5 minutes old; None where no router has one.
    """
    stmt = select(Isp).order_by(Isp.id).options(selectinload(Isp.plans))
    with session_scope(current_app.config["DATABASE_URL"]) as session:
        isps = list(session.scalars(stmt))
        qos = current_qos(session, isps=[isp.id for isp in isps])
        return {
            "isps": [
                {
                    "id": isp.id,
                    "name": isp.name,
                    "plans": [
                        {
                            "id": plan.id,
                            "name": plan.name,
                            "speed_mbps": plan.speed_mbps,
                            "monthly_price_minor": plan.monthly_price_minor,
                            "currency": plan.currency,
                        }
                        for plan in isp.plans
                    ],
                    "qos": qos.get(isp.id) or empty_qos(),
                }
                for isp in isps
            ]
        }


@bp.get("/isps/<isp_id>/qos")
def list_isp_qos(isp_id: str) -> dict[str, Any]:
    """An ISP's QoS samples, newest first (any token; an ISP token only its own ISP)."""
    caller = authenticate(allow_webhook=False).caller
    isp_id = validate.name(isp_id, "isp")
    if caller.role == "isp" and caller.isp != isp_id:
        raise Forbidden(f"an ISP token reads only its own ISP's QoS, not {isp_id!r}")
    args = query_args(("since", "until", "limit", "router"))
    since, until = window_args(args)
    limit = limit_arg(args.get("limit"), SAMPLES_DEFAULT_LIMIT, SAMPLES_MAX_LIMIT)
    stmt = (
        select(QosSample)
        .where(QosSample.isp_id == isp_id)
        .order_by(QosSample.at.desc(), QosSample.id.desc())
        .limit(limit)
    )
    if since is not None:
        stmt = stmt.where(QosSample.at >= since)
    if until is not None:
        stmt = stmt.where(QosSample.at < until)
    if "router" in args:
        stmt = stmt.where(QosSample.router == validate.name(args["router"], "router"))
    with session_scope(current_app.config["DATABASE_URL"]) as session:
        if session.get(Isp, isp_id) is None:
            raise NotFound(f"unknown ISP {isp_id!r}", code="VPOP-404-ISP")
        return {
            "isp": isp_id,
            "samples": [
                {
                    "at": iso(sample.at),
                    "router": sample.router,
                    "latency_ms": sample.latency_ms,
                    "jitter_ms": sample.jitter_ms,
                    "loss_pct": sample.loss_pct,
                    "throughput_mbps": sample.throughput_mbps,
                    "sent": sample.sent,
                    "received": sample.received,
                }
                for sample in session.scalars(stmt)
            ],
        }
