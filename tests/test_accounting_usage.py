"""Polled counters become session traffic and usage rollups: attribution to the open session,
a delta split across a switch, lease rollups from an uplink, the poller's own transaction,
retention, PostgreSQL, and a property test over generated counter series."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select, update

from tests.pg import PG_BIN
from tests.poll_answers import answering
from tests.test_postgres import pg_url  # noqa: F401 (fixture)
from vpop.accounting.service import (
    Measured,
    ServiceSession,
    UsageRollup,
    measured,
    record_poll,
    switch_line,
)
from vpop.catalogue.models import Isp, Line, Subscriber
from vpop.core.db import dispose_engines, session_scope
from vpop.core.migrate import upgrade
from vpop.leasing.models import Lease
from vpop.monitoring import poller
from vpop.monitoring.counters import Reading, delta
from vpop.monitoring.models import CounterSample, Rollup
from vpop.monitoring.rollups import prune

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HOUR = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAY = datetime(2026, 3, 1, tzinfo=UTC)


def seed(url: str) -> str:
    """isp-a, isp-b; sub1 (line 1, rc1 sub1) and sub2 (line 2, rc1 sub2); lease 1 active
    (isp-a on rc1's uplink isp-a), lease 2 ended (isp-b on rc1's uplink isp-b)."""
    upgrade(url)
    with session_scope(url) as session:
        session.add_all([Isp(id=i, name=i, outbound_deny=[]) for i in ("isp-a", "isp-b")])
        session.add_all([Subscriber(id=s, name=s, profile={}) for s in ("sub1", "sub2")])
        session.flush()
        for n in (1, 2):
            session.add(
                Line(
                    id=n,
                    subscriber_id=f"sub{n}",
                    router="rc1",
                    interface=f"sub{n}",
                    prefix=f"192.0.2.{n * 4}/32",
                )
            )
        for n, isp, status in ((1, "isp-a", "active"), (2, "isp-b", "ended")):
            session.add(
                Lease(
                    id=n,
                    isp_id=isp,
                    router="rc1",
                    uplink=isp,
                    committed_mbps=100,
                    price_minor=1000,
                    status=status,
                )
            )
    return url


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    try:
        yield seed(f"sqlite:///{tmp_path}/vpop.sqlite")
    finally:
        dispose_engines()


def m(seconds: float, bytes_in: int, bytes_out: int, covered: bool = True) -> Measured:
    return Measured(
        seconds=seconds,
        bytes_in=bytes_in,
        bytes_out=bytes_out,
        packets_in=bytes_in // 100,
        packets_out=bytes_out // 100,
        covered=covered,
    )


def open_session(url: str, line: int, isp: str, at: datetime) -> int:
    with session_scope(url) as session:
        return switch_line(session, line_id=line, isp_id=isp, at=at).id


def poll(url: str, at: datetime, lines: dict[str, Measured], uplinks: Any = None) -> dict[str, int]:
    with session_scope(url) as session:
        return record_poll(session, router="rc1", at=at, lines=lines, uplinks=uplinks or {})


def traffic(url: str, session_id: int) -> tuple[int, int, int, int, float]:
    with session_scope(url) as session:
        row = session.get(ServiceSession, session_id)
        assert row is not None
        return row.bytes_in, row.bytes_out, row.packets_in, row.packets_out, row.covered_seconds


def rollups(url: str, **where: str) -> dict[tuple[str, str, str, str, datetime], tuple[Any, ...]]:
    """(period, level, isp, subject, bucket) -> (bytes in/out, packets in/out, covered, samples)."""
    query = select(UsageRollup).filter_by(**where)
    with session_scope(url) as session:
        return {
            (r.period, r.level, r.isp_id, r.subject, r.bucket): (
                r.bytes_in,
                r.bytes_out,
                r.packets_in,
                r.packets_out,
                r.covered_seconds,
                r.samples,
            )
            for r in session.scalars(query)
        }


def test_a_line_delta_goes_to_its_open_session_and_the_rollups(url: str) -> None:
    one = open_session(url, 1, "isp-a", T0 - timedelta(hours=1))
    two = open_session(url, 2, "isp-a", T0 - timedelta(hours=1))
    at = T0 + timedelta(minutes=10)
    first = poll(url, at, {"sub1": m(5, 1000, 5000), "sub2": m(5, 300, 700)})
    second = poll(url, at + timedelta(seconds=5), {"sub1": m(5, 10, 20, covered=False)})
    assert first == {"sub1": one, "sub2": two} and second == {"sub1": one}
    assert traffic(url, one) == (1010, 5020, 10, 50, 5.0)
    assert traffic(url, two) == (300, 700, 3, 7, 5.0)
    got = rollups(url)
    for period, bucket in (("hour", HOUR), ("day", DAY)):
        assert got[period, "subscriber", "isp-a", "sub1", bucket] == (1010, 5020, 10, 50, 5.0, 2)
        assert got[period, "subscriber", "isp-a", "sub2", bucket] == (300, 700, 3, 7, 5.0, 1)
        assert got[period, "isp", "isp-a", "isp-a", bucket] == (1310, 5720, 13, 57, 10.0, 3)
    assert len(got) == 6


def test_a_line_without_a_session_and_an_unknown_interface_count_nowhere(url: str) -> None:
    assert poll(url, T0, {"sub1": m(5, 1000, 5000), "ghost": m(5, 1, 1)}) == {}
    assert rollups(url) == {}


def test_a_delta_is_split_across_a_switch_in_proportion_to_time(url: str) -> None:
    old = open_session(url, 1, "isp-a", T0 - timedelta(hours=1))
    at = T0 + timedelta(minutes=10)
    new = open_session(url, 1, "isp-b", at - timedelta(seconds=2))  # 3 s old ISP, 2 s new
    assert poll(url, at, {"sub1": m(5, 1001, 7)}) == {"sub1": new}
    old_part, new_part = traffic(url, old), traffic(url, new)
    assert old_part[:2] == (600, 4) and new_part[:2] == (401, 3)  # integers, exact sums
    assert (old_part[2] + new_part[2], old_part[3] + new_part[3]) == (10, 0)
    assert (old_part[4], new_part[4]) == pytest.approx((3.0, 2.0))
    got = rollups(url, period="hour")
    assert got["hour", "isp", "isp-a", "isp-a", HOUR][:2] == (600, 4)
    assert got["hour", "isp", "isp-b", "isp-b", HOUR][:2] == (401, 3)
    assert got["hour", "subscriber", "isp-b", "sub1", HOUR][5] == 1
    # the next poll is wholly the new ISP's
    poll(url, at + timedelta(seconds=5), {"sub1": m(5, 50, 50)})
    assert traffic(url, old)[:2] == (600, 4) and traffic(url, new)[:2] == (451, 53)


def test_lease_rollups_come_from_the_active_leases_uplinks(url: str) -> None:
    uplinks = {"isp-a": m(5, 9000, 1000), "isp-b": m(5, 1, 1), "eth0": m(5, 2, 2)}
    poll(url, T0, {}, uplinks)
    poll(url, T0 + timedelta(seconds=5), {}, {"isp-a": m(60, 1, 1, covered=False)})
    got = rollups(url, level="lease")
    assert got == {
        ("hour", "lease", "isp-a", "1", HOUR): (9001, 1001, 90, 10, 5.0, 2),
        ("day", "lease", "isp-a", "1", DAY): (9001, 1001, 90, 10, 5.0, 2),
    }


def test_rollups_land_in_the_hour_and_day_of_the_poll(url: str) -> None:
    open_session(url, 1, "isp-a", T0 - timedelta(days=1))
    before, after = datetime(2026, 3, 1, 23, 59, 58, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC)
    poll(url, before, {"sub1": m(5, 1, 0)})
    poll(url, after, {"sub1": m(2, 2, 0)})
    got = rollups(url, level="subscriber")
    assert {(k[0], k[4]): v[0] for k, v in got.items()} == {
        ("hour", datetime(2026, 3, 1, 23, tzinfo=UTC)): 1,
        ("day", DAY): 1,
        ("hour", after): 2,
        ("day", after): 2,
    }


@pytest.mark.parametrize(
    ("previous", "current", "expected"),
    [
        (None, 10, None),  # first poll
        (100, 100, None),  # duplicate reading (same time)
        (0, 5, (5, True)),
        (0, 500, (500, False)),  # a gap: counted, not covered
    ],
    ids=["first", "duplicate", "regular", "gap"],
)
def test_measured_from_a_counter_delta(
    previous: int | None, current: int, expected: tuple[int, bool] | None
) -> None:
    def reading(at: int) -> Reading:
        return Reading(at=T0 + timedelta(seconds=at), values={"rx_bytes": 7 * at}, width=64)

    result = delta(
        reading(previous) if previous is not None else None, reading(current), expected_interval=5
    )
    got = measured(result.seconds, result.values, result.note, result.usable)
    assert (None if got is None else (got.bytes_in // 7, got.covered)) == (
        None if expected is None else (expected[0] - (previous or 0), expected[1])
    )


def test_a_reset_counts_since_the_restart_but_is_not_covered() -> None:
    before = Reading(at=T0, values={"rx_bytes": 10_000, "tx_bytes": 5}, width=64, boot_id="a")
    after = Reading(
        at=T0 + timedelta(seconds=5), values={"rx_bytes": 40, "tx_bytes": 9}, width=64, boot_id="b"
    )
    result = delta(before, after, expected_interval=5)
    assert measured(result.seconds, result.values, result.note, result.usable) == Measured(
        seconds=5.0, bytes_in=40, bytes_out=9, packets_in=0, packets_out=0, covered=False
    )


def test_prune_deletes_old_usage_rollups_and_never_sessions(url: str) -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    sid = open_session(url, 1, "isp-a", now - timedelta(days=500))
    poll(url, now - timedelta(days=450), {"sub1": m(5, 7, 7)})
    poll(url, now - timedelta(days=10), {"sub1": m(5, 3, 3)})
    with session_scope(url) as session:
        switch_line(session, line_id=1, isp_id="isp-b", at=now - timedelta(days=420))
    with session_scope(url) as session:
        deleted = prune(session, now=now, raw_days=7, rollup_days=400)
    assert deleted["usage_rollups"] == 4  # hour and day, subscriber and ISP, 450 days old
    assert {v[0] for v in rollups(url).values()} == {3}
    with session_scope(url) as session:
        assert session.scalar(select(func.count()).select_from(ServiceSession)) == 2
    assert traffic(url, sid)[:2] == (10, 10)


def fake_router(lines: dict[str, int], uplink: int) -> dict[str, Any]:
    """What ``collect_counters`` returns, with ``lines`` bytes per line and an uplink."""

    def counters(n: int) -> dict[str, int]:
        return {
            "rx_bytes": n,
            "tx_bytes": 2 * n,
            "rx_packets": n // 100,
            "tx_packets": n // 50,
            "errors": 0,
            "drops": 0,
        }

    return {
        "interfaces": {"isp-a": counters(uplink), "lo": counters(0)},
        "lines": {name: counters(n) for name, n in lines.items()},
        "width": 64,
        "boot_ids": {"interface": {}, "line": {}},
    }


def test_the_poller_attributes_in_its_own_transaction(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = iter(
        [fake_router({"sub1": 1000, "sub2": 10}, 50_000), fake_router({"sub1": 4000}, 80_000)]
    )
    answering(monkeypatch, answers)
    monkeypatch.setattr(poller, "_last", {})
    monkeypatch.setattr(poller, "_polled", {})
    monkeypatch.setattr(poller, "_states", {})
    sid = open_session(url, 1, "isp-b", datetime.now(UTC) - timedelta(hours=1))
    settings = poller.MonitorSettings(counters_seconds=60)
    poller.poll_counters("rc1", url, settings)  # first readings: nothing to count yet
    assert rollups(url) == {}
    poller.poll_counters("rc1", url, settings)
    assert traffic(url, sid)[:4] == (3000, 6000, 30, 60)
    with session_scope(url) as session:
        samples = session.execute(
            select(CounterSample.kind, CounterSample.name, CounterSample.session_id)
        ).all()
        util_mbps = session.scalar(select(func.count()).where(Rollup.series == "util_mbps:lease:1"))
    assert {(k, n, s) for k, n, s in samples if k == "line"} == {
        ("line", "sub1", None),
        ("line", "sub2", None),
        ("line", "sub1", sid),
    }
    assert all(s is None for k, _, s in samples if k == "interface")
    assert util_mbps == 1
    lease = {k[0]: v[:2] for k, v in rollups(url, level="lease").items()}
    assert lease == {"hour": (30_000, 60_000), "day": (30_000, 60_000)}
    isp = {k[0]: v[:2] for k, v in rollups(url, level="isp").items()}
    assert isp == {"hour": (3000, 6000), "day": (3000, 6000)}


def test_a_failed_poll_leaves_no_rollups_or_session_traffic(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = iter([fake_router({"sub1": 1000}, 0), fake_router({"sub1": 4000}, 0)])
    answering(monkeypatch, answers)
    monkeypatch.setattr(poller, "_last", {})
    monkeypatch.setattr(poller, "_polled", {})
    sid = open_session(url, 1, "isp-b", datetime.now(UTC) - timedelta(hours=1))
    settings = poller.MonitorSettings(counters_seconds=60)
    poller.poll_counters("rc1", url, settings)

    def broken(*_args: Any) -> None:
        raise RuntimeError("the database went away after the rollups")

    monkeypatch.setattr(poller, "_insert_many", broken)
    with pytest.raises(RuntimeError):
        poller.poll_counters("rc1", url, settings)
    assert rollups(url) == {} and traffic(url, sid)[:2] == (0, 0)


# -- both databases: the upsert merges into one row per key and bucket ------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def any_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield seed(f"sqlite:///{tmp_path}/vpop.sqlite")
        dispose_engines()
        return
    if not PG_BIN.exists():
        pytest.skip("PostgreSQL 15 is not installed")
    database = request.getfixturevalue("pg_url")
    upgrade(database)
    with session_scope(database) as session:  # the cluster is the module's: start clean
        for model in (UsageRollup, ServiceSession, Lease, Line, Subscriber, Isp):
            session.execute(delete(model))
    yield seed(database)


def test_upserts_merge_per_key_and_bucket(any_url: str) -> None:
    url = any_url
    sid = open_session(url, 1, "isp-a", T0 - timedelta(hours=1))
    for k in range(4):
        at = T0 + timedelta(minutes=20 * k)  # 12:00 .. 13:00: two hours, one day
        poll(url, at, {"sub1": m(5, 2**33 + k, k)}, {"isp-a": m(5, 10, 20)})
    assert traffic(url, sid)[:2] == (4 * 2**33 + 6, 6)
    got = rollups(url, level="subscriber")
    assert got["hour", "subscriber", "isp-a", "sub1", HOUR][:2] == (3 * 2**33 + 3, 3)
    assert got["hour", "subscriber", "isp-a", "sub1", HOUR][4:] == (15.0, 3)
    assert got["hour", "subscriber", "isp-a", "sub1", HOUR + timedelta(hours=1)][:2] == (
        2**33 + 3,
        3,
    )
    assert got["day", "subscriber", "isp-a", "sub1", DAY][:2] == (4 * 2**33 + 6, 6)
    assert rollups(url, level="lease")["day", "lease", "isp-a", "1", DAY][:2] == (40, 80)


# -- the property: rollups = session = raw deltas = the traffic generated ---------------------


@dataclass(frozen=True)
class Step:
    kind: str  # poll | gap | reset | stale (a duplicate or out-of-order answer)
    seconds: int
    rx: int
    tx: int


def steps(width: int) -> st.SearchStrategy[list[Step]]:
    top = 2**31 - 1 if width == 32 else 2**40
    return st.lists(
        st.builds(
            Step,
            kind=st.sampled_from(["poll", "poll", "poll", "gap", "reset", "stale"]),
            seconds=st.integers(1, 4000),
            rx=st.integers(0, top),
            tx=st.integers(0, top),
        ),
        min_size=1,
        max_size=40,
    )


@pytest.fixture(scope="module")
def series_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    try:
        yield seed(f"sqlite:///{tmp_path_factory.mktemp('series')}/vpop.sqlite")
    finally:
        dispose_engines()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    width=st.sampled_from([32, 64]),
    start=st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
    data=st.data(),
)
def test_rollups_equal_session_equal_raw_deltas_equal_traffic(
    series_url: str, width: int, start: tuple[int, int], data: st.DataObject
) -> None:
    url = series_url
    with session_scope(url) as session:
        session.execute(delete(UsageRollup))
        session.execute(delete(ServiceSession))
        sid = switch_line(session, line_id=1, isp_id="isp-b", at=T0 - timedelta(days=1)).id
        session.execute(update(ServiceSession).values(bytes_in=0))
    top = 1 << width
    at, boot, rx, tx = datetime(2026, 3, 1, 22, 50, tzinfo=UTC), 0, start[0], start[1]
    rx, tx = rx % top, tx % top
    previous = Reading(at=at, values={"rx_bytes": rx, "tx_bytes": tx}, width=width, boot_id="0")
    stale = previous
    sent = [0, 0]  # what the line carried after the first reading
    raw = [0, 0, 0.0]  # sum of the deltas' values, and their covered seconds
    for step in data.draw(steps(width)):
        if step.kind == "stale":  # an old answer again: never counted
            current = Reading(
                at=stale.at - timedelta(seconds=step.seconds % 3),
                values=stale.values,
                width=width,
                boot_id=stale.boot_id,
            )
        else:
            at += timedelta(seconds=step.seconds if step.kind == "gap" else 1 + step.seconds % 9)
            if step.kind == "reset":
                boot, rx, tx = boot + 1, 0, 0
            rx, tx = (rx + step.rx) % top, (tx + step.tx) % top
            sent[0], sent[1] = sent[0] + step.rx, sent[1] + step.tx
            current = Reading(
                at=at, values={"rx_bytes": rx, "tx_bytes": tx}, width=width, boot_id=str(boot)
            )
        result = delta(previous, current, expected_interval=10)
        if result.note != "duplicate":  # the baseline stays on a duplicate
            stale, previous = previous, current
        one = measured(result.seconds, result.values, result.note, result.usable)
        if one is not None:
            raw[0] += result.values["rx_bytes"]
            raw[1] += result.values["tx_bytes"]
            raw[2] += result.seconds if one.covered else 0.0
            with session_scope(url) as session:
                record_poll(session, router="rc1", at=current.at, lines={"sub1": one}, uplinks={})
    assert raw[:2] == sent
    session_totals = traffic(url, sid)
    assert list(session_totals[:2]) == sent
    assert session_totals[4] == pytest.approx(raw[2])
    for level in ("subscriber", "isp"):
        for period in ("hour", "day"):
            rows = rollups(url, period=period, level=level).values()
            assert [sum(r[0] for r in rows), sum(r[1] for r in rows)] == sent, (level, period)
            assert sum(r[4] for r in rows) == pytest.approx(raw[2])
