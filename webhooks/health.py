"""Health: ``GET /healthz`` reports the queue's and the routers' real state.

It answers 200 with ``"status": "ok"`` when everything below holds, else 503 with
``"status": "degraded"`` and one reason per problem:

* the queue's storage answers (SQLite file or Redis);
* no lock is held past its lease (a holder that died and whose work nobody recovered:
  the sweep clears those within seconds, so one that stays means the sweep is not running);
* no router's latest counter poll or QoS probe (within :data:`POLL_WINDOW`) failed;
* the oldest order waiting (RECEIVED) is younger than :data:`WAITING_LIMIT`.

Each check is one indexed query or one queue call, so the endpoint stays cheap enough for a
load balancer to call every second.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flask import Blueprint, current_app
from sqlalchemy import func, select

from vpop.core.db import session_scope
from vpop.core.locks import read_locks
from vpop.core.time import iso, utcnow
from vpop.jobs.queue import storage_problem
from vpop.monitoring.service import PollLog
from vpop.selection.service import Order, OrderStatus

bp = Blueprint("health", __name__)

# an order waiting longer than this is stuck: the queue re-sends waiting routers after 10 s
WAITING_LIMIT = timedelta(seconds=60)

# polls older than this say nothing about a router now (polls run every 5-10 s)
POLL_WINDOW = timedelta(minutes=5)

POLLED_JOBS = ("counters", "probes")


@bp.get("/healthz")
def healthz() -> tuple[dict[str, Any], int]:
    """The queue's and the routers' state; 200 when ok, 503 with the reasons when degraded."""
    url = current_app.config["DATABASE_URL"]
    now = utcnow()
    reasons: list[str] = []
    queue_error = storage_problem()
    if queue_error is not None:
        reasons.append(f"the queue's storage is unreachable: {queue_error}")
    stuck = [
        {"name": lock.name, "holder": lock.holder, "expired_at": iso(lock.expires_at)}
        for lock in read_locks(url)
        if lock.stuck(now)
    ]
    for lock in stuck:
        reasons.append(f"lock {lock['name']} is held past its lease (since {lock['expired_at']})")
    failing = _failing_polls(url, now)
    for poll in failing:
        reasons.append(f"router {poll['router']}: last {poll['job']} poll failed: {poll['error']}")
    with session_scope(url) as session:
        oldest = session.scalar(
            select(func.min(Order.created_at)).where(Order.status == OrderStatus.RECEIVED.value)
        )
    waiting_age = None if oldest is None else round((now - oldest).total_seconds(), 1)
    if waiting_age is not None and waiting_age > WAITING_LIMIT.total_seconds():
        reasons.append(f"an order has waited {waiting_age:.0f}s (limit {WAITING_LIMIT.seconds}s)")
    body: dict[str, Any] = {
        "status": "degraded" if reasons else "ok",
        "reasons": reasons,
        "queue": {"reachable": queue_error is None},
        "stuck_locks": stuck,
        "failing_routers": failing,
        "oldest_waiting_order_seconds": waiting_age,
    }
    return body, 503 if reasons else 200


def _failing_polls(url: str, now: datetime) -> list[dict[str, Any]]:
    """Routers whose latest poll of a job (within :data:`POLL_WINDOW`) failed."""
    since = now - POLL_WINDOW
    failing: list[dict[str, Any]] = []
    with session_scope(url) as session:
        latest = (
            select(func.max(PollLog.id))
            .where(PollLog.job.in_(POLLED_JOBS), PollLog.at >= since)
            .group_by(PollLog.job, PollLog.router)
        )
        for poll in session.scalars(
            select(PollLog).where(PollLog.id.in_(latest)).order_by(PollLog.router, PollLog.job)
        ):
            if not poll.ok:
                failing.append(
                    {
                        "router": poll.router,
                        "job": poll.job,
                        "at": iso(poll.at),
                        "error": (poll.error or "failed").splitlines()[0][:200],
                    }
                )
    return failing
