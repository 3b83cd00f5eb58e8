"""Exit codes of `vpop select`, `vpop runs`, `vpop reconcile`, `vpop serve` and `vpop worker`:
0 ok, 1 a failed run, 2 bad input with one line saying what to fix."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from tests.seeds import migrated_with_sub1
from vpop.core.db import session_scope
from vpop.identity.tokens import create_token

ROOT = Path(__file__).resolve().parent.parent

# rc1 on a port where nothing listens: every run against it fails (nothing is pushed)
HOSTS_YAML = """\
rc1:
  hostname: 127.0.0.1
  port: {port}
  groups: [frr, lab]
  data:
    uplinks:
      isp-a: {{interface: isp-a, address: 198.51.100.1/30, next_hop: 198.51.100.2}}
"""


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A migrated database with sub1 on rc1 (unreachable), and the variables to use it."""
    url = f"sqlite:///{tmp_path / 'vpop.sqlite'}"
    migrated_with_sub1(url)
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(HOSTS_YAML.format(port=_closed_port()))
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("VPOP_")},
        "VPOP_DATABASE_URL": url,
        "VPOP_QUEUE_URL": f"sqlite:///{tmp_path / 'queue.sqlite'}",
        "VPOP_INVENTORY_HOSTS": str(hosts),
        "VPOP_LAB_DIR": str(tmp_path / "lab"),
        "VPOP_STATE_DIR": str(tmp_path / "state"),
        "VPOP_LOCK_TTL_SECONDS": "2",
    }


def vpop(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vpop.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def one_line(done: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    assert done.returncode == code, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["select", "nobody", "isp-a"], ["nobody"]),
        (["select", "sub1", "isp-z"], ["isp-z"]),
        (["select", "sub1", "no such isp"], ["ISP"]),
        (["select", "sub1"], ["ISP"]),
        (["select", "sub1", "isp-a", "--timeout", "soon"], ["--timeout"]),
        (["reconcile", "--router", "rz9"], ["rz9", "rc1"]),
        (["runs", "show", "999"], ["999"]),
        (["runs", "list", "--limit", "0"], ["--limit"]),
        (["serve", "--workers", "0"], ["--workers"]),
        (["worker", "--workers", "99"], ["--workers"]),
    ],
    ids=[
        "select-unknown-subscriber",
        "select-unknown-isp",
        "select-malformed-isp",
        "select-missing-isp",
        "select-bad-timeout",
        "reconcile-unknown-router",
        "runs-show-unknown",
        "runs-list-bad-limit",
        "serve-bad-workers",
        "worker-bad-workers",
    ],
)
def test_bad_input_exits_2_with_one_line(
    env: dict[str, str], args: list[str], words: list[str]
) -> None:
    one_line(vpop(env, *args), 2, *words)


def test_a_failed_run_exits_1(env: dict[str, str]) -> None:
    done = vpop(env, "select", "sub1", "isp-a", "--timeout", "60")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "RECEIVED" in done.stdout and "DONE_FAILED" in done.stderr
    failed = vpop(env, "reconcile", "--router", "rc1")
    assert failed.returncode == 1, (failed.stdout, failed.stderr)
    assert "FAILED" in failed.stdout


def test_listing_runs_exits_0(env: dict[str, str]) -> None:
    assert vpop(env, "select", "sub1", "isp-a").returncode == 1  # one run to list
    done = vpop(env, "runs", "list")
    assert done.returncode == 0 and "rc1" in done.stdout, done.stderr
    shown = vpop(env, "runs", "show", "1")
    assert shown.returncode == 0 and '"router": "rc1"' in shown.stdout


def test_serve_on_a_taken_port_exits_1(env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = vpop(env, "serve", "--no-portal", "--port", str(port))
    one_line(done, 1, "cannot start")


@pytest.fixture
def server(env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The API on a real HTTP port (no workers: orders stay RECEIVED), and a token file."""
    from webhooks import create_app

    url = env["VPOP_DATABASE_URL"]
    with session_scope(url) as session:
        token = create_token(session, "noc", name="cli")
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "test", "WEBHOOK_SECRETS": ""})
    http = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{http.server_port}", token_file
    finally:
        http.shutdown()
        thread.join(10)


def test_select_submits_to_the_configured_server(
    env: dict[str, str], server: tuple[str, Path]
) -> None:
    base, token_file = server
    remote = {**env, "VPOP_SERVER_URL": base, "VPOP_API_TOKEN_FILE": str(token_file)}
    unknown = vpop(remote, "select", "nobody", "isp-a")
    one_line(unknown, 2, "VPOP-404", "nobody")
    waiting = vpop(remote, "select", "sub1", "isp-a", "--timeout", "0.5")
    assert waiting.returncode == 1, (waiting.stdout, waiting.stderr)
    assert f"via {base}" in waiting.stdout and "still RECEIVED" in waiting.stderr
    from vpop.selection.service import Order

    with session_scope(env["VPOP_DATABASE_URL"]) as session:
        order = session.query(Order).one()
        assert order.requester.startswith("token:") and order.status == "RECEIVED"


def test_select_without_a_token_file_or_server_says_what_to_fix(
    env: dict[str, str], tmp_path: Path
) -> None:
    no_token = {**env, "VPOP_SERVER_URL": "http://127.0.0.1:9"}
    one_line(vpop(no_token, "select", "sub1", "isp-a"), 2, "VPOP_API_TOKEN_FILE")
    missing = {**no_token, "VPOP_API_TOKEN_FILE": str(tmp_path / "absent")}
    one_line(vpop(missing, "select", "sub1", "isp-a"), 2, "cannot read")
    token = tmp_path / "t"
    token.write_text("x")
    down = {
        **no_token,
        "VPOP_API_TOKEN_FILE": str(token),
        "VPOP_SERVER_URL": f"http://127.0.0.1:{_closed_port()}",
    }
    one_line(vpop(down, "select", "sub1", "isp-a"), 1, "cannot reach")
