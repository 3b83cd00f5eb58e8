"""Selections from the command line: ``vpop select`` (an order applied by this process, with its
progress printed), ``vpop runs list|show`` (what was pushed, with its diff) and
``vpop reconcile`` (converge routers to the confirmed selections).
"""

from __future__ import annotations

import json
import sys
import threading
import time

import click

from vpop.cli.common import cli_actor, fail
from vpop.core.errors import VpopError


@click.command("select")
@click.argument("subscriber")
@click.argument("isp")
@click.option("--dry-run", is_flag=True, help="Show the diff; change nothing.")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait.")
def select_cmd(subscriber: str, isp: str, dry_run: bool, timeout: float) -> None:
    """Move SUBSCRIBER's traffic to ISP: prints progress, the diff and the result."""
    from vpop.core import validate
    from vpop.core.db import session_scope
    from vpop.selection import service as engine
    from vpop.selection.service import (
        FINAL_STATUSES,
        Caller,
        Order,
        SelectionRequest,
        submit_selection,
    )

    try:
        req = SelectionRequest(
            subscriber=validate.name(subscriber, "SUBSCRIBER"),
            isp=validate.name(isp, "ISP"),
            dry_run=dry_run,
        )
        order, _ = submit_selection(req, Caller(cli_actor(), "admin"), None)
    except VpopError as err:
        fail(err)
        return
    click.echo(f"order {order.id}: RECEIVED ({subscriber} -> {isp} on {order.router})")
    started = time.monotonic()
    worker_thread = threading.Thread(target=engine.process_router, args=(order.router,))
    worker_thread.start()
    last = "RECEIVED"
    final: Order | None = None
    while time.monotonic() - started < timeout:
        with session_scope() as session:
            current = session.get(Order, order.id)
            assert current is not None
            if current.status != last:
                last = current.status
                click.echo(f"order {order.id}: {last} ({time.monotonic() - started:.2f}s)")
            if current.status in FINAL_STATUSES or current.status == "UNKNOWN":
                final = current
                break
        worker_thread.join(0.05)
    worker_thread.join(timeout=max(0.0, timeout - (time.monotonic() - started)))
    if final is None:
        click.echo(f"order {order.id}: still {last} after {timeout}s", err=True)
        sys.exit(1)
    click.echo(final.diff or "(no difference: the router already had this state)")
    if final.status == "DONE_SUCCESS":
        click.echo(f"order {order.id}: DONE_SUCCESS" + (" (dry run)" if dry_run else ""))
        return
    click.echo(f"order {order.id}: {final.status}: {final.error}", err=True)
    sys.exit(1)


@click.group()
def runs() -> None:
    """Nornir runs: what was pushed where, by whom."""


@runs.command("list")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@click.option("--router")
def runs_list(limit: int, router: str | None) -> None:
    """List recent runs, newest first."""
    from sqlalchemy import select

    from vpop.core.db import session_scope
    from vpop.selection.service import Run

    with session_scope() as session:
        stmt = select(Run).order_by(Run.id.desc()).limit(limit)
        if router:
            stmt = stmt.where(Run.router == router)
        for run in session.scalars(stmt):
            total = run.timings.get("total", "")
            click.echo(
                f"{run.id:6} {run.started_at:%Y-%m-%d %H:%M:%S} {run.router:6} {run.kind:10} "
                f"{run.status:8} {total!s:>8}ms  {run.trigger}  by {run.requester}"
            )


@runs.command("show")
@click.argument("run_id", type=int)
def runs_show(run_id: int) -> None:
    """Show one run: trigger, requester, per-host result, timings and diff."""
    from vpop.core.db import session_scope
    from vpop.selection.service import Run

    with session_scope() as session:
        run = session.get(Run, run_id)
        if run is None:
            click.echo(f"error: VPOP-404: no run {run_id}; see `vpop runs list`", err=True)
            sys.exit(2)
        click.echo(
            json.dumps(
                {
                    "run": run.id,
                    "router": run.router,
                    "kind": run.kind,
                    "status": run.status,
                    "trigger": run.trigger,
                    "requester": run.requester,
                    "dry_run": run.dry_run,
                    "started_at": run.started_at.isoformat(),
                    "finished_at": run.finished_at.isoformat() if run.finished_at else None,
                    "timings_ms": run.timings,
                    "result": run.result,
                    "error": run.error,
                },
                indent=2,
            )
        )
        click.echo(run.diff or "(empty diff)")


@click.command()
@click.option("--router", "routers", multiple=True, help="Only these routers (repeatable).")
@click.option("--dry-run", is_flag=True, help="Show the diff; change nothing.")
def reconcile(routers: tuple[str, ...], dry_run: bool) -> None:
    """Converge routers to the confirmed selections in the database."""
    from vpop.network.service import open_nornir
    from vpop.selection import service as engine

    with open_nornir() as nr:
        names = list(routers) or sorted(nr.inventory.hosts)
    failed = False
    for router in names:
        try:
            run = engine.reconcile(router, dry_run=dry_run, requester=cli_actor())
        except VpopError as err:
            fail(err)
            return
        click.echo(f"{router}: run {run.id} {run.status}" + (" (dry run)" if dry_run else ""))
        click.echo(run.diff or f"{router}: in sync")
        failed |= run.status != "SUCCESS"
    sys.exit(1 if failed else 0)
