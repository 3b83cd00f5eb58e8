"""The ``vpop`` command.

Exit codes: 0 success, 1 a failed run, 2 bad input (one line that says what to fix).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click

from vpop.errors import BadInput, VpopError

F = TypeVar("F", bound=Callable[..., Any])


def _fail(err: VpopError) -> None:
    click.echo(f"error: {err.code}: {err.message}", err=True)
    sys.exit(2 if isinstance(err, BadInput) else 1)


@click.group()
def main() -> None:
    """vpop: a virtual point of presence for many ISPs."""


@main.group()
def lab() -> None:
    """The namespace lab of real FRR routers."""


@lab.command("up")
@click.option("--subscribers", default=4, show_default=True, type=click.IntRange(1, 64))
def lab_up(subscribers: int) -> None:
    """Build the lab (removing an old one first)."""
    from vpop.lab import Lab

    try:
        state = Lab().up(subscribers=subscribers)
    except VpopError as err:
        _fail(err)
        return
    routers = {n: v["ssh"]["port"] for n, v in state["nodes"].items() if "ssh" in v}
    ports = ", ".join(f"{r} ssh 127.0.0.1:{p}" for r, p in routers.items())
    click.echo(f"lab up in {state['up_seconds']:.2f}s: {len(state['nodes'])} nodes; {ports}")
    try:
        from vpop.registry import register_lab
    except ImportError:
        return
    register_lab(state)


@lab.command("down")
def lab_down() -> None:
    """Remove the lab: namespaces, links, processes, files."""
    from vpop.lab import Lab

    Lab().down()
    click.echo("lab down")


@lab.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def lab_status(as_json: bool) -> None:
    """Show the lab's nodes, namespaces and management ports."""
    from vpop.lab import Lab

    status = Lab().status()
    if as_json:
        click.echo(json.dumps(status, indent=2))
        return
    if not status["nodes"]:
        click.echo(
            "lab is down" + (f" (stray: {status['namespaces']})" if status["namespaces"] else "")
        )
        return
    for name, node in status["nodes"].items():
        ssh = f"  ssh 127.0.0.1:{node['ssh']['port']}" if "ssh" in node else ""
        mark = "up" if node["present"] else "MISSING"
        click.echo(f"{name:8} {node['kind']:10} {node['namespace']:14} {mark}{ssh}")


@lab.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("node")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def lab_exec(node: str, command: tuple[str, ...]) -> None:
    """Run COMMAND inside NODE's namespace: vpop lab exec sub1 -- curl -s http://203.0.113.100/"""
    from vpop.lab import Lab

    try:
        code = Lab().exec(node, command)
    except VpopError as err:
        click.echo(f"error: {err.code}: {err.message}", err=True)
        sys.exit(2)
    sys.exit(code)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--workers", default=4, show_default=True, type=click.IntRange(1, 32))
@click.option("--with-lab", is_flag=True, help="Bring the namespace lab up first.")
@click.option(
    "--portal/--no-portal",
    default=True,
    show_default=True,
    help="While a lab is up, also answer on the routers' portal address (port 80).",
)
def serve(host: str, port: int, workers: int, with_lab: bool, portal: bool) -> None:
    """Run the API server, the worker and the scheduler in one process."""
    from werkzeug.serving import make_server

    from tasks.connection import close_pool
    from vpop.migrate import upgrade
    from webhooks import create_app

    if with_lab:
        click.get_current_context().invoke(lab_up, subscribers=4)
    upgrade()
    from vpop.monitoring import Monitor, routers
    from vpop.queue import Sweeper, enqueue_monitor, enqueue_reconcile, make_consumer

    app = create_app()
    servers = [make_server(host, port, app, threaded=True)]
    if portal:
        servers += _portal_servers(app)
    for server in servers:
        threading.Thread(target=server.serve_forever, name="vpop-http", daemon=True).start()
    consumer = make_consumer(workers)
    for router in routers():  # converge on start: routing instances exist before probes
        enqueue_reconcile(router, delay=0)
    sweeper, monitor = Sweeper(), Monitor(enqueue_monitor)
    sweeper.start()
    monitor.start()
    click.echo(f"vpop serving on http://{host}:{port}/ with {workers} workers")
    try:
        consumer.run()  # main thread: handles SIGINT / SIGTERM
    finally:
        sweeper.stop_event.set()
        monitor.stop_event.set()
        for server in servers:
            server.shutdown()
        close_pool()


def _portal_servers(app: Any) -> list[Any]:
    """HTTP servers on the portal address inside each lab router's namespace."""
    from werkzeug.serving import make_server

    from vpop.lab import Lab
    from vpop.netns import listen_in_netns
    from vpop.topology import PORTAL_ADDRESS

    state = Lab().state()
    if state is None:
        return []
    servers = []
    for node in state["nodes"].values():
        if node["kind"] != "router":
            continue
        sock = listen_in_netns(node["namespace"], PORTAL_ADDRESS, 80)
        servers.append(make_server(PORTAL_ADDRESS, 80, app, threaded=True, fd=sock.fileno()))
        click.echo(f"portal on http://{PORTAL_ADDRESS}/ in {node['namespace']}")
    return servers


