"""The engine: per-router lock, coalescing, one Nornir run per batch, verify, reconcile.

``process_router`` takes the router's lock (:mod:`vpop.selection.locking`: leased, shared by
every process and host), claims every RECEIVED order for that router (the oldest per line: a
later order for the same line waits for the next round, so each order is verified on its
own), renders the router's intended state with those orders applied, and runs
``tasks.deploy.deploy_config`` in a fresh Nornir. It repeats until no RECEIVED order is left.

Outcomes, per order (docs/orders.md):

* verified on the router -> DONE_SUCCESS, and the selection is confirmed in the database;
* router unreachable (nothing sent) -> DONE_FAILED;
* a command rejected, or the read-back differs -> rolled back by converging the router to the
  confirmed selections, then DONE_FAILED (UNKNOWN if the rollback fails too);
* the session broke mid-push -> UNKNOWN, and a reconcile is scheduled, which converges the
  router to the confirmed selections and marks those orders RECONCILED;
* the router lock was lost (its lease ended, another holder took it) -> UNKNOWN and a reconcile
  is requested: the engine fences right before each push and in the transaction that records
  the outcome, so a late holder neither pushes nor reports success (docs/locks.md).

What a holder that died left RUNNING is recovered by :mod:`vpop.selection.recovery`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from nornir.core.task import MultiResult
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from tasks.collect import ACCT_TABLE
from tasks.deploy import (
    PushInterrupted,
    PushRejected,
    RouterUnreachable,
    VerifyFailed,
    deploy_config,
)
from vpop.core.audit import audit
from vpop.core.db import get_engine, session_scope, write_scope
from vpop.core.errors import ConfigError, VpopError
from vpop.core.locks import LockLost
from vpop.core.prepared import Prepared, raw_transaction
from vpop.core.signals import emit
from vpop.core.time import utcnow
from vpop.network.service import open_nornir
from vpop.selection.claims import claim, close_run, running_orders
from vpop.selection.confirm import Confirmed, cut_at
from vpop.selection.dry_runs import run_dry_orders
from vpop.selection.intent import INSTANCE_PREFIX, build_intent
from vpop.selection.locking import fence_router, router_lock
from vpop.selection.models import Order, OrderStatus, Run, RunStatus
from vpop.selection.outcomes import (
    Outcome,
    UnknownRouter,
    explain,
    finish_run,
    router_target,
    run_fields,
)
from vpop.selection.signals import order_finished, reconcile_needed

log = logging.getLogger(__name__)

MAX_ROUNDS = 1000  # a bounded loop: one router never keeps a worker forever
# a round claims at most this many orders of a router to look at for real changes, and this
# many dry runs (a flood of dry runs is answered in batches, each a short transaction)
CLAIM_LIMIT = 256
DRY_BATCH = 8
# one run per batch of orders; False makes one run per order (the benchmark's baseline)
COALESCE = True


def _device_run(
    router: str, overrides: dict[int, str], dry_run: bool, session: Session
) -> tuple[Outcome, dict[str, float]]:
    """Render the router's intended state and run deploy_config on it in a fresh Nornir."""
    from vpop.network.service import render_router

    timings: dict[str, float] = {}
    started = time.perf_counter()
    with open_nornir() as nr:
        target, host = router_target(nr, router)
        intent = build_intent(
            session, router, host.platform or "frr", host.get("uplinks", {}), overrides
        )
        rendered = render_router(intent)
        timings["render"] = time.perf_counter() - started
        if not dry_run:
            fence_router(router)  # a late holder whose lease ended must not push
        device_started = time.perf_counter()
        # an frr router's accounting counters come back with the verified read-back: the cut
        counted = ACCT_TABLE if not dry_run and host.platform == "frr" else None
        results = target.run(
            task=deploy_config,
            intended=rendered,
            dry_run=dry_run,
            counters=counted,
            on_failed=True,
        )
        timings["device"] = time.perf_counter() - device_started
        multi: MultiResult = results[router]
        first = multi[0]
        cut = None
        if counted is not None and not multi.failed:
            named = first.result.get("counters") if isinstance(first.result, dict) else None
            interfaces = [line["interface"] for line in intent["lines"]]
            cut = cut_at(utcnow(), named, router, interfaces)
    outcome = Outcome(
        failed=multi.failed,
        exception=first.exception,
        diff=first.diff or "",
        changed=bool(first.changed),
        result=first.result if isinstance(first.result, dict) else {},
        cut=cut,
    )
    return outcome, timings


