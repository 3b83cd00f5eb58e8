"""RADIUS sessions that never get their Stop are closed for silence, kept, and end their
service sessions at their last record; a late Interim does not reopen them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.test_aaa_accounting import accepted_class, request, twice
from tests.test_aaa_support import seeded_database
from tests.test_accounting_radius import at, interim
from vpop.aaa.models import RadiusSession
from vpop.aaa.service import account, close_stale
from vpop.accounting.service import list_sessions
from vpop.core.db import session_scope
from vpop.core.settings import load_settings

INTERIM = load_settings().radius_interim_seconds


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    yield from seeded_database(tmp_path)


def radius_row(url: str) -> RadiusSession:
    with session_scope(url) as session:
        row = session.scalars(select(RadiusSession)).one()
        session.expunge(row)
        return row


def test_a_silent_session_is_closed_at_its_last_record_and_kept(url: str) -> None:
    _, klass = accepted_class(url)
    twice(request("Start", 0, klass), url)
    twice(interim(klass, 300, 1_000, 5_000), url)
    last = at(300)
    # three interim intervals of silence are not yet enough
    assert close_stale(url, now=last + timedelta(seconds=3 * INTERIM)) == []
    assert radius_row(url).stopped_at is None
    (closed,) = close_stale(url, now=last + timedelta(seconds=3 * INTERIM + 1))
    row = radius_row(url)
    assert (row.id, row.closed_by, row.stop_cause, row.stopped_at) == (
        closed,
        "stale",
        "Stale",
        last,
    )
    (service,) = list_sessions(url)
    assert (service["end_reason"], service["ended_at"]) == ("stale", last.isoformat())
    assert (service["bytes_in"], service["bytes_out"]) == (1_000, 5_000)
    assert close_stale(url, now=last + timedelta(days=1)) == []  # once


def test_a_live_session_is_left_open(url: str) -> None:
    _, klass = accepted_class(url)
    twice(request("Start", 0, klass), url)
    twice(interim(klass, 600, 10, 10), url)
    assert close_stale(url, now=at(600) + timedelta(seconds=INTERIM)) == []
    assert radius_row(url).stopped_at is None
    assert list_sessions(url)[0]["ended_at"] is None


def test_a_late_interim_counts_but_does_not_reopen(url: str) -> None:
    _, klass = accepted_class(url)
    twice(request("Start", 0, klass), url)
    twice(interim(klass, 300, 1_000, 5_000), url)
    close_stale(url, now=at(300) + timedelta(seconds=3 * INTERIM + 1))
    account(interim(klass, 2_000, 4_000, 9_000), nas="bng-accel", url=url)
    row = radius_row(url)
    assert (row.closed_by, row.stopped_at, row.input_octets) == ("stale", at(300), 4_000)
    (service,) = list_sessions(url)
    assert service["end_reason"] == "stale" and service["bytes_in"] == 4_000


def test_the_sweeper_closes_them_once_a_minute(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from vpop.jobs import queue

    monkeypatch.setenv("VPOP_DATABASE_URL", url)
    monkeypatch.setattr(queue, "_stale_radius_at", [])
    _, klass = accepted_class(url)
    twice(request("Start", 0, klass), url)  # 2024: long silent
    first = queue.sweep()["radius_stale"]
    assert first == [radius_row(url).id] and radius_row(url).closed_by == "stale"
    account(request("Start", 0, klass, sid="s-2"), nas="bng-accel", url=url)
    assert queue.sweep()["radius_stale"] == []  # searched less than a minute ago