@main.command()
@click.option("--workers", default=4, show_default=True, type=click.IntRange(1, 32))
def worker(workers: int) -> None:
    """Run a worker alone (to scale out beside `vpop serve`)."""
    from tasks.connection import close_pool
    from vpop.migrate import upgrade

    upgrade()
    from vpop.queue import make_consumer

    # the scheduler (sweep, monitoring) runs once, in `vpop serve`; workers only execute
    try:
        make_consumer(workers).run()
    finally:
        close_pool()


@main.group()
def db() -> None:
    """The database."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database named by VPOP_DATABASE_URL to the newest schema."""
    from vpop.migrate import upgrade
    from vpop.settings import load_settings

    upgrade()
    click.echo(f"database at newest schema: {load_settings().database_url}")


def _cli_actor() -> str:
    return "cli:" + (os.environ.get("SUDO_USER") or os.environ.get("USER") or "root")


@main.command("select")
@click.argument("subscriber")
@click.argument("isp")
@click.option("--dry-run", is_flag=True, help="Show the diff; change nothing.")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait.")
def select_cmd(subscriber: str, isp: str, dry_run: bool, timeout: float) -> None:
    """Move SUBSCRIBER's traffic to ISP: prints progress, the diff and the result."""
    from vpop import engine, validate
    from vpop.db import FINAL_STATUSES, Order, session_scope
    from vpop.orders import Caller, SelectionRequest, submit_selection

    try:
        req = SelectionRequest(
            subscriber=validate.name(subscriber, "SUBSCRIBER"),
            isp=validate.name(isp, "ISP"),
            dry_run=dry_run,
        )
        order, _ = submit_selection(req, Caller(_cli_actor(), "admin"), None)
    except VpopError as err:
        _fail(err)
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


@main.group()
def runs() -> None:
    """Nornir runs: what was pushed where, by whom."""


@runs.command("list")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@click.option("--router")
def runs_list(limit: int, router: str | None) -> None:
    """List recent runs, newest first."""
    from sqlalchemy import select

    from vpop.db import Run, session_scope

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
    from vpop.db import Run, session_scope

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


@main.command()
@click.option("--router", "routers", multiple=True, help="Only these routers (repeatable).")
@click.option("--dry-run", is_flag=True, help="Show the diff; change nothing.")
def reconcile(routers: tuple[str, ...], dry_run: bool) -> None:
    """Converge routers to the confirmed selections in the database."""
    from vpop import engine
    from vpop.nornir_factory import open_nornir

    with open_nornir() as nr:
        names = list(routers) or sorted(nr.inventory.hosts)
    failed = False
    for router in names:
        try:
            run = engine.reconcile(router, dry_run=dry_run, requester=_cli_actor())
        except VpopError as err:
            _fail(err)
            return
        click.echo(f"{router}: run {run.id} {run.status}" + (" (dry run)" if dry_run else ""))
        click.echo(run.diff or f"{router}: in sync")
        failed |= run.status != "SUCCESS"
    sys.exit(1 if failed else 0)


@main.group()
def user() -> None:
    """NOC users (sign in to /noc)."""


@user.command("create")
@click.argument("username")
@click.option("--role", required=True, type=click.Choice(["noc", "admin"]))
@click.option(
    "--password-file",
    type=click.File("r"),
    help="Read the password from this file ('-' for standard input); else prompt.",
)
def user_create(username: str, role: str, password_file: Any) -> None:
    """Create a NOC user (the password is never taken from the command line)."""
    from vpop.db import session_scope
    from vpop.migrate import upgrade
    from vpop.users import create_user

    if password_file is not None:
        password = password_file.readline().rstrip("\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    upgrade()
    try:
        with session_scope() as session:
            create_user(session, username, password, role, actor=_cli_actor())
    except VpopError as err:
        _fail(err)
        return
    click.echo(f"user {username} ({role}) created")


@main.command("portal-link")
@click.argument("subscriber")
@click.option("--base-url", default="http://127.0.0.1:8080", show_default=True)
def portal_link(subscriber: str, base_url: str) -> None:
    """Print a signed link (valid 24 h) that lets SUBSCRIBER choose an ISP on the portal."""
    from vpop.portal_links import make_token

    try:
        token_ = make_token(subscriber)
    except VpopError as err:
        _fail(err)
        return
    click.echo(f"{base_url.rstrip('/')}/?link={token_}")


@main.group()
def token() -> None:
    """API bearer tokens."""


@token.command("create")
@click.option("--role", required=True, type=click.Choice(["admin", "noc", "portal", "isp"]))
@click.option("--isp", default=None, help="The ISP an isp token is scoped to.")
@click.option("--name", default="api", show_default=True)
def token_create(role: str, isp: str | None, name: str) -> None:
    """Create a token and print it once (only its hash is stored)."""
    from vpop.db import session_scope
    from vpop.migrate import upgrade
    from vpop.tokens import create_token

    upgrade()
    try:
        with session_scope() as session:
            clear = create_token(session, role, isp, name, actor=_cli_actor())
    except VpopError as err:
        _fail(err)
        return
    click.echo(clear)


def _attach_groups() -> None:
    from vpop.cli_monitoring import lease, report

    main.add_command(lease)
    main.add_command(report)


_attach_groups()

if __name__ == "__main__":
    main()
