"""The catalogue side of the JSON API: subscribers, the public ISP catalogue, QoS samples.

``GET /isps`` is public (no token) and the busiest read: it builds plain dicts from one query for
the ISPs and their plans and one for their current QoS (:func:`~vpop.monitoring.qos.current_qos`),
at most once a second per process (and at once when the probe job announces new samples); the
bytes are served from that small cache. QoS samples and subscribers need a token: an ``isp``
token reads only its own ISP's samples, and a subscriber only when one of its lines uses that
ISP or had an order for that ISP accepted (not a request still waiting for the subscriber's
consent, nor a declined or expired one); any other subscriber is "not there" (404, the answer
for an unknown id). Subscribers are for operators and ISPs: a portal token is refused (403). See
docs/tenancy.md.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from flask import Response, current_app
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from vpop.catalogue.service import Isp, Subscriber
from vpop.core import validate
from vpop.core.db import session_scope
from vpop.core.errors import NotFound
from vpop.core.time import iso
from vpop.core.wake import QOS, Waiter
from vpop.monitoring.service import QosSample, current_qos, empty_qos
from vpop.selection.service import Forbidden, Order, OrderStatus
from webhooks.api.common import OPERATORS, bp, limit_arg, query_args, window_args
from webhooks.auth import authenticate

SAMPLES_DEFAULT_LIMIT = 100


SAMPLES_MAX_LIMIT = 1000


@bp.get("/subscribers/<subscriber_id>")
def get_subscriber(subscriber_id: str) -> dict[str, Any]:
    """A subscriber's lines and the ISP each line uses now."""
    caller = authenticate(allow_webhook=False).caller
    if caller.role not in (*OPERATORS, "isp"):
        raise Forbidden("subscribers are read by NOC staff, admins and their ISPs' tokens")
    subscriber_id = validate.name(subscriber_id, "subscriber")
    with session_scope(current_app.config["DATABASE_URL"]) as session:
        subscriber = session.scalars(
            select(Subscriber)
            .where(Subscriber.id == subscriber_id)
            .options(selectinload(Subscriber.lines))
        ).first()
        if subscriber is None or (
            caller.role == "isp" and not _customer_of(session, subscriber, caller.isp)
        ):
            # not yours and not there are one answer, so ids cannot be probed
            raise NotFound(f"unknown subscriber {subscriber_id!r}", code="VPOP-404-SUBSCRIBER")
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


# orders that say nothing of a subscriber's will: an ISP's request still waiting, or refused
UNCONSENTED = (
    OrderStatus.PENDING_CONSENT.value,
    OrderStatus.DECLINED.value,
    OrderStatus.EXPIRED.value,
)


def _customer_of(session: Session, subscriber: Subscriber, isp: str | None) -> bool:
    """Whether a line of ``subscriber`` uses ``isp`` or had an order for it accepted."""
    if isp is None:
        return False
    lines = subscriber.lines
    if any(line.selection is not None and line.selection.isp_id == isp for line in lines):
        return True
    line_ids = [line.id for line in subscriber.lines]
    if not line_ids:
        return False
    accepted = session.scalar(
        select(Order.id)
        .where(
            Order.line_id.in_(line_ids),
            Order.isp_id == isp,
            Order.status.not_in(UNCONSENTED),
        )
        .limit(1)
    )
    return accepted is not None


#: Seconds an API process serves its built ``GET /isps`` answer before building it again
#: (so ages and the catalogue are never more than this behind); a probe's wake-up (the
#: ``qos`` channel) makes it build at once.
ISPS_CACHE_SECONDS = 1.0

_qos_measured = Waiter(QOS)
_isps_cache: dict[str, tuple[int, float, bytes]] = {}
_isps_lock = threading.Lock()


@bp.get("/isps")
def list_isps() -> Response:
    """The public catalogue: every ISP, its plans and its current QoS (no authentication).

    ``qos`` comes from :func:`vpop.reports.current_qos`: per figure, the mean over routers of
    each router's newest sample at most 5 minutes old; None where no router has one. The
    answer is built at most once a second per process, and again as soon as the probe job
    has new samples (:data:`ISPS_CACHE_SECONDS`).
    """
    url = current_app.config["DATABASE_URL"]
    generation = _qos_measured.generation()
    now = time.monotonic()

    def fresh() -> bytes | None:
        cached = _isps_cache.get(url)
        if cached is None or cached[0] != generation or now - cached[1] >= ISPS_CACHE_SECONDS:
            return None
        return cached[2]

    body = fresh()
    if body is None:
        with _isps_lock:  # one thread builds; the others wait for its answer
            body = fresh()
            if body is None:
                body = current_app.json.dumps(catalogue(url)).encode() + b"\n"
                _isps_cache[url] = (generation, time.monotonic(), body)
    return Response(body, mimetype="application/json")


def catalogue(url: str) -> dict[str, Any]:
    """Every ISP with its plans and current QoS, read now."""
    stmt = select(Isp).order_by(Isp.id).options(selectinload(Isp.plans))
    with session_scope(url) as session:
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
