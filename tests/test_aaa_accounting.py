"""Accounting: at-least-once delivery gives one session with exact totals; Stop without Start,
Interim after Stop, Accounting-On; attribution from the decision in Class."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.test_aaa_support import hexed, seeded_database
from tests.test_postgres import pg_url  # noqa: F401 (fixture)
from vpop.aaa.accounting import GIGAWORD, account, event_time
from vpop.aaa.models import RadiusSession
from vpop.aaa.policy import authorize
from vpop.aaa.rules import add_rule
from vpop.core.db import session_scope
from vpop.core.errors import BadInput


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated, seeded SQLite database."""
    yield from seeded_database(tmp_path)


T0 = datetime(2024, 12, 2, 0, 40, tzinfo=UTC)


def stamp(seconds: int) -> str:
    """Event-Timestamp as rlm_rest sends it, ``seconds`` after T0."""
    at = datetime.fromtimestamp(T0.timestamp() + seconds, UTC)
    return at.strftime("%b %e %Y %H:%M:%S UTC")


def request(
    status: str, at: int, klass: str | None = None, sid: str = "s-1", **counters: int
) -> dict[str, list[str]]:
    """An Accounting-Request as rlm_rest hands it to vpop."""
    attributes = {
        "Acct-Status-Type": [status],
        "Acct-Session-Id": [sid],
        "Event-Timestamp": [stamp(at)],
        "NAS-Identifier": ["bng-accel"],
        "User-Name": ["sub3@isp.example"],
        "Framed-IP-Address": ["192.0.2.13"],
    }
    if klass is not None:
        attributes["Class"] = [hexed(klass)]
    for name, value in counters.items():
        attributes[name.replace("_", "-")] = [str(value)]
    return attributes


def sessions(url: str) -> list[RadiusSession]:
    with session_scope(url) as session:
        return list(session.scalars(select(RadiusSession).order_by(RadiusSession.id)))


def twice(attributes: dict[str, list[str]], url: str) -> None:
    """Send it, then its retransmission with a new Acct-Delay-Time."""
    account({**attributes, "Acct-Delay-Time": ["0"]}, nas="bng-accel", url=url)
    account({**attributes, "Acct-Delay-Time": ["7"]}, nas="bng-accel", url=url)


def test_event_timestamp_forms() -> None:
    assert event_time("Dec  2 2024 00:40:00 UTC") == T0
    assert event_time(str(int(T0.timestamp()))) == T0
    with pytest.raises(BadInput):
        event_time("Dec  2 2024 01:40:00 CET")


def accepted_class(url: str) -> tuple[str, str]:
    with session_scope(url) as session:
        add_rule(session, "calling_prefix", "+3120555", "isp-c", actor="test")
    result = authorize({"Calling-Station-Id": ["+31205550003"]}, nas="bng-accel", url=url)
    assert result.accept
    return result.decision_id, result.reply["reply:Class"]["value"]


