"""When a probe also tests throughput: once per ``VPOP_PROBE_THROUGHPUT_EVERY_SECONDS`` per
router (docs/monitoring.md), while latency, jitter and loss are measured on every probe.

The lab's own probes are in tests/lab/test_monitoring.py; here the rule itself, on a real
SQLite database, with samples placed in time."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.dbtemplate import migrated_sqlite
from vpop.catalogue.models import Isp
from vpop.core.db import dispose_engines, session_scope
from vpop.monitoring.models import QosSample
from vpop.monitoring.poller import throughput_due

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    url = migrated_sqlite(tmp_path / "vpop.sqlite")
    with session_scope(url) as session:
        session.add_all([Isp(id="isp-a", name="Alpha"), Isp(id="isp-b", name="Beta")])
    try:
        yield url
    finally:
        dispose_engines()


def sample(url: str, router: str, seconds_ago: float, throughput: float | None) -> None:
    with session_scope(url) as session:
        session.add(
            QosSample(
                isp_id="isp-b",
                router=router,
                at=NOW - timedelta(seconds=seconds_ago),
                latency_ms=1.0,
                throughput_mbps=throughput,
                sent=20,
                received=20,
            )
        )


def due(url: str, router: str = "rc1", every: float = 60) -> bool:
    with session_scope(url) as session:
        return throughput_due(session, router, every, NOW)


def test_a_router_never_tested_is_due(url: str) -> None:
    assert due(url)


def test_a_recent_test_makes_the_next_probes_skip_it_until_it_is_old(url: str) -> None:
    sample(url, "rc1", 30, 94.0)
    assert not due(url, every=60)
    assert due(url, every=30)  # exactly as old as the interval: due again
    assert due(url, every=20)


def test_only_samples_that_measured_throughput_count(url: str) -> None:
    sample(url, "rc1", 90, 94.0)
    sample(url, "rc1", 5, None)  # a probe since then, without a throughput test
    assert due(url, every=60)


def test_another_router_s_test_does_not_count(url: str) -> None:
    sample(url, "rc2", 5, 94.0)
    assert due(url, "rc1")
    assert not due(url, "rc2")


def test_zero_tests_on_every_probe(url: str) -> None:
    sample(url, "rc1", 1, 94.0)
    assert due(url, every=0)
