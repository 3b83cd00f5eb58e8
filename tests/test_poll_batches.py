"""Counter polls in batches: the monitor's counters job asks several routers at once and
stores their answers in one transaction. What a batch stores is what each router's own poll
would; one router's failure, asking or storing, costs the others nothing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.poll_answers import answering
from tests.test_accounting_usage import fake_router, open_session, seed, traffic
from tests.test_locks import held_by_another_thread
from vpop.core.db import dispose_engines, session_scope
from vpop.jobs import scheduler
from vpop.jobs.queue import monitor_task
from vpop.monitoring import poller
from vpop.monitoring.models import CounterSample, PollLog

SETTINGS = {"counters_seconds": 60}


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A seeded database (sub1 and sub2 on rc1), the default one, and a poller with no past."""
    monkeypatch.setattr(poller, "_last", {})
    monkeypatch.setattr(poller, "_polled", {})
    monkeypatch.setattr(poller, "_states", {})
    database = seed(f"sqlite:///{tmp_path}/vpop.sqlite")
    monkeypatch.setenv("VPOP_DATABASE_URL", database)
    try:
        yield database
    finally:
        dispose_engines()


def rc2(n: int) -> dict[str, Any]:
    """rc2's answer: no lines, an uplink that carried ``n`` bytes."""
    return fake_router({}, n)


def stored(url: str) -> list[tuple[Any, ...]]:
    """Every sample as a user reads it back: router, series, counters, note, session."""
    with session_scope(url) as session:
        rows = session.scalars(select(CounterSample).order_by(CounterSample.id)).all()
        return sorted(
            (r.router, r.kind, r.name, r.rx_bytes, r.tx_bytes, r.note, r.session_id) for r in rows
        )


def polls(url: str) -> list[tuple[str, bool, str | None]]:
    with session_scope(url) as session:
        rows = session.scalars(select(PollLog).order_by(PollLog.id)).all()
        return [(r.router, r.ok, r.error) for r in rows]


