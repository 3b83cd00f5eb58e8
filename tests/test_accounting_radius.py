"""RADIUS accounting mirrored into service sessions and usage rollups: Start / Interim / Stop
with retransmissions and reordering never double count; Accounting-Off closes; a line the
router already meters for the same ISP is not counted twice."""

from __future__ import annotations

import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.pg import PG_BIN
from tests.test_aaa_accounting import T0, accepted_class, request, stamp, twice
from tests.test_aaa_support import seed, seeded_database
from tests.test_postgres import pg_url  # noqa: F401 (fixture)
from vpop.aaa.accounting import GIGAWORD, account
from vpop.aaa.models import RadiusSession
from vpop.accounting.service import ServiceSession, UsageRollup, list_sessions, switch_line
from vpop.core.db import session_scope


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    """sub3's line (3, rc1) and isp-a..c, with NAS clients, in a fresh SQLite file."""
    yield from seeded_database(tmp_path)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def usage(url: str, level: str, period: str) -> dict[datetime, tuple[int, int, float, int]]:
    """bucket -> (bytes in, bytes out, covered seconds, samples) of sub3 / isp-c."""
    subject = "sub3" if level == "subscriber" else "isp-c"
    with session_scope(url) as session:
        rows = session.scalars(
            select(UsageRollup).where(
                UsageRollup.level == level,
                UsageRollup.period == period,
                UsageRollup.isp_id == "isp-c",
                UsageRollup.subject == subject,
            )
        )
        return {r.bucket: (r.bytes_in, r.bytes_out, r.covered_seconds, r.samples) for r in rows}


def interim(klass: str, seconds: int, octets_in: int, octets_out: int) -> dict[str, list[str]]:
    return request(
        "Interim-Update",
        seconds,
        klass,
        Acct_Session_Time=seconds,
        Acct_Input_Octets=octets_in,
        Acct_Output_Octets=octets_out % GIGAWORD,
        Acct_Output_Gigawords=octets_out // GIGAWORD,
        Acct_Input_Packets=octets_in // 100,
        Acct_Output_Packets=octets_out // 1000,
    )


def stop(klass: str, seconds: int, octets_in: int, octets_out: int) -> dict[str, list[str]]:
    packet = interim(klass, seconds, octets_in, octets_out)
    packet["Acct-Status-Type"] = ["Stop"]
    packet["Acct-Terminate-Cause"] = ["User-Request"]
    return packet


