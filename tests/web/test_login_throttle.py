"""NOC sign-in throttling held in the database: failures counted across real `vpop serve`
processes on one SQLite file, surviving a restart; the counting itself on SQLite and
PostgreSQL."""

from __future__ import annotations

import html
import http.cookiejar
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select

from tests.dbtemplate import migrated_sqlite
from tests.pg import postgres_cluster
from tests.web.helpers import NOC_PASSWORD, SECRET_KEY
from vpop.core.db import dispose_engines, get_engine, session_scope
from vpop.core.migrate import upgrade
from vpop.core.time import utcnow
from vpop.identity.models import LoginFailure
from vpop.identity.service import (
    LOGIN_FAILURES,
    LOGIN_WINDOW,
    clear_login_failures,
    create_user,
    login_failures,
    login_throttled,
    record_login_failure,
)

ROOT = Path(__file__).resolve().parents[2]
WRONG = "not the password at all"
_CSRF = re.compile(r'<input type="hidden" name="csrf_token" value="([^"]*)">')


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # a 303 after sign-in is the answer the test reads


@dataclass
class Server:
    """A running `vpop serve` and a browser (its own cookies) pointed at it."""

    base: str
    proc: subprocess.Popen[bytes]
    log: Path
    browser: urllib.request.OpenerDirector

    def sign_in(self, username: str, password: str) -> tuple[int, str, str]:
        """Fetch the form, post it; the status, the Location header and the page text."""
        with self.browser.open(self.base + "/noc/login", timeout=30) as form:
            found = _CSRF.search(form.read().decode())
        assert found is not None, "the sign-in form has no CSRF token"
        body = urllib.parse.urlencode(
            {"csrf_token": html.unescape(found[1]), "username": username, "password": password}
        ).encode()
        try:
            with self.browser.open(self.base + "/noc/login", data=body, timeout=30) as done:
                return done.status, done.headers.get("Location", ""), done.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.headers.get("Location", ""), err.read().decode()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _start(env: dict[str, str], workdir: Path, name: str) -> Server:
    port = _free_port()
    log = workdir / f"serve-{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vpop.cli", "serve", "--no-portal", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    browser = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), _NoRedirect()
    )
    return Server(f"http://127.0.0.1:{port}", proc, log, browser)


def _wait_until_up(server: Server) -> None:
    deadline = time.monotonic() + 60
    while True:
        if server.proc.poll() is not None:
            raise AssertionError(f"vpop serve exited: {server.log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(server.base + "/healthz", timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError("vpop serve did not answer in 60 s") from None
            time.sleep(0.05)  # polling a starting process, bounded by the deadline


def _stop(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.terminate()
    try:
        server.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(timeout=15)


Starter = Callable[..., list[Server]]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[tuple[str, Starter]]:
    """A migrated SQLite file with NOC user ``alice``, and a starter of `vpop serve` processes
    on it (no routers: an empty inventory); every started process is stopped afterwards."""
    url = migrated_sqlite(tmp_path / "vpop.sqlite")
    with session_scope(url) as session:
        create_user(session, "alice", NOC_PASSWORD, "noc", actor="tests")
    dispose_engines()
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text("{}\n")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("VPOP_")},
        "VPOP_DATABASE_URL": url,
        "VPOP_QUEUE_URL": f"sqlite:///{tmp_path / 'queue.sqlite'}",
        "VPOP_INVENTORY_HOSTS": str(hosts),
        "VPOP_LAB_DIR": str(tmp_path / "lab"),
        "VPOP_STATE_DIR": str(tmp_path / "state"),
        "VPOP_SECRET_KEY": SECRET_KEY,
    }
    started: list[Server] = []

    def start(*names: str) -> list[Server]:
        servers = [_start(env, tmp_path, name) for name in names]
        started.extend(servers)
        for server in servers:
            _wait_until_up(server)
        return servers

    try:
        yield url, start
    finally:
        for server in started:
            _stop(server)
        dispose_engines()


def _stored(url: str) -> list[tuple[str, str]]:
    with session_scope(url) as session:
        rows = session.execute(select(LoginFailure.username, LoginFailure.address)).all()
    return [(row.username, row.address) for row in rows]