def test_start_interims_stop_each_twice_give_one_session_with_exact_totals(url: str) -> None:
    decision_id, klass = accepted_class(url)
    twice(request("Start", 0, klass), url)
    twice(
        request(
            "Interim-Update",
            300,
            klass,
            Acct_Session_Time=300,
            Acct_Input_Octets=1000,
            Acct_Output_Octets=4_000_000_000,
            Acct_Input_Packets=10,
            Acct_Output_Packets=3000,
        ),
        url,
    )
    # crosses 2**32 output octets: Gigawords 1 and a small remainder
    twice(
        request(
            "Interim-Update",
            600,
            klass,
            Acct_Session_Time=600,
            Acct_Input_Octets=2000,
            Acct_Output_Octets=5,
            Acct_Output_Gigawords=1,
            Acct_Input_Packets=20,
            Acct_Output_Packets=6000,
        ),
        url,
    )
    stop = request(
        "Stop",
        700,
        klass,
        Acct_Session_Time=700,
        Acct_Input_Octets=2500,
        Acct_Output_Octets=100,
        Acct_Output_Gigawords=1,
        Acct_Input_Packets=25,
        Acct_Output_Packets=6100,
    )
    stop["Acct-Terminate-Cause"] = ["User-Request"]
    twice(stop, url)
    # a late, reordered Interim after the Stop: nothing changes, nothing reopens
    twice(request("Interim-Update", 300, klass, Acct_Session_Time=300, Acct_Input_Octets=1000), url)
    (row,) = sessions(url)
    assert (row.nas, row.acct_session_id, row.decision_id) == ("bng-accel", "s-1", decision_id)
    assert (row.subscriber_id, row.line_id, row.isp_id) == ("sub3", 3, "isp-c")
    assert (row.user_name, row.framed_ip) == ("sub3@isp.example", "192.0.2.13")
    assert row.started_at == T0
    assert row.stopped_at == datetime.fromtimestamp(T0.timestamp() + 700, UTC)
    assert (row.closed_by, row.stop_cause, row.session_time) == ("stop", "User-Request", 700)
    assert (row.input_octets, row.output_octets) == (2500, GIGAWORD + 100)
    assert (row.input_packets, row.output_packets) == (25, 6100)
    assert row.updated_at == row.stopped_at


def test_stop_without_start_inserts_a_closed_session(url: str) -> None:
    _, klass = accepted_class(url)
    twice(request("Stop", 1000, klass, Acct_Session_Time=400, Acct_Input_Octets=9), url)
    (row,) = sessions(url)
    assert row.started_at == datetime.fromtimestamp(T0.timestamp() + 600, UTC)
    assert row.stopped_at == datetime.fromtimestamp(T0.timestamp() + 1000, UTC)
    assert (row.closed_by, row.input_octets, row.isp_id) == ("stop", 9, "isp-c")


def test_interim_without_start_opens_and_a_late_start_keeps_the_earliest(url: str) -> None:
    _, klass = accepted_class(url)
    twice(request("Interim-Update", 500, klass, Acct_Session_Time=500, Acct_Input_Octets=50), url)
    twice(request("Start", 0, klass), url)
    (row,) = sessions(url)
    assert row.started_at == T0 and row.stopped_at is None and row.input_octets == 50


def test_interim_after_stop_never_reopens(url: str) -> None:
    twice(request("Start", 0, sid="s-9"), url)
    twice(request("Stop", 100, sid="s-9", Acct_Session_Time=100), url)
    twice(
        request("Interim-Update", 200, sid="s-9", Acct_Session_Time=200, Acct_Input_Octets=7), url
    )
    (row,) = sessions(url)
    assert row.closed_by == "stop"
    assert row.stopped_at == datetime.fromtimestamp(T0.timestamp() + 100, UTC)
    assert row.updated_at == row.stopped_at
    assert row.decision_id == "" and row.isp_id is None  # no Class: unattributed, still kept


def test_accounting_on_closes_the_nas_open_sessions_only(url: str) -> None:
    twice(request("Start", 0, sid="a"), url)
    twice(request("Start", 0, sid="b"), url)
    twice(request("Stop", 50, sid="b", Acct_Session_Time=50), url)
    other = request("Start", 0, sid="a")
    account(other, nas="other-nas", url=url)
    on = {"Acct-Status-Type": ["Accounting-On"], "Event-Timestamp": [stamp(900)]}
    twice(on, url)
    rows = {(r.nas, r.acct_session_id): r for r in sessions(url)}
    assert rows["bng-accel", "a"].closed_by == "nas-off"
    assert rows["bng-accel", "a"].stop_cause == "Accounting-On"
    assert rows["bng-accel", "b"].closed_by == "stop"
    assert rows["other-nas", "a"].stopped_at is None
    # the same session id after the reboot is a new session (a new Class)
    _, klass = accepted_class(url)
    twice(request("Start", 1000, klass, sid="a"), url)
    assert len(sessions(url)) == 4


