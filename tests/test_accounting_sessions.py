"""Service sessions: opened by a confirmed selection, kept for the same ISP, closed on a move
or when the line goes; listed and viewed as the API and pages show them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from tests.seeds import migrated_with_sub1
from vpop.accounting.service import (
    ServiceSession,
    end_line,
    list_sessions,
    session_view,
    switch_line,
)
from vpop.catalogue.models import Isp, Line, Selection
from vpop.core.db import dispose_engines, session_scope
from vpop.core.errors import BadInput, NotFound
from vpop.selection.confirm import confirm_selection
from vpop.selection.models import Order

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
VIEW_KEYS = {
    "id",
    "source",
    "line",
    "subscriber",
    "isp",
    "router",
    "interface",
    "order",
    "radius_session",
    "started_at",
    "ended_at",
    "end_reason",
    "bytes_in",
    "bytes_out",
    "packets_in",
    "packets_out",
    "covered_seconds",
}


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    """sub1's line on rc1 (line 1), isp-a and isp-b, in a fresh migrated SQLite file."""
    database = migrated_with_sub1(f"sqlite:///{tmp_path}/vpop.sqlite")
    with session_scope(database) as session:
        session.add(Isp(id="isp-b", name="ISP B", outbound_deny=[]))
    try:
        yield database
    finally:
        dispose_engines()


def switch(url: str, isp: str, at: datetime, order: int | None = None) -> int:
    with session_scope(url) as session:
        return switch_line(session, line_id=1, isp_id=isp, at=at, order_id=order).id


def test_a_switch_opens_a_session_for_the_line_subscriber_and_router(url: str) -> None:
    switch(url, "isp-a", T0)
    (view,) = list_sessions(url)
    assert set(view) == VIEW_KEYS
    assert view["source"] == "selection"
    assert (view["line"], view["subscriber"], view["isp"]) == (1, "sub1", "isp-a")
    assert (view["router"], view["interface"]) == ("rc1", "sub1")
    assert view["started_at"] == "2026-03-01T12:00:00+00:00"
    assert view["ended_at"] is None and view["end_reason"] is None
    assert (view["bytes_in"], view["bytes_out"], view["covered_seconds"]) == (0, 0, 0.0)


def test_the_same_isp_again_keeps_the_session(url: str) -> None:
    first = switch(url, "isp-a", T0)
    assert switch(url, "isp-a", T0 + timedelta(hours=1)) == first
    (view,) = list_sessions(url)
    assert view["started_at"] == "2026-03-01T12:00:00+00:00" and view["ended_at"] is None


def test_a_move_closes_the_old_session_and_opens_one_for_the_new_isp(url: str) -> None:
    old = switch(url, "isp-a", T0)
    new = switch(url, "isp-b", T0 + timedelta(minutes=30))
    assert new != old
    views = {v["id"]: v for v in list_sessions(url)}
    assert views[old]["ended_at"] == "2026-03-01T12:30:00+00:00"
    assert views[old]["end_reason"] == "moved"
    assert views[new]["isp"] == "isp-b" and views[new]["ended_at"] is None
    assert views[new]["started_at"] == views[old]["ended_at"]


def test_one_open_selection_session_per_line_is_held_by_the_database(url: str) -> None:
    switch(url, "isp-a", T0)
    with pytest.raises(IntegrityError), session_scope(url) as session:
        session.add(
            ServiceSession(
                source="selection", line_id=1, subscriber_id="sub1", isp_id="isp-b", started_at=T0
            )
        )


def test_removing_the_line_ends_its_open_sessions(url: str) -> None:
    switch(url, "isp-a", T0)
    with session_scope(url) as session:
        closed = end_line(session, line_id=1, at=T0 + timedelta(hours=2))
        again = end_line(session, line_id=1, at=T0 + timedelta(hours=3))
    assert (closed, again) == (1, 0)
    (view,) = list_sessions(url)
    assert view["end_reason"] == "line-removed"
    assert view["ended_at"] == "2026-03-01T14:00:00+00:00"


def test_an_unknown_line_cannot_be_switched(url: str) -> None:
    with pytest.raises(NotFound) as raised, session_scope(url) as session:
        switch_line(session, line_id=99, isp_id="isp-a", at=T0)
    assert raised.value.code == "VPOP-404-LINE"


def test_the_selection_engine_opens_and_moves_sessions_when_it_confirms(url: str) -> None:
    orders = []
    for isp in ("isp-a", "isp-b"):
        with session_scope(url) as session:
            order = Order(line_id=1, isp_id=isp, router="rc1", requester="test")
            session.add(order)
            session.flush()
            confirm_selection(session, order)  # what a successful run does
            orders.append(order.id)
    with session_scope(url) as session:
        selection = session.get(Selection, 1)
        assert selection is not None and selection.isp_id == "isp-b"
    views = list_sessions(url)
    assert [(v["isp"], v["order"], v["end_reason"]) for v in views] == [
        ("isp-b", orders[1], None),
        ("isp-a", orders[0], "moved"),
    ]


