"""Ending a lease closes its open utilisation events at its end; reports stop counting them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from vpop.catalogue.models import Isp
from vpop.cli import leasing as cli_leasing
from vpop.cli.leasing import lease
from vpop.core.audit import AuditEntry
from vpop.core.db import dispose_engines, session_scope
from vpop.core.migrate import upgrade
from vpop.core.time import as_utc, utcnow
from vpop.leasing.models import Lease, UtilisationEvent
from vpop.reports.service import utilisation_report


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A migrated SQLite database with isp-b and its active lease 1 on rc1, started 1 h ago."""
    database = f"sqlite:///{tmp_path}/end.sqlite"
    monkeypatch.setenv("VPOP_DATABASE_URL", database)
    monkeypatch.setattr(cli_leasing, "lease_enqueuer", lambda: lambda lease_id: None)
    upgrade(database)
    with session_scope(database) as session:
        session.add(Isp(id="isp-b", name="Bravo"))
        session.flush()
        session.add(
            Lease(
                isp_id="isp-b",
                router="rc1",
                uplink="isp-b",
                committed_mbps=100,
                price_minor=1000,
                starts_at=utcnow() - timedelta(hours=1),
                status="active",
            )
        )
    try:
        yield database
    finally:
        dispose_engines()


def add_event(url: str, kind: str, opened_minutes_ago: float) -> None:
    """An open ``kind`` event of lease 1 that opened that many minutes ago."""
    with session_scope(url) as session:
        session.add(
            UtilisationEvent(
                lease_id=1,
                isp_id="isp-b",
                kind=kind,
                opened_at=utcnow() - timedelta(minutes=opened_minutes_ago),
                extreme_pct=5.0,
            )
        )


def test_ending_a_lease_closes_its_open_events_at_its_end(url: str) -> None:
    add_event(url, "under", 30)
    add_event(url, "over", 5)
    result = CliRunner().invoke(lease, ["end", "1"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    with session_scope(url) as session:
        ended = session.get(Lease, 1)
        assert ended is not None and ended.status == "ending" and ended.ends_at is not None
        events = session.scalars(select(UtilisationEvent)).all()
        assert [as_utc(e.closed_at) for e in events if e.closed_at] == [as_utc(ended.ends_at)] * 2
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "lease.end")).one()
        assert entry.details["events_closed"] == 2


def test_ending_before_the_planned_end_ends_now(url: str) -> None:
    with session_scope(url) as session:
        planned = session.get(Lease, 1)
        assert planned is not None
        planned.ends_at = utcnow() + timedelta(days=30)
    before = utcnow()
    assert CliRunner().invoke(lease, ["end", "1"], catch_exceptions=False).exit_code == 0
    with session_scope(url) as session:
        ended = session.get(Lease, 1)
        assert ended is not None and ended.ends_at is not None
        assert before <= as_utc(ended.ends_at) <= utcnow()


def test_the_report_counts_no_time_after_the_end(url: str) -> None:
    add_event(url, "under", 50)
    assert CliRunner().invoke(lease, ["end", "1"], catch_exceptions=False).exit_code == 0
    now = utcnow()
    later = now + timedelta(hours=2)
    (row,) = utilisation_report(url, now - timedelta(hours=2), later)
    assert row["events_under"] == 1
    assert 49 * 60 <= row["seconds_under"] <= 51 * 60


def test_an_ended_lease_with_an_event_left_open_stops_at_its_end(url: str) -> None:
    """Data from before the fix: the lease ended 40 minutes ago, its event never closed."""
    add_event(url, "under", 50)
    with session_scope(url) as session:
        old = session.get(Lease, 1)
        assert old is not None
        old.status = "ended"
        old.ends_at = old.ended_at = utcnow() - timedelta(minutes=40)
    now = utcnow()
    (row,) = utilisation_report(url, now - timedelta(hours=2), now + timedelta(hours=1))
    assert row["events_under"] == 1
    assert 9 * 60 <= row["seconds_under"] <= 11 * 60
    add_event(url, "over", 10)  # opened after the lease ended: not in the report
    (row,) = utilisation_report(url, now - timedelta(hours=2), now + timedelta(hours=1))
    assert row["events_over"] == 0 and row["seconds_over"] == 0
