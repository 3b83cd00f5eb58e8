"""vpop.rollups: 5-minute buckets, upserted aggregates, pruning raw rows before rollups."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vpop.catalogue.models import Isp
from vpop.core.db import get_engine, session_scope
from vpop.core.migrate import upgrade
from vpop.leasing.models import Lease, UtilisationSample
from vpop.monitoring.models import CounterSample, PollLog, QosSample, Rollup
from vpop.monitoring.rollups import add_to_rollup, bucket_start, prune, series_name

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SERIES = "qos:isp-b:rc1:latency_ms"


@pytest.fixture
def db_url(tmp_path: Path) -> Iterator[str]:
    """A fresh migrated SQLite file; its pooled connections are closed afterwards."""
    url = f"sqlite:///{tmp_path}/vpop.sqlite"
    try:
        upgrade(url)
        yield url
    finally:
        get_engine(url).dispose()


def rollups(session: Session) -> list[tuple[str, datetime, int, float, float, float]]:
    rows = session.scalars(select(Rollup).order_by(Rollup.series, Rollup.bucket))
    return [
        (r.series, r.bucket.replace(tzinfo=UTC), r.count, r.total, r.minimum, r.maximum)
        for r in rows
    ]


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (datetime(2026, 3, 1, 12, 3, 17, tzinfo=UTC), datetime(2026, 3, 1, 12, 0, tzinfo=UTC)),
        (datetime(2026, 3, 1, 12, 5, tzinfo=UTC), datetime(2026, 3, 1, 12, 5, tzinfo=UTC)),
        (
            datetime(2026, 3, 1, 12, 4, 59, 999999, tzinfo=UTC),
            datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
        ),
        (datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC), datetime(2026, 3, 1, 23, 55, tzinfo=UTC)),
        (
            datetime(2026, 3, 1, 14, 7, tzinfo=timezone(timedelta(hours=2))),
            datetime(2026, 3, 1, 12, 5, tzinfo=UTC),
        ),
        (
            datetime(2026, 3, 1, 12, 7, tzinfo=timezone(timedelta(minutes=-30))),
            datetime(2026, 3, 1, 12, 35, tzinfo=UTC),
        ),
    ],
    ids=["inside", "on-boundary", "just-before-boundary", "end-of-day", "cest", "half-hour-tz"],
)
def test_bucket_start(at: datetime, expected: datetime) -> None:
    start = bucket_start(at)
    assert start == expected
    assert start.tzinfo is UTC


def test_bucket_start_other_widths() -> None:
    at = datetime(2026, 3, 1, 12, 47, 30, tzinfo=UTC)
    assert bucket_start(at, minutes=1) == datetime(2026, 3, 1, 12, 47, tzinfo=UTC)
    assert bucket_start(at, minutes=60) == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert bucket_start(at, minutes=1440) == datetime(2026, 3, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("at", "minutes"),
    [(datetime(2026, 3, 1, 12, 0), 5), (NOW, 0), (NOW, -5)],
    ids=["naive", "zero-minutes", "negative-minutes"],
)
def test_bucket_start_refuses(at: datetime, minutes: int) -> None:
    with pytest.raises(ValueError):
        bucket_start(at, minutes)


def test_values_in_one_bucket_aggregate(db_url: str) -> None:
    with session_scope(db_url) as session:
        for second, value in [(0, 12.5), (61, 30.0), (122, 7.25), (299, 20.0)]:
            add_to_rollup(session, SERIES, NOW + timedelta(seconds=second), value)
    with session_scope(db_url) as session:
        assert rollups(session) == [(SERIES, NOW, 4, 69.75, 7.25, 30.0)]


def test_boundary_at_five_minutes_goes_to_the_next_bucket(db_url: str) -> None:
    with session_scope(db_url) as session:
        add_to_rollup(session, SERIES, NOW + timedelta(minutes=4, seconds=59), 1.0)
        add_to_rollup(session, SERIES, NOW + timedelta(minutes=5), 2.0)
        add_to_rollup(session, SERIES, NOW + timedelta(minutes=9, seconds=59), 4.0)
    with session_scope(db_url) as session:
        assert rollups(session) == [
            (SERIES, NOW, 1, 1.0, 1.0, 1.0),
            (SERIES, NOW + timedelta(minutes=5), 2, 6.0, 2.0, 4.0),
        ]


def test_series_are_separate_and_updates_span_transactions(db_url: str) -> None:
    other = series_name("util", "lease", "3")
    with session_scope(db_url) as session:
        add_to_rollup(session, SERIES, NOW, 10.0)
        add_to_rollup(session, other, NOW, 80.0)
    with session_scope(db_url) as session:
        add_to_rollup(session, SERIES, NOW + timedelta(seconds=30), -2.0)
        # an object already loaded in the session sees the update
        loaded = session.scalars(select(Rollup).where(Rollup.series == SERIES)).one()
        add_to_rollup(session, SERIES, NOW + timedelta(seconds=60), 40.0)
        assert (loaded.count, loaded.total, loaded.minimum, loaded.maximum) == (3, 48.0, -2.0, 40.0)
    with session_scope(db_url) as session:
        assert rollups(session) == [
            (SERIES, NOW, 3, 48.0, -2.0, 40.0),
            (other, NOW, 1, 80.0, 80.0, 80.0),
        ]


def test_rollup_of_a_local_time_lands_in_its_utc_bucket(db_url: str) -> None:
    cest = timezone(timedelta(hours=2))
    with session_scope(db_url) as session:
        add_to_rollup(session, SERIES, datetime(2026, 3, 1, 14, 1, tzinfo=cest), 1.0)
        add_to_rollup(session, SERIES, datetime(2026, 3, 1, 12, 2, tzinfo=UTC), 3.0)
    with session_scope(db_url) as session:
        assert rollups(session) == [(SERIES, NOW, 2, 4.0, 1.0, 3.0)]


@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_rollup_refuses_non_finite_values(db_url: str, value: float) -> None:
    with session_scope(db_url) as session, pytest.raises(ValueError):
        add_to_rollup(session, SERIES, NOW, value)


def seed_raw(session: Session, at: datetime) -> None:
    """One row in every raw table, dated ``at``."""
    session.add(
        CounterSample(
            router="rc1",
            kind="interface",
            name="eth1",
            at=at,
            seconds=60.0,
            rx_bps=1.0,
            tx_bps=2.0,
            rx_pps=0.1,
            tx_pps=0.2,
        )
    )
    session.add(QosSample(isp_id="isp-b", router="rc1", at=at, latency_ms=12.0))
    session.add(UtilisationSample(lease_id=1, at=at, rate_mbps=5.0, utilisation_pct=5.0))
    session.add(PollLog(job="counters", router="rc1", at=at, seconds=0.2, ok=True))


def count(session: Session, model: type[object]) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_prune_keeps_recent_deletes_old_and_keeps_rollups_longer(db_url: str) -> None:
    with session_scope(db_url) as session:
        session.add(Isp(id="isp-b", name="ISP B"))
        session.flush()
        session.add(
            Lease(
                id=1,
                isp_id="isp-b",
                router="rc1",
                uplink="eth9",
                committed_mbps=100,
                price_minor=1000,
            )
        )
        session.flush()
        for age in (timedelta(days=40), timedelta(days=8), timedelta(days=6), timedelta(hours=1)):
            seed_raw(session, NOW - age)
            add_to_rollup(session, SERIES, NOW - age, 1.0)
        seed_raw(session, NOW - timedelta(days=7))  # exactly at the cutoff: kept
        add_to_rollup(session, SERIES, NOW - timedelta(days=400), 1.0)
    with session_scope(db_url) as session:
        deleted = prune(session, now=NOW, raw_days=7, rollup_days=365)
    assert deleted == {
        "counter_samples": 2,
        "qos_samples": 2,
        "utilisation_samples": 2,
        "poll_log": 2,
        "rollups": 1,
        "usage_rollups": 0,  # none seeded here (tests/test_accounting_usage.py prunes them)
    }
    with session_scope(db_url) as session:
        for model in (CounterSample, QosSample, UtilisationSample, PollLog):
            assert count(session, model) == 3, model.__tablename__
        assert count(session, Rollup) == 4  # 40 and 8 days old: gone from raw, kept here
        oldest = session.scalar(select(func.min(PollLog.at)))
        assert oldest is not None and oldest.replace(tzinfo=UTC) == NOW - timedelta(days=7)
    with session_scope(db_url) as session:
        assert prune(session, now=NOW, raw_days=7, rollup_days=365) == dict.fromkeys(deleted, 0)


def test_prune_compares_in_utc(db_url: str) -> None:
    with session_scope(db_url) as session:
        session.add(
            PollLog(job="qos", router="rc1", at=NOW - timedelta(hours=1), seconds=1.0, ok=True)
        )
    later_local = (NOW + timedelta(minutes=30)).astimezone(timezone(timedelta(hours=-5)))
    with session_scope(db_url) as session:
        assert prune(session, now=later_local, raw_days=1 / 24, rollup_days=1)["poll_log"] == 1


@pytest.mark.parametrize(
    ("kwargs"),
    [
        {"now": NOW, "raw_days": -1, "rollup_days": 30},
        {"now": NOW, "raw_days": 7, "rollup_days": float("nan")},
        {"now": datetime(2026, 3, 1), "raw_days": 7, "rollup_days": 30},
    ],
    ids=["negative-raw", "nan-rollup", "naive-now"],
)
def test_prune_refuses(db_url: str, kwargs: dict[str, object]) -> None:
    with session_scope(db_url) as session, pytest.raises(ValueError):
        prune(session, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (("qos", "isp-b", "rc1", "latency_ms"), "qos:isp-b:rc1:latency_ms"),
        (("util", "lease", "3"), "util:lease:3"),
        (("rate",), "rate"),
    ],
    ids=["qos", "util", "kind-only"],
)
def test_series_name(parts: tuple[str, ...], expected: str) -> None:
    assert series_name(*parts) == expected


@pytest.mark.parametrize(
    "parts",
    [("qos", ""), ("qos", "isp:b"), ("qos", "isp b"), ("qos", "isp\nb"), ("util", "x" * 120)],
    ids=["empty", "colon", "space", "newline", "too-long"],
)
def test_series_name_refuses_ambiguous_parts(parts: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        series_name(*parts)