def test_start_interims_stop_retransmitted_count_once(url: str) -> None:
    _, klass = accepted_class(url)
    twice(request("Start", 0, klass), url)
    (opened,) = list_sessions(url)
    assert (opened["source"], opened["isp"], opened["subscriber"], opened["line"]) == (
        "radius",
        "isp-c",
        "sub3",
        3,
    )
    assert opened["started_at"] == "2024-12-02T00:40:00+00:00" and opened["bytes_in"] == 0
    twice(interim(klass, 300, 1000, 4_000_000_000), url)  # 00:45
    twice(interim(klass, 600, 2000, GIGAWORD + 5), url)  # 00:50
    twice(interim(klass, 1500, 2400, GIGAWORD + 50), url)  # 01:05: 900 s, within 3 x 300
    twice(stop(klass, 1600, 2500, GIGAWORD + 100), url)  # 01:06:40
    # late, reordered copies: nothing more is counted, nothing reopens
    twice(interim(klass, 300, 1000, 4_000_000_000), url)
    twice(stop(klass, 1600, 2500, GIGAWORD + 100), url)
    (view,) = list_sessions(url)
    assert (view["bytes_in"], view["bytes_out"]) == (2500, GIGAWORD + 100)
    assert (view["packets_in"], view["packets_out"]) == (25, (GIGAWORD + 100) // 1000)
    assert view["covered_seconds"] == 1600.0
    assert (view["end_reason"], view["ended_at"]) == ("radius-stop", "2024-12-02T01:06:40+00:00")
    with session_scope(url) as session:
        radius = session.scalars(select(RadiusSession)).one()
        assert view["radius_session"] == radius.id
    hours = usage(url, "subscriber", "hour")
    assert hours == {
        datetime(2024, 12, 2, 0, tzinfo=UTC): (2000, GIGAWORD + 5, 600.0, 2),
        datetime(2024, 12, 2, 1, tzinfo=UTC): (500, 95, 1000.0, 2),
    }
    assert usage(url, "isp", "hour") == hours
    assert usage(url, "subscriber", "day") == {
        datetime(2024, 12, 2, tzinfo=UTC): (2500, GIGAWORD + 100, 1600.0, 4)
    }


def test_an_interim_after_a_long_silence_counts_traffic_but_not_time(url: str) -> None:
    _, klass = accepted_class(url)
    twice(request("Start", 0, klass), url)
    twice(interim(klass, 300, 10, 10), url)
    twice(interim(klass, 300 + 3 * 300 + 1, 20, 30), url)  # more than three intervals later
    (view,) = list_sessions(url)
    assert (view["bytes_in"], view["bytes_out"], view["covered_seconds"]) == (20, 30, 300.0)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_any_order_of_delivery_gives_the_final_totals(url: str, order: int) -> None:
    _, klass = accepted_class(url)
    packets = [
        request("Start", 0, klass),
        interim(klass, 300, 100, 1000),
        interim(klass, 600, 200, 2000),
        stop(klass, 700, 250, 2600),
    ]
    random.Random(order).shuffle(packets)
    for packet in packets:
        twice(packet, url)
    (view,) = list_sessions(url)
    assert (view["bytes_in"], view["bytes_out"], view["end_reason"]) == (250, 2600, "radius-stop")
    assert view["started_at"] == "2024-12-02T00:40:00+00:00"
    days = usage(url, "subscriber", "day")
    assert [v[:2] for v in days.values()] == [(250, 2600)]


def test_accounting_off_closes_the_nas_sessions_with_their_counters(url: str) -> None:
    _, klass = accepted_class(url)
    twice(request("Start", 0, klass), url)
    twice(interim(klass, 300, 70, 80), url)
    off = {"Acct-Status-Type": ["Accounting-Off"], "Event-Timestamp": [stamp(900)]}
    twice(off, url)
    (view,) = list_sessions(url)
    assert (view["end_reason"], view["ended_at"]) == ("nas-off", "2024-12-02T00:55:00+00:00")
    assert (view["bytes_in"], view["bytes_out"]) == (70, 80)


def test_a_line_metered_by_the_router_for_the_same_isp_is_not_counted_twice(url: str) -> None:
    _, klass = accepted_class(url)
    with session_scope(url) as session:
        switch_line(session, line_id=3, isp_id="isp-c", at=at(-3600))
    twice(request("Start", 0, klass), url)
    twice(interim(klass, 300, 1000, 2000), url)
    twice(stop(klass, 400, 1500, 2500), url)
    assert [v["source"] for v in list_sessions(url)] == ["selection"]
    assert usage(url, "subscriber", "hour") == {}


def test_a_line_routed_to_another_isp_by_the_router_still_gets_its_radius_session(
    url: str,
) -> None:
    _, klass = accepted_class(url)
    with session_scope(url) as session:
        switch_line(session, line_id=3, isp_id="isp-a", at=at(-3600))
    twice(request("Start", 0, klass), url)
    twice(interim(klass, 300, 1000, 2000), url)
    sources = {v["source"]: (v["isp"], v["bytes_in"]) for v in list_sessions(url)}
    assert sources == {"selection": ("isp-a", 0), "radius": ("isp-c", 1000)}


def test_a_session_without_a_line_or_isp_is_not_mirrored(url: str) -> None:
    twice(request("Start", 0, sid="anon"), url)
    twice(request("Stop", 100, sid="anon", Acct_Session_Time=100, Acct_Input_Octets=5), url)
    assert list_sessions(url) == []
    with session_scope(url) as session:
        assert session.scalars(select(UsageRollup)).first() is None


def concurrent_deliveries(database: str, shuffle: int) -> None:
    """A whole session, each packet three times, delivered by eight threads at once."""
    _, klass = accepted_class(database)
    packets = [
        {**packet, "Acct-Delay-Time": [str(delay)]}
        for packet in (
            request("Start", 0, klass, sid="c-9"),
            {**interim(klass, 300, 10, 4_000_000_000), "Acct-Session-Id": ["c-9"]},
            {**interim(klass, 600, 20, GIGAWORD + 1), "Acct-Session-Id": ["c-9"]},
            {**stop(klass, 700, 30, GIGAWORD + 2), "Acct-Session-Id": ["c-9"]},
        )
        for delay in (0, 3, 9)
    ]
    random.Random(shuffle).shuffle(packets)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda p: account(p, nas="bng-accel", url=database), packets))
    with session_scope(database) as session:
        rows = list(
            session.scalars(
                select(ServiceSession).where(
                    ServiceSession.source == "radius", ServiceSession.subscriber_id == "sub3"
                )
            )
        )
        totals: dict[str, Any] = {"in": 0, "out": 0}
        for rollup in session.scalars(
            select(UsageRollup).where(UsageRollup.period == "day", UsageRollup.level == "isp")
        ):
            totals["in"] += rollup.bytes_in
            totals["out"] += rollup.bytes_out
    assert len(rows) == 1
    assert (rows[0].bytes_in, rows[0].bytes_out, rows[0].end_reason) == (
        30,
        GIGAWORD + 2,
        "radius-stop",
    )
    assert totals == {"in": 30, "out": GIGAWORD + 2}


@pytest.mark.parametrize("shuffle", [1, 2])
def test_concurrent_retransmissions_count_once_sqlite(url: str, shuffle: int) -> None:
    concurrent_deliveries(url, shuffle)


@pytest.mark.skipif(not PG_BIN.exists(), reason="PostgreSQL 15 is not installed")
def test_concurrent_retransmissions_count_once_postgresql(pg_url: str) -> None:  # noqa: F811
    seed(pg_url)
    concurrent_deliveries(pg_url, 5)
