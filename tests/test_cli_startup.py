"""`vpop` starts light: `--help`, `select --help` and `vpop select` against a running server
import click and the standard library only, and `vpop select` waits for the order with the
long-poll (`Prefer: wait=N`), polling only a server that does not apply it.

The server is the real API (`webhooks.create_app` on a real HTTP port); this test plays the
worker, finishing the dry run's order as the engine does (status, diff, `order_finished`).
Timings are not asserted here: `bench/ansible.py` measures the whole process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from tests.seeds import migrated_with_sub1
from vpop.core.db import session_scope
from vpop.core.signals import emit
from vpop.core.time import utcnow
from vpop.identity.service import create_token
from vpop.selection.service import Order, OrderStatus, order_finished

ROOT = Path(__file__).resolve().parent.parent

# what the thin path must never import (each costs tens to hundreds of milliseconds)
HEAVY = {
    "alembic",
    "blinker",
    "flask",
    "huey",
    "jinja2",
    "napalm",
    "netmiko",
    "nornir",
    "paramiko",
    "pydantic",
    "pydantic_core",
    "pydantic_settings",
    "requests",
    "sqlalchemy",
    "textfsm",
    "webhooks",
    "werkzeug",
    "yaml",
}
# the only modules of vpop it may import
LIGHT_VPOP = {"vpop", "vpop.cli", "vpop.core", "vpop.core.errors", "vpop.core.validate"}

# runs `vpop` as the console script does, then writes every imported module to argv[1]
WRAPPER = """\
import atexit, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write("\\n".join(sorted(sys.modules))))
sys.argv[0] = "vpop"
from vpop.cli import main
main()
"""

DIFF = "+ip rule add from 192.0.2.2/32 lookup 101 (dry run)"


def base_environment() -> dict[str, str]:
    """This process's environment without any VPOP_* variable."""
    return {k: v for k, v in os.environ.items() if not k.upper().startswith("VPOP_")}


