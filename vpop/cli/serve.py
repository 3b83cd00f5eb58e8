"""``vpop serve``: the API, the portal and NOC pages, the worker and the scheduler, as
processes it supervises (:mod:`vpop.jobs.supervisor`): the API on gunicorn
(:mod:`webhooks.wsgi`, ``--http-workers`` processes of ``--http-threads`` threads), one
``vpop worker`` (``--workers`` threads: router runs as orders are announced, queued jobs)
and one ``vpop scheduler`` (the sweep and the monitoring schedule). A child that dies is
restarted and the restart said on stderr; SIGTERM stops them all within 2 s (accepted orders
are rows: none is lost; what a cut-off run left is recovered at the next start). The
listening sockets are bound here, before any child starts, so a taken port is one line.
``vpop worker`` and ``vpop scheduler`` also run alone, to scale out (more workers; one
scheduler). ``--single-process`` runs everything in one process on Werkzeug's server (the
previous model, kept as the benchmarks' peer).

While a lab is up, ``vpop serve`` also points every ISP host's web shop at itself
(``--shop``, the default): a new ISP token per shop, written mode 0600 under the lab
directory (never to git or the inventory), the shop's previous token revoked.

Exit codes: 0 after a clean stop, 1 when the server cannot start (the port is taken, the
database cannot be migrated) or a child keeps dying at its start, 2 for bad options (one
line naming the fix).
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Callable
from typing import NoReturn

import click

from vpop.cli.common import OneLineCommand
from vpop.cli.lab import lab_up
from vpop.core.errors import VpopError


@click.command(cls=OneLineCommand)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option(
    "--workers",
    default=4,
    show_default=True,
    type=click.IntRange(1, 32),
    help="Threads of the worker process (router runs and queued jobs).",
)
@click.option(
    "--http-workers",
    default=2,
    show_default=True,
    type=click.IntRange(1, 32),
    help="API server (gunicorn) processes.",
)
# 16: every connection of a client at concurrency 32 has a thread of its own in one of the two
# processes, so more of them join each group commit (docs/orders.md "Processes")
@click.option(
    "--http-threads",
    default=16,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Threads of each API server process.",
)
@click.option(
    "--pin/--no-pin",
    default=True,
    show_default=True,
    help="Run each API server process on a CPU of its own (while there are at least as "
    "many CPUs as processes) and the worker on the last CPU: a process's threads then never "
    "wait for a wake-up from another CPU (vpop.core.affinity).",
)
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
@click.option(
    "--single-process",
    is_flag=True,
    help="Everything in this one process on Werkzeug's server (the previous model; a peer).",
)
def serve(
    host: str,
    port: int,
    workers: int,
    http_workers: int,
    http_threads: int,
    pin: bool,
    with_lab: bool,
    with_radius: bool,
    portal: bool,
    shop: bool,
    single_process: bool,
) -> None:
    """Run the API server, the worker and the scheduler (supervised processes)."""
    from vpop.core.migrate import upgrade
    from webhooks import create_app

    if with_lab:
        click.get_current_context().invoke(lab_up, subscribers=4)
    try:
        upgrade()
        create_app()  # a configuration error is said here, once, not by every child
        # bound here, so that a taken port is one line (the servers would print a paragraph)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listeners = [socket.create_server((host, port), family=family, backlog=2048)]
        if portal:
            listeners += _portal_sockets()
        for sock in listeners:
            # answers go out at once: headers and body are separate writes, and Nagle would
            # hold the body until the client's delayed ACK (40 ms); accepted sockets inherit it
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, VpopError) as err:
        _cannot_start(err)
    if shop:
        _configure_shops(host, port)
    if single_process:
        _serve_single(host, port, workers, listeners, with_radius)
        return
    status = _supervise(
        host, port, workers, http_workers, http_threads, pin, listeners, with_radius
    )
    _exit_now(status)  # everything is stopped: skip the interpreter's slow tear-down


#: The worker and the scheduler yield the CPU to the API when both want it: accepting an
#: order is what a caller waits for, and a busy worker applies more orders per run anyway.
WORKER_NICENESS = 10

#: The worker's and scheduler's interpreter switch interval, in seconds (as the API's).
SWITCH_INTERVAL = 0.0005


def _supervise(
    host: str,
    port: int,
    workers: int,
    http_workers: int,
    http_threads: int,
    pin: bool,
    listeners: list[socket.socket],
    with_radius: bool,
) -> int:
    """Run the API (gunicorn), the worker and the scheduler as supervised children."""
    from vpop.core import affinity
    from vpop.core.db import dispose_engines
    from vpop.jobs import wiring
    from vpop.jobs.runner import Part, Scheduler, Worker, run_until_signal
    from vpop.jobs.supervisor import Child, Supervisor
    from vpop.monitoring.service import routers
    from webhooks import wsgi

    fds = [sock.fileno() for sock in listeners]
    worker_cpu = affinity.worker_cpu(affinity.allowed_cpus()) if pin else None

    def api() -> int:
        return wsgi.serve(fds, http_workers, http_threads, pin)

    def background(make: Callable[[], Part], cpu: int | None = None) -> Callable[[], int]:
        """A child that runs one part (niced, without the listening sockets, on ``cpu`` if
        one is given) until SIGTERM."""

        def main() -> int:
            _close(listeners)
            os.nice(WORKER_NICENESS)
            affinity.pin(cpu)  # before the part starts its threads
            # a thread woken by news (a new order, the follow-ups) takes the interpreter
            # lock from a busy one within 0.5 ms, not Python's default 5 ms
            sys.setswitchinterval(SWITCH_INTERVAL)
            wiring.connect()
            run_until_signal([make()])
            return 0

        return main

    children = [
        Child("API server", api),
        Child("worker", background(lambda: Worker(workers), worker_cpu)),
        Child("scheduler", background(lambda: Scheduler(routers()))),
    ]
    radius_stopping = threading.Event()
    if with_radius:  # FreeRADIUS's first requests wait in the listening socket's backlog
        _start_radius(host, port, radius_stopping)
    click.echo(
        f"vpop serving on http://{host}:{port}/ (API: gunicorn, {http_workers} processes x "
        f"{http_threads} threads; worker: {workers} threads; scheduler)"
    )
    try:
        say = lambda line: click.echo(line, err=True)  # noqa: E731
        return Supervisor(children, say, before_fork=dispose_engines).run()
    finally:
        if with_radius:
            _stop_radius(radius_stopping)


def _close(sockets: list[socket.socket]) -> None:
    """Close the listening sockets in a child that does not serve them."""
    for sock in sockets:
        sock.close()


def _serve_single(
    host: str,
    port: int,
    workers: int,
    listeners: list[socket.socket],
    with_radius: bool,
) -> None:
    """The previous model: API (Werkzeug), worker and scheduler threads in this process."""
    from werkzeug.serving import make_server

    from tasks.connection import close_pool
    from vpop.jobs import wiring
    from vpop.jobs.runner import Scheduler, Worker, run_until_signal
    from vpop.monitoring.service import routers
    from webhooks import create_app

    wiring.connect()  # before the first request: an accepted order is announced at once
    radius_stopping = threading.Event()
    app = create_app()
    servers = [
        make_server(name[0], name[1], app, threaded=True, fd=sock.fileno())
        for sock in listeners
        for name in [sock.getsockname()]
    ]
    for server in servers:
        threading.Thread(target=server.serve_forever, name="vpop-http", daemon=True).start()
    if with_radius:  # after the app answers: FreeRADIUS's first request finds vpop up
        _start_radius(host, port, radius_stopping)
    click.echo(f"vpop serving on http://{host}:{port}/ with {workers} workers (one process)")
    try:
        run_until_signal([Worker(workers), Scheduler(routers())])
    finally:
        for server in servers:
            server.shutdown()
        if with_radius:
            _stop_radius(radius_stopping)
        close_pool()
    _exit_now(0)


def _stop_radius(stopping: threading.Event) -> None:
    from vpop.aaa.service import stop_radius

    stopping.set()
    stop_radius()


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


def _portal_sockets() -> list[socket.socket]:
    """Listening sockets on the portal address inside each lab router's namespace."""
    from vpop.lab.service import PORTAL_ADDRESS, Lab, listen_in_netns

    state = Lab().state()
    if state is None:
        return []
    sockets = []
    for node in state["nodes"].values():
        if node["kind"] != "router":
            continue
        sockets.append(listen_in_netns(node["namespace"], PORTAL_ADDRESS, 80))
        click.echo(f"portal on http://{PORTAL_ADDRESS}/ in {node['namespace']}")
    return sockets


