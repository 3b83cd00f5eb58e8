"""The API's gunicorn workers share keep-alive connections evenly (webhooks.balance), each on
a CPU of its own (vpop.core.affinity)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.sharedctypes import RawArray
from pathlib import Path

from vpop.core.affinity import api_cpu, pin, worker_cpu
from webhooks.balance import SLACK, SLOTS, STALE_SECONDS, fewest_elsewhere

ROOT = Path(__file__).resolve().parent.parent
CONNECTIONS = 32

#: A gunicorn master with vpop's options (webhooks.wsgi.options) serving an app that answers
#: with the pid of the worker that took the connection.
SERVER = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {root!r})
    from webhooks import wsgi

    def app(environ, start_response):
        body = str(os.getpid()).encode()
        if environ["PATH_INFO"] == "/polled":  # is the signal wake-up pipe polled? 1 or 0
            import signal
            worker = signal.getsignal(signal.SIGTERM).__self__  # its handle_exit's worker
            body = b"1" if worker.PIPE[0] in worker.poller.get_map() else b"0"
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    class Plain(wsgi.Application):
        def load(self):
            return app

    settings = wsgi.options([int(sys.argv[1])], 2, 4, pin=sys.argv[2] == "pin")
    settings["worker_class"] = sys.argv[3] if len(sys.argv) > 3 else settings["worker_class"]
    Plain(settings).run()
    """
)


def test_the_fewest_connections_elsewhere_counts_only_live_siblings() -> None:
    table = RawArray("d", 2 * SLOTS)
    now = 1000.0
    table[0], table[1] = 9, now  # slot 0: connections, heartbeat
    table[2], table[3] = 4, now - 0.5  # slot 1, live
    table[4], table[5] = 1, now - STALE_SECONDS - 1  # slot 2, stale: hung or stopped
    table[6], table[7] = 0, 0.0  # slot 3, stopping or at its own cap
    table[8], table[9] = 6, now  # slot 4
    assert fewest_elsewhere(table, 0, now) == 4
    assert fewest_elsewhere(table, 1, now) == 6
    table[3] = 0.0
    table[9] = 0.0
    assert fewest_elsewhere(table, 0, now) is None  # nobody else to leave connections to


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _ask(sock: socket.socket, path: str = "/") -> int:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data or not data.split(b"\r\n\r\n", 1)[1]:
        chunk = sock.recv(4096)
        assert chunk, "the server closed the connection"
        data += chunk
    return int(data.split(b"\r\n\r\n", 1)[1])


@contextmanager
def running(worker_class: str | None = None, pin: bool = True) -> Iterator[tuple[int, set[int]]]:
    """A gunicorn master with vpop's options; its port and its two workers' pids, once both
    have answered."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(2048)
    port = listener.getsockname()[1]
    args = [sys.executable, "-c", SERVER.format(root=str(ROOT)), str(listener.fileno())]
    server = subprocess.Popen(
        [*args, "pin" if pin else "no-pin"] + ([worker_class] if worker_class else []),
        pass_fds=(listener.fileno(),),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    listener.close()
    try:
        deadline = time.monotonic() + 30
        seen: set[int] = set()
        while len(seen) < 2 and time.monotonic() < deadline:  # both workers answer
            with socket.create_connection(("127.0.0.1", port), timeout=10) as probe:
                seen.add(_ask(probe))
        assert len(seen) == 2, "the two workers never both answered"
        assert sorted(_children(server.pid)) == sorted(seen)
        yield port, seen
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def spread(worker_class: str | None) -> Counter[int]:
    """Open CONNECTIONS keep-alive connections at once; how many each worker took."""
    sockets: list[socket.socket] = []
    with running(worker_class) as (port, _):
        try:
            sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(CONNECTIONS)]
            for sock in sockets:
                sock.settimeout(10)
            return Counter(_ask(sock) for sock in sockets)
        finally:
            for sock in sockets:
                sock.close()


def test_connections_opened_together_are_spread_over_the_workers() -> None:
    # plain gthread (spread("gthread")) gave 28/4, 27/5, 18/14, 17/15 and 30/2 here
    counts = spread(None)
    assert sum(counts.values()) == CONNECTIONS
    assert len(counts) == 2
    low, high = sorted(counts.values())
    assert high - low <= 2 * SLACK + 2, counts


def test_each_api_process_gets_a_cpu_of_its_own_while_there_are_enough() -> None:
    assert api_cpu(0, 2, {0, 1}) == 0
    assert api_cpu(1, 2, {0, 1}) == 1
    assert api_cpu(1, 2, {5, 2}) == 5  # among the CPUs the server may use, in order
    assert api_cpu(3, 4, {0, 1, 2, 3}) == 3
    assert api_cpu(0, 3, {0, 1}) is None  # more processes than CPUs: none pinned
    assert api_cpu(0, 1, {7}) is None  # one CPU: nothing to choose
    assert api_cpu(None, 2, {0, 1}) is None  # a worker without a slot (over SLOTS)
    assert worker_cpu({0, 1}) == 1 and worker_cpu({3, 1, 2}) == 3  # the last one
    assert worker_cpu({4}) is None


def test_a_refused_pin_leaves_the_process_as_it_was() -> None:
    before = os.sched_getaffinity(0)
    assert pin(None) is False
    assert pin(10**6) is False  # no such CPU: the system refuses, nothing raised
    assert os.sched_getaffinity(0) == before


def test_the_api_processes_run_pinned_to_distinct_cpus_unless_told_not_to() -> None:
    allowed = os.sched_getaffinity(0)
    with running() as (_, workers):
        pinned = [os.sched_getaffinity(pid) for pid in workers]
    if len(allowed) >= 2:  # this machine and CI's have two
        assert all(len(cpus) == 1 for cpus in pinned), pinned
        assert set.union(*pinned) <= allowed and len(set.union(*pinned)) == 2, pinned
    else:
        assert pinned == [allowed, allowed]
    with running(pin=False) as (_, workers):
        assert [os.sched_getaffinity(pid) for pid in workers] == [allowed, allowed]


def test_a_sigterm_handed_to_a_request_thread_stops_the_worker() -> None:
    """The kernel hands a process's SIGTERM to any of its threads; Python runs the handler
    in the main thread only, which sleeps in its poll until something it polls is ready.
    The worker polls gunicorn's signal wake-up pipe, which the signal writes to, so it is
    woken at once instead of at its poll's 1 s timeout."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    with running() as (port, workers):
        for _ in workers:  # whichever worker takes the connection: both run the same code
            with socket.create_connection(("127.0.0.1", port), timeout=10) as probe:
                assert _ask(probe, "/polled") == 1
        worker = min(workers)
        threads = [int(t) for t in os.listdir(f"/proc/{worker}/task") if int(t) != worker]
        assert threads, "a worker that answered has a request thread"
        assert libc.tgkill(worker, threads[0], signal.SIGTERM) == 0, ctypes.get_errno()
        pause = threading.Event()
        for _ in range(500):  # bounded: 10 s
            if not Path(f"/proc/{worker}").exists() or _state(worker) == "Z":
                break
            pause.wait(0.02)
        else:
            raise AssertionError(f"worker {worker} still running after SIGTERM")


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