def _new_run(session: Session, router: str, kind: str, trigger: str, requester: str) -> Run:
    run = Run(
        router=router,
        kind=kind,
        trigger=trigger,
        requester=requester,
        dry_run=kind == "dry_run",
    )
    session.add(run)
    session.flush()
    return run


def process_router(
    router: str,
    url: str | None = None,
    *,
    wait: float = 0.0,
    stopping: Callable[[], bool] | None = None,
) -> list[int]:
    """Apply every RECEIVED order of ``router`` under its lock; return the ids of the runs made.

    Args:
        router: The router's name.
        url: The database (default: the configured one).
        wait: Seconds to wait for the router's lock while another holder has it.
        stopping: Asked between rounds: True ends the work after the current run (a worker
            that is stopping lets the lock go; the orders still waiting stay RECEIVED).

    Raises:
        LockBusy: another holder kept the router's lock for the whole wait (it re-checks for
            waiting orders when it lets go; the sweep catches what a dead holder left).
    """
    runs: list[int] = []
    with router_lock(router, wait=wait, url=url):
        for _round in range(MAX_ROUNDS):
            if runs and stopping is not None and stopping():
                break
            if runs and not has_waiting(router, url):
                break  # a read: the fence and the claim below write
            # one short transaction (its reads before the write gate): the waiting orders
            # -> RUNNING with their runs, one per dry run and one for the real orders
            dry_runs, real_run, claimed = claim(
                router, url, real_limit=CLAIM_LIMIT, dry_limit=DRY_BATCH, coalesce=COALESCE
            )
            if not dry_runs and not claimed:
                break
            if claimed:  # changes first: a flood of dry runs does not hold them up
                runs.append(_apply_orders(router, real_run, claimed, url))
            if dry_runs:
                runs.extend(run_dry_orders(router, dry_runs, url))
    return runs


_WAITING = Prepared(
    select(Order.id)
    .where(Order.router == bindparam("router"), Order.status == OrderStatus.RECEIVED.value)
    .limit(1),
    {},
)


def has_waiting(router: str, url: str | None = None) -> bool:
    """Whether the router has RECEIVED orders now (one plain read: asked after every round)."""
    with raw_transaction(get_engine(url)) as (cursor, dialect):
        return bool(_WAITING.rows(cursor, dialect, {"router": router}))