def test_a_batch_stores_what_each_routers_own_poll_would(
    tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = [
        fake_router({"sub1": 1_000, "sub2": 10}, 50_000),
        rc2(7_000),
        fake_router({"sub1": 4_000, "sub2": 30}, 80_000),
        rc2(9_000),
    ]
    sid = open_session(url, 1, "isp-a", datetime.now(UTC) - timedelta(hours=1))
    settings = poller.MonitorSettings(**SETTINGS)
    answering(monkeypatch, answers)
    for _ in range(2):
        polled = poller.poll_counters_many(["rc1", "rc2"], url, settings)
        assert list(polled) == ["rc1", "rc2"]
        assert [summary["samples"] for summary in polled.values()] == [4, 2]
    # the same answers, one router per poll, in a database of their own
    alone = seed(f"sqlite:///{tmp_path}/alone.sqlite")
    alone_sid = open_session(alone, 1, "isp-a", datetime.now(UTC) - timedelta(hours=1))
    monkeypatch.setattr(poller, "_last", {})
    monkeypatch.setattr(poller, "_polled", {})
    answering(monkeypatch, answers)
    for _ in range(2):
        poller.poll_counters("rc1", alone, settings)
        poller.poll_counters("rc2", alone, settings)
    assert stored(url) == stored(alone)
    assert traffic(url, sid)[:4] == traffic(alone, alone_sid)[:4] == (3_000, 6_000, 30, 60)
    assert polls(url) == [("rc1", True, None), ("rc2", True, None)] * 2


def test_a_router_that_cannot_be_asked_costs_the_others_nothing(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    answering(
        monkeypatch,
        [RuntimeError("router rc1 is unreachable: timed out"), rc2(7_000)],
    )
    polled = poller.poll_counters_many(["rc1", "rc2"], url, poller.MonitorSettings(**SETTINGS))
    assert polled["rc1"] == {"error": "RuntimeError: router rc1 is unreachable: timed out"}
    assert polled["rc2"]["samples"] == 2
    assert {router for router, *_ in stored(url)} == {"rc2"}
    assert sorted(polls(url)) == [
        ("rc1", False, "RuntimeError: router rc1 is unreachable: timed out"),
        ("rc2", True, None),
    ]


def test_a_poll_that_cannot_be_stored_loses_only_its_own_router(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rc1's poll is stepped first in the shared transaction, then rc2's answer is refused:
    rc1's poll is stored on its own, counted from its last stored reading, not twice."""
    broken = rc2(8_000)
    del broken["interfaces"]["lo"]["drops"]
    answering(
        monkeypatch,
        [
            fake_router({"sub1": 1_000}, 0),
            rc2(7_000),
            fake_router({"sub1": 4_000}, 0),
            broken,
            fake_router({"sub1": 7_000}, 0),
            rc2(9_000),
        ],
    )
    sid = open_session(url, 1, "isp-a", datetime.now(UTC) - timedelta(hours=1))
    settings = poller.MonitorSettings(**SETTINGS)
    poller.poll_counters_many(["rc1", "rc2"], url, settings)
    polled = poller.poll_counters_many(["rc1", "rc2"], url, settings)
    assert polled["rc1"]["samples"] == 3
    assert polled["rc2"] == {
        "error": "ValueError: counter series interface:lo lacks counter 'drops'"
    }
    poller.poll_counters_many(["rc1", "rc2"], url, settings)
    assert traffic(url, sid)[0] == 6_000  # 7,000 - 1,000: nothing lost, nothing twice
    sub1 = [rx for router, _, name, rx, *_ in stored(url) if name == "sub1"]
    assert sorted(sub1) == [1_000, 4_000, 7_000]
    assert polls(url).count(("rc2", False, polled["rc2"]["error"])) == 1


def test_the_counters_job_skips_a_router_whose_poll_runs_elsewhere(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    answering(monkeypatch, [rc2(7_000)])
    with held_by_another_thread("monitor:counters:rc1"):
        result = monitor_task.call_local("counters", ["rc1", "rc2"])
    assert list(result) == ["rc2"] and result["rc2"]["samples"] == 2
    assert [router for router, *_ in polls(url)] == ["rc2"]
    with pytest.raises(ValueError, match="unknown monitoring job 'probes'"):
        monitor_task.call_local("probes", ["rc1", "rc2"])  # probes go one router per job


@pytest.mark.parametrize(
    ("batch", "jobs"),
    [
        (2, [["r1", "r2"], ["r3", "r4"], ["r5"]]),
        (8, [["r1", "r2", "r3", "r4", "r5"]]),
        (1, [["r1"], ["r2"], ["r3"], ["r4"], ["r5"]]),
    ],
)
def test_the_monitor_enqueues_a_counters_job_per_batch(
    monkeypatch: pytest.MonkeyPatch, batch: int, jobs: list[list[str]]
) -> None:
    monkeypatch.setattr(scheduler, "routers", lambda: ["r1", "r2", "r3", "r4", "r5"])
    seen: list[tuple[str, Any]] = []
    first = threading.Event()

    def record(job: str, routers: Any) -> None:
        seen.append((job, routers))
        first.set()

    settings = poller.MonitorSettings(
        counters_seconds=3600, probes_seconds=0, prune_seconds=0, batch=batch
    )
    monitor = scheduler.Monitor(record, settings, lease_seconds=0, payment_seconds=0)
    monitor.start()
    try:
        assert first.wait(30)
    finally:
        monitor.stop_event.set()
        monitor.join(timeout=30)
    assert seen == [("counters", job) for job in jobs]  # one cycle (the next is an hour away)


def test_a_series_first_read_by_a_poll_never_stored_starts_at_its_first_stored_sample(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sub2 first shows up in a poll whose transaction fails: the next stored sample of sub2
    is its first, without a rate from a reading nobody can see."""
    answering(
        monkeypatch,
        [
            fake_router({"sub1": 1_000}, 0),
            fake_router({"sub1": 2_000, "sub2": 500}, 0),
            fake_router({"sub1": 3_000, "sub2": 900}, 0),
        ],
    )
    settings = poller.MonitorSettings(**SETTINGS)
    poller.poll_counters("rc1", url, settings)
    insert = poller._insert_many  # noqa: SLF001

    def broken(*_args: Any) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(poller, "_insert_many", broken)
    assert poller.poll_counters_many(["rc1"], url, settings) == {
        "rc1": {"error": "RuntimeError: the database went away"}
    }
    monkeypatch.setattr(poller, "_insert_many", insert)
    poller.poll_counters("rc1", url, settings)
    with session_scope(url) as session:
        sub2 = session.execute(
            select(CounterSample.rx_bytes, CounterSample.rx_bps).where(CounterSample.name == "sub2")
        ).all()
        sub1 = session.scalars(
            select(CounterSample.rx_bps).where(CounterSample.name == "sub1")
        ).all()
    assert [tuple(row) for row in sub2] == [(900, None)]
    assert sub1[0] is None and sub1[1] is not None  # sub1 counts from its stored reading
    assert polls(url)[1] == ("rc1", False, "RuntimeError: the database went away")