def vpop_counting_imports(
    tmp_path: Path, env: dict[str, str], *args: str
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run `vpop ARGS` in a fresh interpreter; return the result and the modules it imported."""
    modules = tmp_path / f"modules-{len(list(tmp_path.glob('modules-*')))}.txt"
    done = subprocess.run(
        [sys.executable, "-c", WRAPPER, str(modules), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done, set(modules.read_text().split("\n"))


def heavy_imports(modules: Iterable[str]) -> list[str]:
    """The modules of ``modules`` that the thin path must not import."""
    return sorted(
        m
        for m in modules
        if m.split(".")[0] in HEAVY
        or m.startswith("tasks")
        or (m.startswith("vpop") and m not in LIGHT_VPOP and not m.startswith("vpop.cli."))
    )


@dataclass
class Server:
    """The real API on a real port, with what it was asked and answered."""

    url: str
    database_url: str
    token_file: Path
    # one entry per request: method, path, the Prefer it came with, the Preference-Applied
    # it was answered with
    requests: list[dict[str, str | None]] = field(default_factory=list)
    first_order_get: threading.Event = field(default_factory=threading.Event)
    # True: the server is "older": `Prefer` is removed before the app sees it
    strip_prefer: bool = False
    # True: first_order_get is set when the first GET of an order is answered (not asked)
    signal_on_answer: bool = False

    def order_gets(self) -> list[dict[str, str | None]]:
        """The GETs of /api/v1/orders/{id} so far."""
        return [
            r
            for r in self.requests
            if r["method"] == "GET" and str(r["path"]).startswith("/api/v1/orders/")
        ]

    def environment(self) -> dict[str, str]:
        """The variables that point `vpop select` at this server (and nothing else of vpop)."""
        return {
            **base_environment(),
            "VPOP_SERVER_URL": self.url,
            "VPOP_API_TOKEN_FILE": str(self.token_file),
        }


def recording(app: Any, server: Server) -> Callable[..., Any]:
    """``app`` as a WSGI callable that records each request and its Preference-Applied."""

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        entry: dict[str, str | None] = {
            "method": environ["REQUEST_METHOD"],
            "path": environ["PATH_INFO"],
            "prefer": environ.get("HTTP_PREFER"),
            "applied": None,
        }
        server.requests.append(entry)
        if server.strip_prefer:
            environ.pop("HTTP_PREFER", None)
        is_order_get = entry["method"] == "GET" and str(entry["path"]).startswith("/api/v1/orders/")
        if is_order_get and not server.signal_on_answer:
            server.first_order_get.set()

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            entry["applied"] = {k.lower(): v for k, v in headers}.get("preference-applied")
            if is_order_get and server.signal_on_answer:
                server.first_order_get.set()
            return start_response(status, headers, exc_info)

        return app(environ, start)

    return wsgi


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """The API on 127.0.0.1 with sub1 on rc1, isp-a, and a noc token in a file."""
    from webhooks import create_app

    url = migrated_with_sub1(f"sqlite:///{tmp_path / 'vpop.sqlite'}")
    with session_scope(url) as session:
        token = create_token(session, "noc", name="cli")
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "test", "WEBHOOK_SECRETS": ""})
    state = Server("", url, token_file)
    http = make_server("127.0.0.1", 0, recording(app, state), threaded=True)
    state.url = f"http://127.0.0.1:{http.server_port}"
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        http.shutdown()
        thread.join(10)


@pytest.fixture
def worker(server: Server) -> Iterator[list[int]]:
    """Plays the worker: once the CLI has asked for its order, finishes it as a successful
    dry run, as the engine does (RUNNING, then DONE_SUCCESS with the diff, then
    ``order_finished``). Yields the ids of the orders it finished."""
    finished: list[int] = []
    stop = threading.Event()

    def work() -> None:
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            if not server.first_order_get.wait(0.05):
                continue
            with session_scope(server.database_url) as session:
                order = session.query(Order).filter_by(status="RECEIVED").one()
                order.status = OrderStatus.RUNNING.value
                order.started_at = utcnow()
                order_id = order.id
            with session_scope(server.database_url) as session:
                done = session.get(Order, order_id)
                assert done is not None
                done.status = OrderStatus.DONE_SUCCESS.value
                done.diff = DIFF
                done.finished_at = utcnow()
            emit(order_finished, order_id)
            finished.append(order_id)
            return

    thread = threading.Thread(target=work, name="test-worker", daemon=True)
    thread.start()
    try:
        yield finished
    finally:
        stop.set()
        thread.join(10)


@pytest.mark.parametrize(
    "args", [["--help"], ["select", "--help"]], ids=["vpop-help", "select-help"]
)
def test_help_imports_nothing_heavy(tmp_path: Path, args: list[str]) -> None:
    done, modules = vpop_counting_imports(tmp_path, base_environment(), *args)
    assert done.returncode == 0, done.stderr
    assert "Usage: vpop" in done.stdout
    assert "click" in modules and "vpop.cli.selection" in modules  # the wrapper saw them
    assert heavy_imports(modules) == []


def test_select_on_a_server_is_thin_and_waits_with_the_long_poll(
    tmp_path: Path, server: Server, worker: list[int]
) -> None:
    done, modules = vpop_counting_imports(
        tmp_path, server.environment(), "select", "sub1", "isp-a", "--dry-run", "--timeout", "20"
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert worker, "the order never reached the worker"
    order_id = worker[0]
    assert f"order {order_id}: RECEIVED (sub1 -> isp-a, via {server.url})" in done.stdout
    assert DIFF in done.stdout
    assert done.stdout.rstrip().endswith(f"order {order_id}: DONE_SUCCESS (dry run)")
    assert done.stderr == ""
    assert heavy_imports(modules) == []
    assert "http.client" in modules
    posts = [r for r in server.requests if r["method"] == "POST"]
    assert [r["path"] for r in posts] == ["/api/v1/selections"]
    gets = server.order_gets()
    assert gets and all(r["path"] == f"/api/v1/orders/{order_id}" for r in gets)
    # it asked to wait, the server applied it, and one answer brought the final state
    assert str(gets[0]["prefer"]).startswith("wait="), gets
    assert 1 <= int(str(gets[0]["prefer"]).removeprefix("wait=")) <= 60
    assert str(gets[0]["applied"]).startswith("wait="), gets
    assert len(gets) == 1, gets


def test_select_polls_a_server_that_does_not_apply_the_wait(
    tmp_path: Path, server: Server, worker: list[int]
) -> None:
    server.strip_prefer = True  # as an older server: answers at once, no Preference-Applied
    server.signal_on_answer = True  # the order finishes after the first answer said RECEIVED
    done, _ = vpop_counting_imports(
        tmp_path, server.environment(), "select", "sub1", "isp-a", "--dry-run", "--timeout", "20"
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    order_id = worker[0]
    assert done.stdout.rstrip().endswith(f"order {order_id}: DONE_SUCCESS (dry run)")
    gets = server.order_gets()
    assert gets[0]["prefer"] is not None and gets[0]["applied"] is None
    # then it polled without asking to wait, until the order was final (not a busy loop)
    assert len(gets) >= 2, gets
    assert all(r["prefer"] is None for r in gets[1:]), gets
    assert len(gets) <= 50, f"{len(gets)} GETs: polling too fast"


def test_select_reads_the_server_from_the_config_file(
    tmp_path: Path, server: Server, worker: list[int]
) -> None:
    config = tmp_path / "vpop.toml"
    config.write_text(f'server_url = "{server.url}"\napi_token_file = "{server.token_file}"\n')
    env = {**base_environment(), "VPOP_CONFIG": str(config)}
    done, _ = vpop_counting_imports(tmp_path, env, "select", "sub1", "isp-a", "--dry-run")
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert f"via {server.url}" in done.stdout and "DONE_SUCCESS (dry run)" in done.stdout


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1:21", "127.0.0.1:8080", "http://127.0.0.1:99999"], ids=str
)
def test_a_server_url_that_is_no_http_url_is_bad_input(tmp_path: Path, url: str) -> None:
    token = tmp_path / "token"
    token.write_text("x")
    env = {**base_environment(), "VPOP_SERVER_URL": url, "VPOP_API_TOKEN_FILE": str(token)}
    done, modules = vpop_counting_imports(tmp_path, env, "select", "sub1", "isp-a")
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "VPOP_SERVER_URL" in lines[0] and url in lines[0], lines
    assert done.stdout == ""
    assert heavy_imports(modules) == []