def _apply_orders(
    router: str, run_id: int, claimed: list[tuple[int, int, str, str]], url: str | None
) -> int:
    started = time.perf_counter()
    ids = [c[0] for c in claimed]
    overrides = {line_id: isp_id for _, line_id, isp_id, _ in claimed}
    requesters = ", ".join(sorted({c[3] for c in claimed}))
    with session_scope(url) as session:
        try:
            outcome, timings = _device_run(router, overrides, False, session)
        except Exception as exc:  # nothing was pushed: render, intent or inventory failed
            outcome, timings = Outcome(failed=True, exception=exc), {}
    err = outcome.exception
    status_for_orders: OrderStatus
    rollback_note = ""
    if isinstance(err, LockLost):  # nothing was pushed, but another holder may have acted
        run_status = RunStatus.UNKNOWN
        status_for_orders = OrderStatus.UNKNOWN
    elif not outcome.failed:
        run_status = RunStatus.SUCCESS
        status_for_orders = OrderStatus.DONE_SUCCESS
    elif isinstance(err, RouterUnreachable | UnknownRouter | ConfigError) or not isinstance(
        err, PushInterrupted | PushRejected | VerifyFailed
    ):
        run_status = RunStatus.FAILED
        status_for_orders = OrderStatus.DONE_FAILED
    elif isinstance(err, PushRejected | VerifyFailed):
        run_status = RunStatus.FAILED
        rolled_back = _rollback(router, url)
        if rolled_back:
            status_for_orders = OrderStatus.DONE_FAILED
            rollback_note = " The router was rolled back to its previous state."
        else:
            status_for_orders = OrderStatus.UNKNOWN
            rollback_note = " The rollback failed too: a reconcile is scheduled."
    else:  # PushInterrupted: the router's state is unknown
        run_status = RunStatus.UNKNOWN
        status_for_orders = OrderStatus.UNKNOWN
    timings["total"] = time.perf_counter() - started
    installed: dict[str, Any] = outcome.result.get("installed", {})
    final_ids: list[int] = []
    unverified: list[int] = []
    ends: list[dict[str, Any]] = []
    confirmed: list[Confirmed] = []
    finished = utcnow()
    for order in running_orders(url, run_id):  # a read: only this lock's holder ends them
        end: dict[str, Any] = {
            "oid": order.order_id,
            "diff": outcome.diff,
            "finished_at": finished,
            "status": status_for_orders.value,
            "error": None,
        }
        ends.append(end)
        if status_for_orders is OrderStatus.DONE_SUCCESS:
            policy = INSTANCE_PREFIX + order.interface
            if installed.get(policy) != INSTANCE_PREFIX + order.isp_id:
                # pushed but not in effect: stays RUNNING until it is rolled back below
                end["status"] = OrderStatus.RUNNING.value
                end["error"] = (
                    f"router {router} took the change but did not install {policy} "
                    f"with {order.isp_id} (is the line's interface there?)."
                )
                unverified.append(order.order_id)
                continue
            confirmed.append(order)
        else:
            end["error"] = explain(err, router) + rollback_note
        if end["status"] != OrderStatus.UNKNOWN.value:
            final_ids.append(order.order_id)
    action = "run." + run_status.value.lower()
    try:
        close_run(
            url,
            router,
            run_id,
            run_fields(router, outcome, timings, run_status),
            ends,
            confirmed,
            outcome.cut,
            (requesters, action, {"orders": ids}),
        )
    except LockLost as lost:  # a late holder: whoever has the router now reconciles it
        _record_lock_lost(router, run_id, ids, outcome, timings, lost, url)
        return run_id
    if unverified:
        rolled_back = _rollback(router, url)
        try:
            _settle_unverified(router, unverified, rolled_back, final_ids, url)
        except LockLost as lost:
            _record_lock_lost(router, run_id, unverified, outcome, timings, lost, url)
            return run_id
        if not rolled_back:
            status_for_orders = OrderStatus.UNKNOWN
    if status_for_orders is OrderStatus.UNKNOWN:
        emit(reconcile_needed, router)
    _notify_final(final_ids)
    return run_id


def _settle_unverified(
    router: str, unverified: list[int], rolled_back: bool, final_ids: list[int], url: str | None
) -> None:
    """Orders pushed but not in effect: DONE_FAILED after a rollback, else UNKNOWN."""
    with write_scope(url) as session:
        fence_router(router, session)
        for order in session.scalars(select(Order).where(Order.id.in_(unverified))):
            if rolled_back:
                order.status = OrderStatus.DONE_FAILED.value
                order.error = f"{order.error} The router was rolled back to its previous state."
                final_ids.append(order.id)
            else:  # the router may still carry the unverified change
                order.status = OrderStatus.UNKNOWN.value
                order.error = f"{order.error} The rollback failed: a reconcile is scheduled."


def _record_lock_lost(
    router: str,
    run_id: int,
    ids: list[int],
    outcome: Outcome,
    timings: dict[str, float],
    lost: LockLost,
    url: str | None,
) -> None:
    """A late holder's run: UNKNOWN, its orders still RUNNING UNKNOWN, a reconcile requested.

    Nothing here is fenced (the lock is gone): it only touches rows that no live holder
    writes, the run this holder made and its orders that nobody has settled yet.
    """
    log.warning("run %s on %s: %s", run_id, router, lost)
    note = (
        f"the router lock was lost during this run ({lost}); the router's state is unknown "
        "and a reconcile is scheduled"
    )
    with write_scope(url) as session:
        run = session.get(Run, run_id)
        if run is not None and run.status == RunStatus.RUNNING.value:
            finish_run(run, outcome, timings, RunStatus.UNKNOWN)
            run.error = note
        for order in session.scalars(
            select(Order).where(Order.id.in_(ids), Order.status == OrderStatus.RUNNING.value)
        ):
            order.status = OrderStatus.UNKNOWN.value
            order.error = note
            order.finished_at = utcnow()
    emit(reconcile_needed, router)