def test_the_same_session_id_under_another_decision_is_another_session(url: str) -> None:
    _, first = accepted_class(url)
    second = authorize({"Calling-Station-Id": ["+31205550003"]}, nas="bng-accel", url=url)
    twice(request("Start", 0, first), url)
    twice(request("Start", 10, second.reply["reply:Class"]["value"]), url)
    assert len(sessions(url)) == 2


@pytest.mark.parametrize(
    "broken",
    [
        {"Acct-Status-Type": ["Start"], "NAS-Identifier": ["n"]},
        {
            "Acct-Status-Type": ["Start"],
            "Acct-Session-Id": ["x"],
            "Acct-Input-Octets": ["-1"],
            "NAS-Identifier": ["n"],
        },
        {"Acct-Status-Type": ["Start"], "Acct-Session-Id": ["x"]},
    ],
    ids=["no-session-id", "bad-counter", "no-nas"],
)
def test_what_cannot_be_recorded_raises(url: str, broken: dict[str, Any]) -> None:
    with pytest.raises(BadInput):
        account(broken, nas=None, url=url)
    assert sessions(url) == []


def test_unknown_status_types_are_ignored(url: str) -> None:
    account({"Acct-Status-Type": ["Failed"], "NAS-Identifier": ["n"]}, nas=None, url=url)
    assert sessions(url) == []


def _packets(klass: str) -> list[dict[str, list[str]]]:
    """A whole session's packets, each with two retransmissions (new Acct-Delay-Time)."""
    start = request("Start", 0, klass, sid="c-1")
    interim = request(
        "Interim-Update",
        300,
        klass,
        sid="c-1",
        Acct_Session_Time=300,
        Acct_Input_Octets=10,
        Acct_Output_Octets=4_000_000_000,
    )
    crossing = request(
        "Interim-Update",
        600,
        klass,
        sid="c-1",
        Acct_Session_Time=600,
        Acct_Input_Octets=20,
        Acct_Output_Octets=1,
        Acct_Output_Gigawords=1,
    )
    stop = request(
        "Stop",
        700,
        klass,
        sid="c-1",
        Acct_Session_Time=700,
        Acct_Input_Octets=30,
        Acct_Output_Octets=2,
        Acct_Output_Gigawords=1,
    )
    return [
        {**packet, "Acct-Delay-Time": [str(delay)]}
        for packet in (start, interim, crossing, stop)
        for delay in (0, 3, 9)
    ]


def _concurrent_session_is_exact(database: str, seed_order: int) -> None:
    import random
    from concurrent.futures import ThreadPoolExecutor

    _, klass = accepted_class(database)
    packets = _packets(klass)
    random.Random(seed_order).shuffle(packets)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda p: account(p, nas="bng-accel", url=database), packets))
    (row,) = [r for r in sessions(database) if r.acct_session_id == "c-1"]
    assert row.started_at == T0 and row.closed_by == "stop"
    assert (row.input_octets, row.output_octets, row.session_time) == (30, GIGAWORD + 2, 700)
    assert (row.isp_id, row.subscriber_id) == ("isp-c", "sub3")


@pytest.mark.parametrize("seed_order", [1, 2, 3])
def test_concurrent_retransmissions_in_any_order_give_exact_totals_sqlite(
    url: str,
    seed_order: int,
) -> None:
    _concurrent_session_is_exact(url, seed_order)


@pytest.mark.skipif(
    not __import__("pathlib").Path("/usr/lib/postgresql/15/bin").exists(),
    reason="PostgreSQL 15 is not installed",
)
def test_concurrent_retransmissions_give_exact_totals_postgresql(pg_url: str) -> None:  # noqa: F811
    from tests.test_aaa_support import seed

    seed(pg_url)
    _concurrent_session_is_exact(pg_url, 4)
