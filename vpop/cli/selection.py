"""Selections from the command line: ``vpop select`` (an order, applied by the running server
when ``VPOP_SERVER_URL`` names one, else by this process under the same router lock, with its
progress printed), ``vpop runs list|show`` (what was pushed, with its diff) and
``vpop reconcile`` (converge routers to the confirmed selections, under the router lock).

Exit codes: 0 ok, 1 a failed run (or an unreachable server), 2 bad input, with one line
saying what to fix (an unknown subscriber, ISP, router or run is bad input).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

import click

from vpop.cli.common import (
    CommandError,
    InputError,
    OneLineCommand,
    bad_input,
    cli_actor,
    reported_errors,
)
from vpop.core.errors import BadInput, VpopError


@click.command("select", cls=OneLineCommand)
@click.argument("subscriber")
@click.argument("isp")
@click.option("--dry-run", is_flag=True, help="Show the diff; change nothing.")
@click.option(
    "--timeout", default=60.0, show_default=True, type=click.FloatRange(0, 3600), help="Seconds."
)
def select_cmd(subscriber: str, isp: str, dry_run: bool, timeout: float) -> None:
    """Move SUBSCRIBER's traffic to ISP: prints progress, the diff and the result.

    With VPOP_SERVER_URL set, the order goes to that server (POST /api/v1/selections with
    the token in VPOP_API_TOKEN_FILE); otherwise this process applies it, taking the
    router's lock like every other writer.
    """
    # only the standard library until we know the order stays in this process (docs/cli.md)
    from vpop.cli.remote import select_on_server, server_config
    from vpop.core import validate

    try:
        sub = validate.name(subscriber, "SUBSCRIBER")
        isp_id = validate.name(isp, "ISP")
        config = server_config()
    except BadInput as err:
        raise InputError(err.code, err.message) from err
    except VpopError as err:  # an invalid config file
        raise CommandError(err.code, err.message) from err
    if config.url:
        final = select_on_server(config, sub, isp_id, dry_run, timeout)
    else:
        final = _select_here(sub, isp_id, dry_run, timeout)
    order_id = final["order"]
    click.echo(final.get("diff") or "(no difference: the router already had this state)")
    if final["status"] == "DONE_SUCCESS":
        click.echo(f"order {order_id}: DONE_SUCCESS" + (" (dry run)" if dry_run else ""))
        return
    click.echo(f"order {order_id}: {final['status']}: {final.get('error')}", err=True)
    sys.exit(1)


def _select_here(subscriber: str, isp: str, dry_run: bool, timeout: float) -> dict[str, Any]:
    """Record the order and apply it in this process, under the router's database lock."""
    from vpop.cli.remote import STOP_AT
    from vpop.core.db import session_scope
    from vpop.selection import service as engine
    from vpop.selection.service import Caller, Order, SelectionRequest, submit_selection

    with reported_errors():
        req = SelectionRequest(subscriber=subscriber, isp=isp, dry_run=dry_run)
        order, _ = submit_selection(req, Caller(cli_actor(), "admin"), None)
    click.echo(f"order {order.id}: RECEIVED ({subscriber} -> {isp} on {order.router})")
    started = time.monotonic()
    problem: list[BaseException] = []

    def work() -> None:
        try:  # waits while another process has the router (the server, another CLI)
            engine.process_router(order.router, wait=timeout)
        except VpopError as err:
            problem.append(err)

    worker_thread = threading.Thread(target=work, name="vpop-select", daemon=True)
    worker_thread.start()
    last = "RECEIVED"
    while True:
        with session_scope() as session:
            current = session.get(Order, order.id)
            assert current is not None
            view = {
                "order": current.id,
                "status": current.status,
                "diff": current.diff,
                "error": current.error,
            }
        if view["status"] != last:
            last = str(view["status"])
            click.echo(f"order {order.id}: {last} ({time.monotonic() - started:.2f}s)")
        if last in STOP_AT:
            worker_thread.join(max(0.0, timeout - (time.monotonic() - started)))
            return view
        if time.monotonic() - started > timeout or (problem and not worker_thread.is_alive()):
            why = f": {problem[0]}" if problem else ""
            click.echo(
                f"error: VPOP-TIMEOUT: order {order.id} still {last} after "
                f"{time.monotonic() - started:.0f}s{why}",
                err=True,
            )
            sys.exit(1)
        worker_thread.join(0.05)


@click.group()
def runs() -> None:
    """Nornir runs: what was pushed where, by whom."""


@runs.command("list", cls=OneLineCommand)
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


@runs.command("show", cls=OneLineCommand)
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


@click.command(cls=OneLineCommand)
@click.option("--router", "routers", multiple=True, help="Only these routers (repeatable).")
@click.option("--dry-run", is_flag=True, help="Show the diff; change nothing.")
@click.option(
    "--wait",
    default=60.0,
    show_default=True,
    type=click.FloatRange(0, 3600),
    help="Seconds to wait for a router's lock while another process changes it.",
)
def reconcile(routers: tuple[str, ...], dry_run: bool, wait: float) -> None:
    """Converge routers to the confirmed selections in the database (under each router's
    lock, so it never interleaves with the server's or another command's changes)."""
    from vpop.network.service import open_nornir
    from vpop.selection import service as engine

    with reported_errors(), open_nornir() as nr:
        known = sorted(nr.inventory.hosts)
    unknown = [r for r in routers if r not in known]
    if unknown:
        raise bad_input(
            f"unknown router {unknown[0]!r}; routers are: {', '.join(known) or '(none)'}",
            "VPOP-404-ROUTER",
        )
    failed = False
    for router in list(routers) or known:
        with reported_errors():
            run = engine.reconcile(router, dry_run=dry_run, requester=cli_actor(), wait=wait)
        click.echo(f"{router}: run {run.id} {run.status}" + (" (dry run)" if dry_run else ""))
        click.echo(run.diff or f"{router}: in sync")
        failed |= run.status != "SUCCESS"
    sys.exit(1 if failed else 0)