@click.command(cls=OneLineCommand)
@click.option("--workers", default=4, show_default=True, type=click.IntRange(1, 32))
def worker(workers: int) -> None:
    """Run a worker process (router runs and queued jobs) until SIGTERM; more of them, on
    this or other machines sharing the database and queue, scale out."""
    from tasks.connection import close_pool
    from vpop.core import migrate
    from vpop.jobs import wiring
    from vpop.jobs.runner import Worker, run_until_signal

    try:
        migrate.upgrade()
        wiring.connect()
        part = Worker(workers)
    except (OSError, VpopError) as err:
        _cannot_start(err)
    try:
        run_until_signal([part])
    finally:
        close_pool()
    _exit_now(0)


@click.command(cls=OneLineCommand)
def scheduler() -> None:
    """Run the scheduler (the sweep; counters, probes, leases and payments at their
    intervals) until SIGTERM. Run one per installation."""
    from vpop.core import migrate
    from vpop.jobs import wiring
    from vpop.jobs.runner import Scheduler, run_until_signal
    from vpop.monitoring.service import routers

    try:
        migrate.upgrade()
        wiring.connect()
        part = Scheduler(routers())
    except (OSError, VpopError) as err:
        _cannot_start(err)
    run_until_signal([part])
    _exit_now(0)


def _exit_now(status: int) -> NoReturn:
    """Exit at once: the parts are stopped, and a run cut off by the stop must not hold the
    exit (its router lock ends with its lease; the next start recovers its orders)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _cannot_start(err: BaseException) -> NoReturn:
    """One line saying why the process cannot start; exit 1."""
    code = getattr(err, "code", "VPOP-CFG")  # OSError: the address (--host, --port) is taken
    message = getattr(err, "message", None) or str(err)
    click.echo(f"error: {code}: cannot start: {message}", err=True)
    sys.exit(1)