def _rollback(router: str, url: str | None) -> bool:
    """Converge the router to the confirmed selections; True when that worked."""
    try:
        run = reconcile(router, requester="rollback", url=url, mark_orders=False)
    except VpopError:
        return False
    return run.status == RunStatus.SUCCESS.value


def reconcile(
    router: str,
    *,
    dry_run: bool = False,
    requester: str = "schedule",
    url: str | None = None,
    mark_orders: bool = True,
    wait: float = 0.0,
) -> Run:
    """Converge ``router`` to the confirmed selections (intended state from the database).

    A successful, non-dry reconcile marks the router's UNKNOWN orders RECONCILED: their
    change is not on the router (it now matches the confirmed selection); resubmit them.

    Args:
        router: The router's name.
        dry_run: Only diff; change nothing.
        requester: Who asked, for the run and the audit log.
        url: The database (default: the configured one).
        mark_orders: Mark the router's UNKNOWN orders RECONCILED after a success.
        wait: Seconds to wait for the router's lock while another holder has it.

    Raises:
        UnknownRouter: the router is not in the inventory.
        LockBusy: another holder kept the router's lock for the whole wait.
    """
    started = time.perf_counter()
    with router_lock(router, wait=wait, url=url):
        # the run is committed before the device is touched: a dead holder's run is found
        # (and closed) by recover_abandoned, and no write transaction spans the device run
        with write_scope(url) as session:
            run = _new_run(session, router, "reconcile", "reconcile", requester)
            run.dry_run = dry_run
            run_id = run.id
        unknown_router: UnknownRouter | None = None
        try:
            with session_scope(url) as session:
                outcome, timings = _device_run(router, {}, dry_run, session)
        except UnknownRouter as err:
            unknown_router = err
            outcome, timings = Outcome(failed=True, exception=err), {}
        except Exception as exc:  # nothing was pushed: render, intent or inventory failed
            outcome, timings = Outcome(failed=True, exception=exc), {}
        timings["total"] = time.perf_counter() - started
        ok = not outcome.failed
        reconciled: list[int] = []
        try:
            with write_scope(url) as session:
                if ok and not dry_run:
                    fence_router(router, session)  # a late holder reports nothing
                run = session.get(Run, run_id)  # type: ignore[assignment]
                assert run is not None
                finish_run(run, outcome, timings, RunStatus.SUCCESS if ok else RunStatus.FAILED)
                if ok and not dry_run and mark_orders:
                    for order in session.scalars(
                        select(Order).where(
                            Order.router == router, Order.status == OrderStatus.UNKNOWN.value
                        )
                    ):
                        order.status = OrderStatus.RECONCILED.value
                        order.error = (
                            (order.error or "")
                            + f" Reconciled by run {run.id}: the router now matches the"
                            " confirmed selection; this order's change is not applied."
                            " Resubmit it."
                        ).strip()
                        order.finished_at = utcnow()
                        reconciled.append(order.id)
                audit(
                    session,
                    requester,
                    "reconcile" + (".dry_run" if dry_run else ""),
                    f"router:{router}",
                    run=run.id,
                    changed=outcome.changed,
                    failed=outcome.failed,
                )
        except LockLost as lost:
            _record_lock_lost(router, run_id, [], outcome, timings, lost, url)
            with session_scope(url) as session:
                run = session.get(Run, run_id)  # type: ignore[assignment]
                assert run is not None
    if unknown_router is not None:
        raise unknown_router
    _notify_final(reconciled)
    return run


def _notify_final(order_ids: list[int]) -> None:
    for order_id in order_ids:
        emit(order_finished, order_id)
