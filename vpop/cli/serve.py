"""``vpop serve`` (the API, the portal and NOC pages, the queue's workers and the schedulers in one
process) and ``vpop worker`` (more workers on the same queue, to scale out). Both connect the
side-effect wiring (:mod:`vpop.jobs.wiring`) before they take work, and both first recover
what a process that died left behind (:func:`vpop.jobs.queue.recover`: orders and runs left
RUNNING, leases of dead holders, waiting orders). SIGTERM stops them gracefully: running jobs
finish and release their locks.

While a lab is up, ``vpop serve`` also points every ISP host's web shop at itself
(``--shop``, the default): a new ISP token per shop, written mode 0600 under the lab
directory (never to git or the inventory), the shop's previous token revoked.

Exit codes: 0 after a clean stop, 1 when the server cannot start (the port is taken, the
database cannot be migrated), 2 for bad options (one line naming the fix).
"""

from __future__ import annotations

import socket
import sys
import threading
from typing import Any

import click

from vpop.cli.common import OneLineCommand
from vpop.cli.lab import lab_up
from vpop.core.errors import VpopError


@click.command(cls=OneLineCommand)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--workers", default=4, show_default=True, type=click.IntRange(1, 32))
@click.option("--with-lab", is_flag=True, help="Bring the namespace lab up first.")
@click.option(
    "--with-radius",
    is_flag=True,
    help="Also run FreeRADIUS (`vpop radius up`) against this server; stopped on exit.",
)
@click.option(
    "--portal/--no-portal",
    default=True,
    show_default=True,
    help="While a lab is up, also answer on the routers' portal address (port 80).",
)
@click.option(
    "--shop/--no-shop",
    default=True,
    show_default=True,
    help="While a lab is up, point each ISP host's web shop at this server (an ISP token each).",
)
def serve(
    host: str,
    port: int,
    workers: int,
    with_lab: bool,
    with_radius: bool,
    portal: bool,
    shop: bool,
) -> None:
    """Run the API server, the worker and the scheduler in one process."""
    from werkzeug.serving import make_server

    from tasks.connection import close_pool
    from vpop.core.migrate import upgrade
    from webhooks import create_app

    if with_lab:
        click.get_current_context().invoke(lab_up, subscribers=4)
    from vpop.jobs import wiring
    from vpop.jobs.queue import enqueue_monitor, enqueue_reconcile, make_consumer, recover
    from vpop.jobs.scheduler import Monitor, Sweeper
    from vpop.monitoring.service import routers

    try:
        upgrade()
        wiring.connect()  # before the first request: an accepted order is queued at once
        app = create_app()
        # bound here, so that a taken port is one line (werkzeug would print a paragraph)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.create_server((host, port), family=family)
        servers = [make_server(host, port, app, threaded=True, fd=listener.fileno())]
        if portal:
            servers += _portal_servers(app)
    except (OSError, VpopError) as err:
        _cannot_start(err)
    for server in servers:
        threading.Thread(target=server.serve_forever, name="vpop-http", daemon=True).start()
    if shop:
        _configure_shops(host, port)
    radius_stopping = threading.Event()
    if with_radius:  # after the app answers: FreeRADIUS's first request finds vpop up
        _start_radius(host, port, radius_stopping)
    consumer = make_consumer(workers)
    recovered = recover()  # what a process that died left RUNNING, before new work
    if recovered["recovered"] or recovered["expired"]:
        click.echo(f"recovered after a stop: {recovered}")
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
        if with_radius:
            from vpop.aaa.service import stop_radius

            radius_stopping.set()
            stop_radius()
        close_pool()


def _start_radius(host: str, port: int, stopping: threading.Event) -> None:
    """Start FreeRADIUS against this server on loopback; say so if it dies before
    ``stopping`` is set. One left running by a server that was killed is stopped first."""
    from vpop.aaa.service import prepare, radius_status, start_radius, stop_radius
    from vpop.core.db import session_scope

    loopback = "[::1]" if ":" in host else "127.0.0.1"
    if host not in ("0.0.0.0", "::", "127.0.0.1", "::1", "localhost"):
        _cannot_start(VpopError(f"--with-radius needs --host on loopback or any, not {host}"))

    def died(code: int) -> None:
        if not stopping.is_set():
            click.echo(f"error: VPOP-RADIUS: FreeRADIUS exited (status {code})", err=True)

    try:
        stop_radius()  # only a freeradius running with this state directory's config
        with session_scope() as session:
            config_dir = prepare(session, vpop_url=f"http://{loopback}:{port}")
        start_radius(config_dir, on_exit=died)
    except VpopError as err:
        _cannot_start(err)
    click.echo(f"FreeRADIUS {radius_status().describe()}")


def _configure_shops(host: str, port: int) -> None:
    """Point the lab's shops (if a lab is up) at this server; a shop that cannot be
    configured is said on one line, and the server runs on."""
    from vpop.cli.lab import configure_shops
    from vpop.lab.service import Lab

    if Lab().state() is None:
        return
    if host in ("0.0.0.0", "127.0.0.1", "localhost"):
        host = "127.0.0.1"
    elif host in ("::", "::1"):
        host = "[::1]"
    elif ":" in host:
        host = f"[{host}]"
    api = f"http://{host}:{port}"
    try:
        isps = configure_shops(api, actor="serve")
    except VpopError as err:
        click.echo(f"warning: {err.code}: the lab's shops are not configured: {err.message}")
        return
    click.echo(f"shops of {', '.join(isps)} pay through {api}")


def _portal_servers(app: Any) -> list[Any]:
    """HTTP servers on the portal address inside each lab router's namespace."""
    from werkzeug.serving import make_server

    from vpop.lab.service import PORTAL_ADDRESS, Lab, listen_in_netns

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


@click.command(cls=OneLineCommand)
@click.option("--workers", default=4, show_default=True, type=click.IntRange(1, 32))
def worker(workers: int) -> None:
    """Run a worker alone (to scale out beside `vpop serve`)."""
    from tasks.connection import close_pool
    from vpop.core.migrate import upgrade
    from vpop.jobs import wiring
    from vpop.jobs.queue import make_consumer, recover

    try:
        upgrade()
        wiring.connect()
        consumer = make_consumer(workers)
        recover()  # a worker may start after a crash while no `vpop serve` runs
    except (OSError, VpopError) as err:
        _cannot_start(err)
    # the scheduler (sweep, monitoring) runs once, in `vpop serve`; workers only execute
    try:
        consumer.run()
    finally:
        close_pool()


def _cannot_start(err: BaseException) -> None:
    """One line saying why the process cannot start; exit 1."""
    code = getattr(err, "code", "VPOP-CFG")  # OSError: the address (--host, --port) is taken
    message = getattr(err, "message", None) or str(err)
    click.echo(f"error: {code}: cannot start: {message}", err=True)
    sys.exit(1)
