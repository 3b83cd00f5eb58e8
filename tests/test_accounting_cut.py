"""A move is cut where the router moved the traffic, and polls from several processes count once.

The engine reads a line's counters right after the push that moves it (the session it opens
keeps them as its baseline); the next poll gives the old session exactly what was counted up
to that reading and the new session the rest. The poller's cache of previous readings is
per process: when another process polled the router since, it reloads from the database.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests import poll_answers
from tests.test_accounting_usage import fake_router, open_session, poll, rollups, seed, traffic
from vpop.accounting.service import Measured, ServiceSession, switch_line
from vpop.core.db import dispose_engines, session_scope
from vpop.monitoring import poller
from vpop.monitoring.models import CounterSample, PollLog

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    try:
        yield seed(f"sqlite:///{tmp_path}/vpop.sqlite")
    finally:
        dispose_engines()


def move(url: str, at: datetime, baseline: tuple[int, int, int, int] | None) -> int:
    """Line 1 moves to isp-b at ``at``; its counters read then were ``baseline``."""
    with session_scope(url) as session:
        cut = None if baseline is None else (at - timedelta(milliseconds=5), baseline)
        return switch_line(session, line_id=1, isp_id="isp-b", at=at, cut=cut).id


def delta(after: tuple[int, int, int, int], before: tuple[int, int, int, int]) -> Measured:
    """The poll at T0 + 60 s whose previous reading (at T0) was ``before``."""
    d = [a - b for a, b in zip(after, before, strict=True)]
    return Measured(60.0, d[0], d[1], d[2], d[3], covered=True, after=after)


BEFORE = (1_000, 2_000, 10, 20)
AFTER = (5_000, 10_000, 50, 100)


def test_the_old_session_gets_exactly_what_was_counted_up_to_the_cut(url: str) -> None:
    old = open_session(url, 1, "isp-a", T0 - timedelta(hours=1))
    new = move(url, T0 + timedelta(seconds=20), baseline=(1_800, 2_100, 18, 21))
    poll(url, T0 + timedelta(seconds=60), {"sub1": delta(AFTER, BEFORE)})
    # by time the old session would get a third (1,333 bytes in); at the cut it gets 800
    assert traffic(url, old)[:4] == (800, 100, 8, 1)
    assert traffic(url, new)[:4] == (3_200, 7_900, 32, 79)
    assert traffic(url, old)[4] == pytest.approx(20.0, abs=0.01)
    assert traffic(url, new)[4] == pytest.approx(40.0, abs=0.01)
    by_isp = {k[2]: v[:4] for k, v in rollups(url, level="subscriber", period="hour").items()}
    assert by_isp == {"isp-a": (800, 100, 8, 1), "isp-b": (3_200, 7_900, 32, 79)}


def test_counters_that_do_not_fit_the_cut_are_shared_by_time(url: str) -> None:
    old = open_session(url, 1, "isp-a", T0 - timedelta(hours=1))
    new = move(url, T0 + timedelta(seconds=20), baseline=(900, 2_100, 18, 21))  # below before
    poll(url, T0 + timedelta(seconds=60), {"sub1": delta(AFTER, BEFORE)})
    assert traffic(url, old)[0] == 4_000 * 20 // 60
    assert traffic(url, old)[0] + traffic(url, new)[0] == 4_000


def test_a_move_without_a_cut_is_shared_by_time(url: str) -> None:
    old = open_session(url, 1, "isp-a", T0 - timedelta(hours=1))
    new = move(url, T0 + timedelta(seconds=30), baseline=None)
    poll(url, T0 + timedelta(seconds=60), {"sub1": delta(AFTER, BEFORE)})
    assert traffic(url, old)[0] == 2_000
    assert traffic(url, new)[0] == 2_000


def test_the_cut_and_the_sessions_baseline_are_stored(url: str) -> None:
    open_session(url, 1, "isp-a", T0 - timedelta(hours=1))
    new = move(url, T0, baseline=(1, 2, 3, 4))
    with session_scope(url) as session:
        row = session.get(ServiceSession, new)
        assert row is not None
        stored = (
            row.baseline_bytes_in,
            row.baseline_bytes_out,
            row.baseline_packets_in,
            row.baseline_packets_out,
        )
        assert stored == (1, 2, 3, 4)
        assert row.baseline_at == T0 - timedelta(milliseconds=5)


# -- the poller: another process's polls, and a failed poll -----------------------------------


@pytest.fixture
def fresh_poller(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(poller, "_last", {})
    monkeypatch.setattr(poller, "_polled", {})
    monkeypatch.setattr(poller, "_states", {})


def answering(monkeypatch: pytest.MonkeyPatch, *answers: dict[str, Any]) -> None:
    poll_answers.answering(monkeypatch, answers)


def other_process_polled(url: str, rx: int) -> None:
    """What a poll of rc1 by another process leaves: its line samples and its poll log."""
    at = datetime.now(UTC)
    with session_scope(url) as session:
        for name in ("sub1", "sub2"):
            session.add(
                CounterSample(
                    router="rc1", kind="line", name=name, at=at, rx_bytes=rx, tx_bytes=2 * rx
                )
            )
        session.add(PollLog(job="counters", router="rc1", at=at, seconds=0.01, ok=True))


def test_a_poll_after_another_process_polled_counts_only_what_came_since(
    url: str, monkeypatch: pytest.MonkeyPatch, fresh_poller: None
) -> None:
    sid = open_session(url, 1, "isp-a", datetime.now(UTC) - timedelta(hours=1))
    answering(
        monkeypatch,
        fake_router({"sub1": 1_000, "sub2": 0}, 0),
        fake_router({"sub1": 9_000, "sub2": 0}, 0),
    )
    settings = poller.MonitorSettings(counters_seconds=60)
    poller.poll_counters("rc1", url, settings)
    # another worker polled rc1 (and counted up to 6,000 there); this process's cache is stale
    other_process_polled(url, 6_000)
    poller.poll_counters("rc1", url, settings)
    assert traffic(url, sid)[0] == 3_000  # 9,000 - 6,000, not 9,000 - 1,000


def test_after_a_failed_poll_the_next_counts_from_the_last_stored_reading(
    url: str, monkeypatch: pytest.MonkeyPatch, fresh_poller: None
) -> None:
    sid = open_session(url, 1, "isp-a", datetime.now(UTC) - timedelta(hours=1))
    answering(
        monkeypatch,
        fake_router({"sub1": 1_000}, 0),
        fake_router({"sub1": 4_000}, 0),
        fake_router({"sub1": 7_000}, 0),
    )
    settings = poller.MonitorSettings(counters_seconds=60)
    poller.poll_counters("rc1", url, settings)
    insert = poller._insert_many  # noqa: SLF001

    def broken(*_args: Any) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(poller, "_insert_many", broken)
    with pytest.raises(RuntimeError):
        poller.poll_counters("rc1", url, settings)
    monkeypatch.setattr(poller, "_insert_many", insert)
    poller.poll_counters("rc1", url, settings)
    assert traffic(url, sid)[0] == 6_000  # nothing between the stored 1,000 and 7,000 lost
    with session_scope(url) as session:
        stored = session.scalars(
            select(CounterSample.rx_bytes).where(CounterSample.name == "sub1")
        ).all()
    assert sorted(stored) == [1_000, 7_000]


def test_a_report_read_from_raw_samples_cuts_a_move_as_the_writer_did(
    url: str, monkeypatch: pytest.MonkeyPatch, fresh_poller: None
) -> None:
    from vpop.reports.service import usage_report

    old = open_session(url, 1, "isp-a", datetime.now(UTC) - timedelta(hours=1))
    answering(monkeypatch, fake_router({"sub1": 1_000}, 0), fake_router({"sub1": 5_000}, 0))
    settings = poller.MonitorSettings(counters_seconds=60)
    first = datetime.now(UTC)
    poller.poll_counters("rc1", url, settings)
    with session_scope(url) as session:  # the move, cut at 1,800 bytes in (3,600 out)
        at = datetime.now(UTC)
        new = switch_line(
            session, line_id=1, isp_id="isp-b", at=at, cut=(at, (1_800, 3_600, 18, 36))
        ).id
    poller.poll_counters("rc1", url, settings)
    assert (traffic(url, old)[0], traffic(url, new)[0]) == (800, 3_200)
    # a window of a few seconds: no whole hour in it, every figure comes from raw samples
    window = (first - timedelta(seconds=1), datetime.now(UTC) + timedelta(seconds=1))
    report = usage_report(url, *window, by="subscriber")
    by_isp = {row["isp"]: row["bytes_in"] for row in report["rows"]}
    assert by_isp == {"isp-a": 800, "isp-b": 3_200}
