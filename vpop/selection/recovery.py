"""Recovery of what a dead holder left: RUNNING orders and runs whose router lock is no
longer held become UNKNOWN (orders) and FAILED (runs), and their routers are reconciled."""

from __future__ import annotations

import logging

from sqlalchemy import select

from vpop.core.db import session_scope
from vpop.core.locks import ROUTER_PREFIX, live_locks, router_lock_name
from vpop.core.time import utcnow
from vpop.selection.models import Order, OrderStatus, Run, RunStatus

log = logging.getLogger(__name__)


def recover_abandoned(url: str | None = None) -> list[str]:
    """Close what holders that died left RUNNING; return the routers to reconcile.

    An order or run is RUNNING only while a holder has its router's lock (it is claimed and
    created under it). One still RUNNING while that lock is not live (released, or its lease
    ended) was left by a holder that died: the order becomes UNKNOWN (the router may carry
    part of its change) and the run FAILED with the reason. Only rows started before the
    locks were read are judged, so a holder that took the lock just after that read is
    never mistaken for a dead one.

    Args:
        url: The database (default: the configured one).

    Returns:
        The routers with orders turned UNKNOWN, sorted: reconcile them.
    """
    read_at = utcnow()
    live = live_locks(url, ROUTER_PREFIX)
    routers: set[str] = set()
    note = "the worker running this stopped (its router lock ended); the router is reconciled"
    with session_scope(url) as session:
        for order in session.scalars(
            select(Order).where(
                Order.status == OrderStatus.RUNNING.value, Order.started_at < read_at
            )
        ):
            if router_lock_name(order.router) in live:
                continue
            order.status = OrderStatus.UNKNOWN.value
            order.error = note
            routers.add(order.router)
        for run in session.scalars(
            select(Run).where(Run.status == RunStatus.RUNNING.value, Run.started_at < read_at)
        ):
            if router_lock_name(run.router) in live:
                continue
            run.status = RunStatus.FAILED.value
            run.finished_at = utcnow()
            run.error = note.replace("; the router is reconciled", "")
            routers.add(run.router)
    if routers:
        log.warning("recovered abandoned orders and runs on %s", ", ".join(sorted(routers)))
    return sorted(routers)