def test_failures_over_two_server_processes_are_throttled_and_a_restart_keeps_them(
    serve: tuple[str, Starter],
) -> None:
    url, start = serve
    one, two = start("one", "two")
    spread = [one, two, one, two, one]
    assert [server.sign_in("alice", WRONG)[0] for server in spread] == [401] * LOGIN_FAILURES
    status, _, page = two.sign_in("alice", NOC_PASSWORD)  # the 6th, the right password
    assert status == 429
    assert "too many failed sign-ins; wait 5 minutes and try again" in page
    assert one.sign_in("alice", NOC_PASSWORD)[0] == 429  # the other process agrees
    assert two.sign_in("bob", WRONG)[0] == 401  # another user name is not held back
    assert sorted(_stored(url)) == [("alice", "127.0.0.1")] * 5 + [("bob", "127.0.0.1")]

    _stop(one)
    _stop(two)
    (three,) = start("three")
    assert three.sign_in("alice", NOC_PASSWORD)[0] == 429  # a restart forgets nothing

    # the window passes: move the recorded failures back by it, as time would
    with session_scope(url) as session:
        for failure in session.scalars(select(LoginFailure)):
            failure.at = failure.at - LOGIN_WINDOW
    status, location, _ = three.sign_in("alice", NOC_PASSWORD)
    assert (status, location) == (303, "/noc/orders")
    assert ("alice", "127.0.0.1") not in _stored(url)


def _count_rows(url: str) -> int:
    with session_scope(url) as session:
        return int(session.scalar(select(func.count()).select_from(LoginFailure)) or 0)


def _check_counting(url: str) -> None:
    """The throttle's rules against the database at ``url`` (whose table is empty)."""
    start = utcnow()
    with session_scope(url) as session:
        for k in range(LOGIN_FAILURES - 2):
            record_login_failure(session, "alice", "192.0.2.7", now=start + timedelta(seconds=k))
        record_login_failure(session, "alice", "192.0.2.8", now=start + timedelta(seconds=4))
        assert not login_throttled(session, "alice", "192.0.2.7", now=start + timedelta(seconds=4))

    # the last two failures up to the limit, recorded from two sessions at once: both count
    def record() -> None:
        with session_scope(url) as session:
            record_login_failure(session, "alice", "192.0.2.7", now=start + timedelta(seconds=5))

    threads = [threading.Thread(target=record) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    later = start + timedelta(seconds=6)
    with session_scope(url) as session:
        assert login_failures(session, "alice", "192.0.2.7", now=later) == LOGIN_FAILURES
        assert login_throttled(session, "alice", "192.0.2.7", now=later)
        assert login_failures(session, "alice", "192.0.2.8", now=later) == 1  # per address
        assert not login_throttled(session, "alice", "192.0.2.8", now=later)
        assert not login_throttled(session, "alicia", "192.0.2.7", now=later)  # per name
        # the window slides: once the first failure has left it, one more try is allowed
        slid = start + LOGIN_WINDOW + timedelta(seconds=0.5)
        assert login_failures(session, "alice", "192.0.2.7", now=slid) == LOGIN_FAILURES - 1
        assert not login_throttled(session, "alice", "192.0.2.7", now=slid)
    assert _count_rows(url) == LOGIN_FAILURES + 1

    # a recording after the window deletes every failure that left it, whoever's it was
    with session_scope(url) as session:
        gone = start + LOGIN_WINDOW + timedelta(seconds=10)
        assert record_login_failure(session, "carol", "198.51.100.9", now=gone) == 1
    assert _count_rows(url) == 1

    with session_scope(url) as session:
        record_login_failure(session, "alice", "192.0.2.7")
        record_login_failure(session, "alice", "192.0.2.8")
        assert clear_login_failures(session, "alice", "192.0.2.7") == 1
        assert login_failures(session, "alice", "192.0.2.7") == 0
        assert login_failures(session, "alice", "192.0.2.8") == 1  # only that key is cleared


def test_the_counting_on_sqlite(tmp_path: Path) -> None:
    url = migrated_sqlite(tmp_path / "vpop.sqlite")
    try:
        _check_counting(url)
    finally:
        dispose_engines()


def test_the_counting_on_postgresql() -> None:
    with postgres_cluster("throttle") as url:
        upgrade(url)
        _check_counting(url)


def test_nothing_secret_is_stored_and_long_names_are_cut(tmp_path: Path) -> None:
    url = migrated_sqlite(tmp_path / "vpop.sqlite")
    try:
        columns = {c["name"] for c in inspect(get_engine(url)).get_columns("login_failures")}
        assert columns == {"id", "username", "address", "at"}
        with session_scope(url) as session:
            record_login_failure(session, "x" * 200, "2001:db8::1")
            assert login_failures(session, "x" * 64 + "y", "2001:db8::1") == 1
        assert _stored(url) == [("x" * 64, "2001:db8::1")]
    finally:
        dispose_engines()
