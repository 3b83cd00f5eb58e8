"""``vpop serve`` as processes: the API on gunicorn, a worker and a scheduler, supervised.

A real ``vpop serve`` on a free port, on a database whose one router (rc1) is unreachable
(orders end DONE_FAILED: nothing here needs the lab). The checks are what an operator sees:
three child processes; a worker killed with SIGKILL is restarted and the restart is said on
stderr; the API answers throughout; SIGTERM stops everything within 2 s, exit status 0, no
child left; every order answered 202 is in the database, and ends once a server runs again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.test_cli_selection import env as cli_env  # noqa: F401 - the fixture
from tests.webhooks.helpers import SECRETS, sign_headers
from vpop.core.db import dispose_engines, session_scope
from vpop.selection.models import FINAL_STATUSES, Order

ROOT = Path(__file__).resolve().parent.parent


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


def _until(predicate: object, seconds: float = 30) -> None:
    pause = threading.Event()
    for _ in range(int(seconds * 50)):
        if callable(predicate) and predicate():
            return
        pause.wait(0.02)
    raise AssertionError("not reached in time")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Serve:
    """A running ``vpop serve`` and its log."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = _free_port()
        self.log = log
        self.env = {**env, "VPOP_WEBHOOK_SECRETS": SECRETS[0]}
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vpop.cli", "serve", "--port", str(self.port)]
                + ["--no-portal", "--no-shop"],
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        _until(self.answers, 60)

    def answers(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v1/isps", timeout=5):
                return True
        except OSError:
            return False

    def select(self, msg_id: str) -> tuple[int, dict[str, object]]:
        body = json.dumps({"subscriber": "sub1", "isp": "isp-a", "dry_run": True}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/v1/selections",
            data=body,
            headers=sign_headers(body, msg_id=msg_id),
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def worker_pid(self) -> int | None:
        """The worker is the process listening for new orders."""
        folder = Path(self.env["VPOP_STATE_DIR"]) / "wake" / "orders"
        pids = (
            {int(p.name.split("-")[0]) for p in folder.glob("*.sock")} if folder.exists() else set()
        )
        alive = pids & _children(self.proc.pid)
        return next(iter(alive)) if len(alive) == 1 else None


@pytest.fixture
def serve(cli_env: dict[str, str], tmp_path: Path) -> Iterator[Serve]:  # noqa: F811
    server = Serve(cli_env, tmp_path / "serve.log")
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(10)
        dispose_engines()


def test_serve_runs_the_api_worker_and_scheduler_as_supervised_processes(serve: Serve) -> None:
    assert len(_children(serve.proc.pid)) == 3  # API (gunicorn master), worker, scheduler
    cpus = os.sched_getaffinity(0)
    several = len(cpus) >= 2  # this machine and CI's have two
    if several:
        # the API's two processes (gunicorn's workers, forked one after the other, each
        # pinning itself as it starts) come to run on a CPU of their own
        def pinned_apart() -> bool:
            api = [pid for child in _children(serve.proc.pid) for pid in _children(child)]
            on = [os.sched_getaffinity(pid) for pid in api]
            return len(on) == 2 and all(len(c) == 1 for c in on) and on[0] != on[1]

        _until(pinned_apart)
    _until(lambda: serve.worker_pid() is not None)
    worker = serve.worker_pid()
    assert worker is not None
    last = {max(cpus)}
    if several:  # the worker runs on the last CPU
        assert os.sched_getaffinity(worker) == last
    os.kill(worker, signal.SIGKILL)
    _until(lambda: serve.worker_pid() not in (None, worker))
    again = serve.worker_pid()
    if several and again is not None:  # and so does its successor
        assert os.sched_getaffinity(again) == last
    log = serve.log.read_text()
    assert f"worker (pid {worker}) exited with status -9" in log
    assert f"worker restarted as pid {serve.worker_pid()}" in log
    assert serve.answers()
    assert len(_children(serve.proc.pid)) == 3


def test_sigterm_stops_everything_within_two_seconds_and_loses_no_order(
    serve: Serve, tmp_path: Path
) -> None:
    accepted = []
    for k in range(20):
        status, body = serve.select(f"stop-{k}")
        assert status == 202, body
        accepted.append(body["order"])
    children = _children(serve.proc.pid)
    serve.proc.send_signal(signal.SIGTERM)
    assert serve.proc.wait(timeout=2.0) == 0
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]
    url = serve.env["VPOP_DATABASE_URL"]
    with session_scope(url) as session:
        stored = set(session.scalars(select(Order.id)))
    assert set(accepted) <= stored  # every 202 is a row
    again = Serve(serve.env, tmp_path / "again.log")
    try:

        def all_final() -> bool:
            with session_scope(url) as session:
                statuses = session.scalars(select(Order.status).where(Order.id.in_(accepted)))
                return all(status in FINAL_STATUSES for status in statuses)

        _until(all_final, 60)
    finally:
        again.proc.terminate()
        again.proc.wait(10)
