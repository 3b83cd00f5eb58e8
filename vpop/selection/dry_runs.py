"""Dry-run orders, a router's batch at a time: the router's state is read once for every dry
run the engine claimed in a round, each order's intended state rendered and diffed against
it (:func:`tasks.deploy.diff_each`), and every run and order closed in one transaction.

Each order keeps its own run (made in the claim's transaction), its own diff and its own
outcome: an order whose intent cannot be built or rendered fails alone; a router that cannot
be read fails the batch. Nothing is pushed, so no fence is needed before the device.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tasks.deploy import diff_each
from vpop.catalogue.service import Line
from vpop.core.db import session_scope
from vpop.core.signals import emit
from vpop.core.time import utcnow
from vpop.network.service import open_nornir, render_router
from vpop.selection.claims import DryRun, close_dry_runs
from vpop.selection.intent import build_intent, check_uplinks, with_line_isp
from vpop.selection.models import OrderStatus, RunStatus
from vpop.selection.outcomes import Outcome, explain, router_target, run_fields
from vpop.selection.signals import order_finished


def run_dry_orders(router: str, claimed: list[DryRun], url: str | None) -> list[int]:
    """Diff every claimed dry-run order of ``router`` against one read of the router, close
    their runs and orders, and say that they ended; return the runs' ids."""
    started = time.perf_counter()
    try:
        with session_scope(url) as session:
            outcomes = _diffs(router, claimed, session)
    except Exception as exc:  # the router or its inventory: every order of the batch fails
        outcomes = [(Outcome(failed=True, exception=exc), {}) for _ in claimed]
    total = time.perf_counter() - started
    ids = [c[0] for c in claimed]
    runs: list[tuple[int, dict[str, Any]]] = []
    ends: list[dict[str, Any]] = []
    for (order_id, run_id, _line, _isp), (outcome, timings) in zip(claimed, outcomes, strict=True):
        ok = not outcome.failed
        status = RunStatus.SUCCESS if ok else RunStatus.FAILED
        runs.append((run_id, run_fields(router, outcome, {**timings, "total": total}, status)))
        ends.append(
            {
                "oid": order_id,
                "diff": outcome.diff,
                "status": (OrderStatus.DONE_SUCCESS if ok else OrderStatus.DONE_FAILED).value,
                "error": None if ok else explain(outcome.exception, router),
                "finished_at": utcnow(),
            }
        )
    close_dry_runs(url, runs, ends)  # one transaction; the gate for its writes only
    for order_id in ids:
        emit(order_finished, order_id)
    return [c[1] for c in claimed]


def _diffs(
    router: str, claimed: list[DryRun], session: Session
) -> list[tuple[Outcome, dict[str, float]]]:
    """Each order's outcome and timings (a render per line and ISP asked for; the device
    read shared)."""
    with open_nornir() as nr:
        target, host = router_target(nr, router)
        uplinks: Mapping[str, Any] = host.get("uplinks", {})
        base = build_intent(session, router, host.platform or "frr", uplinks)
        interfaces: dict[int, str] = {
            line_id: interface
            for line_id, interface in session.execute(
                select(Line.id, Line.interface).where(Line.id.in_([c[2] for c in claimed]))
            )
        }
        outcomes: list[tuple[Outcome, dict[str, float]]] = []
        rendered: list[dict[str, str]] = []
        # orders for the same line and ISP have the same intended state: rendered and
        # diffed once (a burst of dry runs often asks the same thing many times)
        slot_of: dict[tuple[int, str], int] = {}
        slots: list[int | None] = []  # each order's rendered state, None where it failed
        for _order, _run, line_id, isp_id in claimed:
            render_started = time.perf_counter()
            slot = slot_of.get((line_id, isp_id))
            if slot is None:
                try:  # this order's intent: a failure here fails this order alone
                    check_uplinks(router, uplinks, [isp_id])
                    state = render_router(with_line_isp(base, interfaces[line_id], isp_id))
                except Exception as exc:
                    outcomes.append((Outcome(failed=True, exception=exc), {}))
                    slots.append(None)
                    continue
                slot = slot_of[(line_id, isp_id)] = len(rendered)
                rendered.append(state)
            slots.append(slot)
            outcomes.append(
                (Outcome(failed=False), {"render": time.perf_counter() - render_started})
            )
        if not rendered:
            return outcomes
        device_started = time.perf_counter()
        multi = target.run(task=diff_each, intended=rendered, on_failed=True)[router]
        device = time.perf_counter() - device_started
    if multi.failed:
        raise multi[0].exception or RuntimeError(f"{router}: its state could not be read")
    diffs = multi[0].result["diffs"]
    for (outcome, timings), slot in zip(outcomes, slots, strict=True):
        if slot is not None:
            outcome.diff = diffs[slot]
            outcome.result = {"pushed": [], "dry_run": True}
            timings["device"] = device
    return outcomes