def seed_history(url: str) -> None:
    """Line 1: isp-a 12:00-13:00, then isp-b (open); line rc2 sub2: isp-a 12:30-12:45."""
    switch(url, "isp-a", T0)
    switch(url, "isp-b", T0 + timedelta(hours=1))
    with session_scope(url) as session:
        session.add(
            Line(subscriber_id="sub1", router="rc2", interface="sub2", prefix="192.0.2.6/32")
        )
        session.flush()
        line = session.scalars(select(Line).where(Line.interface == "sub2")).one()
        switch_line(session, line_id=line.id, isp_id="isp-a", at=T0 + timedelta(minutes=30))
        end_line(session, line_id=line.id, at=T0 + timedelta(minutes=45))


def spans(views: list[dict[str, Any]]) -> list[tuple[str, str, str | None]]:
    return [(v["interface"], v["isp"], v["end_reason"]) for v in views]


def test_listing_filters_and_orders_newest_first(url: str) -> None:
    seed_history(url)
    everything = list_sessions(url)
    assert spans(everything) == [
        ("sub1", "isp-b", None),
        ("sub2", "isp-a", "line-removed"),
        ("sub1", "isp-a", "moved"),
    ]
    assert spans(list_sessions(url, isp="isp-a")) == spans(everything)[1:]
    assert spans(list_sessions(url, line=1)) == [spans(everything)[0], spans(everything)[2]]
    assert spans(list_sessions(url, open_only=True)) == spans(everything)[:1]
    assert spans(list_sessions(url, open_only=False)) == spans(everything)[1:]
    assert list_sessions(url, subscriber="sub9") == []
    assert spans(list_sessions(url, limit=1)) == spans(everything)[:1]


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (T0 + timedelta(minutes=50), T0 + timedelta(minutes=55), ["isp-a"]),
        (T0 + timedelta(minutes=40), T0 + timedelta(minutes=50), ["isp-a", "isp-a"]),
        # a session ending exactly at the window's start does not overlap it
        (T0 + timedelta(minutes=45), T0 + timedelta(minutes=50), ["isp-a"]),
        # nor one starting exactly at its end
        (T0 + timedelta(minutes=50), T0 + timedelta(hours=1), ["isp-a"]),
        (T0 + timedelta(hours=5), T0 + timedelta(hours=6), ["isp-b"]),  # open: still running
        (T0 - timedelta(hours=2), T0, []),
    ],
    ids=["inside-one", "two-overlap", "ended-at-start", "starts-at-end", "open", "before"],
)
def test_listing_returns_sessions_overlapping_the_window(
    url: str, start: datetime, end: datetime, expected: list[str]
) -> None:
    seed_history(url)
    assert [v["isp"] for v in list_sessions(url, start=start, end=end)] == expected


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"limit": 0}, "VPOP-400-RANGE"),
        ({"limit": 1001}, "VPOP-400-RANGE"),
        ({"start": T0, "end": T0}, "VPOP-400-TIME"),
    ],
    ids=["limit-0", "limit-1001", "empty-window"],
)
def test_listing_refuses_bad_arguments(url: str, kwargs: dict[str, Any], code: str) -> None:
    with pytest.raises(BadInput) as raised:
        list_sessions(url, **kwargs)
    assert raised.value.code == code


def test_view_of_a_closed_session_with_traffic(url: str) -> None:
    row = ServiceSession(
        id=7,
        source="radius",
        line_id=1,
        subscriber_id="sub1",
        isp_id="isp-a",
        radius_session_id=3,
        started_at=T0,
        ended_at=T0 + timedelta(seconds=90),
        end_reason="radius-stop",
        bytes_in=10,
        bytes_out=2**40,
        packets_in=1,
        packets_out=2,
        covered_seconds=90.0,
    )
    view = session_view(row)
    assert view["ended_at"] == "2026-03-01T12:01:30+00:00"
    assert (view["radius_session"], view["bytes_out"], view["end_reason"]) == (
        3,
        2**40,
        "radius-stop",
    )


def test_registering_a_fresh_lab_ends_the_lab_lines_sessions(url: str) -> None:
    from vpop.lab.registry import register_lab

    entry = {
        "router": "rc1",
        "interface": "sub1",
        "subscriber": "sub1",
        "prefix": "192.0.2.2/32",
        "gateway": "192.0.2.1/30",
        "calling_number": "+31205550001",
        "circuit_id": "rc1:sub1",
    }
    switch(url, "isp-b", T0)
    with session_scope(url) as session:
        session.add(Selection(line_id=1, isp_id="isp-b"))
    register_lab({"lines": [entry]}, url)
    (view,) = list_sessions(url)
    assert view["end_reason"] == "line-removed" and view["ended_at"] is not None
    with session_scope(url) as session:
        assert session.get(Selection, 1) is None
