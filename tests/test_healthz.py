"""``/healthz`` reports the queue's and the routers' real state, and the queue keeps no results."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.seeds import migrated_with_sub1
from vpop.catalogue.models import Line
from vpop.core.db import session_scope
from vpop.core.locks import Lock
from vpop.core.time import utcnow
from vpop.monitoring.service import PollLog
from vpop.selection.service import Order, OrderStatus
from webhooks import create_app

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("VPOP_QUEUE_URL", f"sqlite:///{tmp_path / 'queue.sqlite'}")
    url = f"sqlite:///{tmp_path / 'vpop.sqlite'}"
    migrated_with_sub1(url)
    return url


@pytest.fixture
def client(db: str) -> FlaskClient:
    return create_app({"DATABASE_URL": db, "SECRET_KEY": "test", "TESTING": True}).test_client()


def _health(client: FlaskClient) -> tuple[int, dict[str, Any]]:
    response = client.get("/healthz")
    body = response.get_json()
    assert isinstance(body, dict)
    return response.status_code, body


def test_ok_when_nothing_is_wrong(client: FlaskClient) -> None:
    status, body = _health(client)
    assert status == 200, body
    assert body["status"] == "ok" and body["reasons"] == []
    assert body["queue"] == {"reachable": True}
    assert body["stuck_locks"] == [] and body["failing_routers"] == []
    assert body["oldest_waiting_order_seconds"] is None


def test_a_lock_held_past_its_lease_is_degraded(client: FlaskClient, db: str) -> None:
    with session_scope(db) as session:
        session.add(
            Lock(
                name="router:rc1",
                holder="host:4242:worker/dead",
                token=7,
                acquired_at=utcnow() - timedelta(seconds=30),
                expires_at=utcnow() - timedelta(seconds=15),
            )
        )
        session.add(
            Lock(
                name="router:rc2",
                holder="host:1:w/live",
                token=1,
                expires_at=utcnow() + timedelta(seconds=15),
            )
        )
    status, body = _health(client)
    assert status == 503
    assert body["status"] == "degraded"
    assert [lock["name"] for lock in body["stuck_locks"]] == ["router:rc1"]
    assert any("lock router:rc1 is held past its lease" in r for r in body["reasons"])


def test_an_order_waiting_too_long_is_degraded(client: FlaskClient, db: str) -> None:
    with session_scope(db) as session:
        line = session.query(Line).one()
        session.add(
            Order(
                line_id=line.id,
                router="rc1",
                isp_id="isp-a",
                requester="test",
                status=OrderStatus.RECEIVED.value,
                created_at=utcnow() - timedelta(seconds=120),
            )
        )
    status, body = _health(client)
    assert status == 503, body
    assert body["oldest_waiting_order_seconds"] >= 120
    assert any("an order has waited" in r for r in body["reasons"])


def test_a_fresh_waiting_order_is_fine(client: FlaskClient, db: str) -> None:
    with session_scope(db) as session:
        line = session.query(Line).one()
        session.add(Order(line_id=line.id, router="rc1", isp_id="isp-a", requester="t"))
    status, body = _health(client)
    assert status == 200, body
    assert 0 <= body["oldest_waiting_order_seconds"] < 60


def test_a_router_whose_last_poll_failed_is_degraded(client: FlaskClient, db: str) -> None:
    with session_scope(db) as session:
        at = utcnow() - timedelta(seconds=20)
        session.add(PollLog(job="counters", router="rc1", at=at, seconds=0.1, ok=True))
        session.add(PollLog(job="counters", router="rc2", at=at, seconds=0.1, ok=True))
        session.add(
            PollLog(
                job="counters",
                router="rc2",
                at=at + timedelta(seconds=5),
                seconds=5.0,
                ok=False,
                error="router rc2 is unreachable: timed out\ntraceback...",
            )
        )
    status, body = _health(client)
    assert status == 503, body
    assert [(p["router"], p["job"]) for p in body["failing_routers"]] == [("rc2", "counters")]
    assert body["reasons"] == [
        "router rc2: last counters poll failed: router rc2 is unreachable: timed out"
    ]


def test_the_queue_stores_no_results_after_a_run(db: str, tmp_path: Path) -> None:
    """A real task through the SQLite queue: executed, its result returned, nothing stored."""
    queue_file = tmp_path / "q.sqlite"
    code = (
        "import sqlite3, sys\n"
        "import vpop.jobs.queue as q\n"
        "assert q.huey.results is False\n"
        "q.monitor_task('prune', None)\n"
        "task = q.huey.dequeue()\n"
        "out = q.huey.execute(task)\n"
        "assert isinstance(out, dict), out\n"
        "assert q.huey.result_count() == 0, q.huey.result_count()\n"
        f"rows = sqlite3.connect({str(queue_file)!r}).execute('select count(*) from kv')\n"
        "print(rows.fetchone()[0])\n"
    )
    env = {
        **os.environ,
        "VPOP_DATABASE_URL": db,
        "VPOP_QUEUE_URL": f"sqlite:///{queue_file}",
    }
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "0"
