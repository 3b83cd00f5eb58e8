"""The QoS and utilisation reports read whole 5-minute buckets from rollups and only the edges
from raw samples: the same counts, averages, minima and maxima before and after raw samples
are pruned; the 95th percentile from raw samples while they cover the window, else from the
5-minute averages, and the report says which.

Samples are written as the pollers write them (a raw row and its rollups in one
transaction); the expected figures are computed from the generated values.
"""

from __future__ import annotations

import random
import shutil
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from vpop.catalogue.models import Isp
from vpop.core.db import dispose_engines, session_scope
from vpop.core.migrate import upgrade
from vpop.leasing.models import Lease, LeaseVersion, UtilisationSample
from vpop.leasing.utilisation import percentile_95
from vpop.monitoring.models import QosSample
from vpop.monitoring.rollups import add_to_rollup, bucket_start, prune
from vpop.reports import service as reports

T0 = datetime(2025, 5, 1, tzinfo=UTC)
END_OF_DATA = T0 + timedelta(days=2)
STEP = timedelta(seconds=150)
CHANGE_AT = T0 + timedelta(days=1, hours=6)  # the fallback lease's rate doubles
ALIGNED = (T0 + timedelta(hours=3, minutes=5), T0 + timedelta(days=1, hours=19, minutes=45))
UNALIGNED = (
    T0 + timedelta(hours=3, minutes=2, seconds=30),
    T0 + timedelta(days=1, hours=19, minutes=47),
)


@dataclass
class Data:
    """What was written: the truth the reports are checked against."""

    url: str
    # (isp, router) -> [(at, latency or None, jitter, loss, throughput)]
    qos: dict[tuple[str, str], list[tuple[datetime, float | None, float, float, float]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    # lease id -> [(at, rate_mbps)]
    rates: dict[int, list[tuple[datetime, float]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    fallback: int = 0  # the lease written before util_mbps rollups existed


def _write(url: str) -> Data:
    upgrade(url)
    data = Data(url=url)
    rng = random.Random(5)
    with session_scope(url) as session:
        session.add_all([Isp(id="isp-a", name="A"), Isp(id="isp-b", name="B")])
        session.flush()
        leases = []
        for isp in ("isp-a", "isp-b"):
            lease = Lease(
                isp_id=isp,
                router="rc1",
                uplink=isp,
                committed_mbps=100,
                price_minor=1,
                starts_at=T0,
            )
            session.add(lease)
            session.flush()
            leases.append(lease)
        data.fallback = leases[1].id
        leases[1].committed_mbps = 200  # today's terms; version 1 had 100
        for number, (valid_from, valid_to, committed) in enumerate(
            ((T0, CHANGE_AT, 100), (CHANGE_AT, None, 200)), start=1
        ):
            session.add(
                LeaseVersion(
                    lease_id=data.fallback,
                    version=number,
                    valid_from=valid_from,
                    valid_to=valid_to,
                    committed_mbps=committed,
                    peak_pct=125,
                    price_minor=1,
                    currency="EUR",
                    reason="create" if number == 1 else "change",
                    actor="test",
                )
            )
        at = T0
        while at < END_OF_DATA:
            for isp, router in (("isp-a", "rc1"), ("isp-b", "rc2")):
                lost = rng.random() < 0.05
                figures = {
                    "latency_ms": None if lost else round(rng.uniform(2, 80), 3),
                    "jitter_ms": round(rng.uniform(0, 9), 3),
                    "loss_pct": 100.0 if lost else round(rng.choice((0.0, 0.0, 10.0)), 1),
                    "throughput_mbps": round(rng.uniform(50, 900), 2),
                }
                session.add(QosSample(isp_id=isp, router=router, at=at, **figures))
                for figure, value in figures.items():
                    if value is not None:
                        add_to_rollup(session, f"qos:{isp}:{router}:{figure}", at, value)
                data.qos[(isp, router)].append(
                    (
                        at,
                        figures["latency_ms"],
                        figures["jitter_ms"] or 0.0,
                        figures["loss_pct"] or 0.0,
                        figures["throughput_mbps"] or 0.0,
                    )
                )
            for lease in leases:
                rate = round(rng.uniform(1, 190), 3)
                committed = 100 if lease.id != data.fallback or at < CHANGE_AT else 200
                pct = rate / committed * 100
                session.add(
                    UtilisationSample(lease_id=lease.id, at=at, rate_mbps=rate, utilisation_pct=pct)
                )
                add_to_rollup(session, f"util:lease:{lease.id}", at, pct)
                if lease.id != data.fallback:
                    add_to_rollup(session, f"util_mbps:lease:{lease.id}", at, rate)
                data.rates[lease.id].append((at, rate))
            at += STEP
    return data


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Data]:
    """Two days of samples and rollups, written once."""
    try:
        yield _write(f"sqlite:///{tmp_path_factory.mktemp('rollups')}/rollups.sqlite")
    finally:
        dispose_engines()


@pytest.fixture
def data(written: Data, tmp_path: Path) -> Iterator[Data]:
    """A copy of the written database that this test may prune."""
    dispose_engines()
    target = tmp_path / "copy.sqlite"
    shutil.copy(written.url.removeprefix("sqlite:///"), target)
    try:
        yield replace(written, url=f"sqlite:///{target}")
    finally:
        dispose_engines()


def _inside(values: list[tuple[datetime, float]], start: datetime, end: datetime) -> list[float]:
    return [value for at, value in values if start <= at < end]


def _bucket_averages(
    values: list[tuple[datetime, float]], start: datetime, end: datetime
) -> list[float]:
    grouped: dict[datetime, list[float]] = defaultdict(list)
    for at, value in values:
        if start <= at < end:
            grouped[bucket_start(at)].append(value)
    return [sum(v) / len(v) for v in grouped.values()]


def _expected_qos(data: Data, start: datetime, end: datetime) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for (isp, router), samples in sorted(data.qos.items()):
        inside = [s for s in samples if start <= s[0] < end]
        latencies = [s[1] for s in inside if s[1] is not None]
        out.append(
            (
                isp,
                router,
                len(inside),
                round(sum(latencies) / len(latencies), 3),
                round(min(latencies), 3),
                round(max(latencies), 3),
                round(sum(s[2] for s in inside) / len(inside), 3),
                round(sum(s[4] for s in inside) / len(inside), 3),
            )
        )
    return out


def _qos_figures(rows: list[dict[str, object]]) -> list[tuple[object, ...]]:
    names = ("isp", "router", "samples", "latency_avg_ms", "latency_min_ms", "latency_max_ms")
    return [
        (*(row[n] for n in names), row["jitter_avg_ms"], row["throughput_avg_mbps"]) for row in rows
    ]


def _prune_everything(url: str) -> None:
    with session_scope(url) as session:
        deleted = prune(session, now=END_OF_DATA + timedelta(days=1), raw_days=0.5, rollup_days=400)
    assert deleted["qos_samples"] > 0 and deleted["utilisation_samples"] > 0
    with session_scope(url) as session:
        assert session.query(QosSample).count() == 0
        assert session.query(UtilisationSample).count() == 0


@pytest.mark.parametrize("window", [ALIGNED, UNALIGNED], ids=["aligned", "unaligned"])
def test_qos_figures_are_the_samples_figures(data: Data, window: tuple[datetime, datetime]) -> None:
    rows = reports.qos_report(data.url, *window)
    assert _qos_figures(rows) == _expected_qos(data, *window)
    for row in rows:
        latencies = [
            s[1]
            for s in data.qos[(row["isp"], row["router"])]
            if window[0] <= s[0] < window[1] and s[1] is not None
        ]
        assert row["p95_from"] == "samples"
        assert row["latency_p95_ms"] == round(percentile_95(latencies), 3)


def test_qos_reads_the_same_after_raw_samples_are_pruned(data: Data) -> None:
    before = reports.qos_report(data.url, *ALIGNED)
    _prune_everything(data.url)
    after = reports.qos_report(data.url, *ALIGNED)
    assert _qos_figures(after) == _qos_figures(before) == _expected_qos(data, *ALIGNED)
    assert [row["p95_from"] for row in after] == ["5min", "5min"]
    for row in after:
        samples = data.qos[(row["isp"], row["router"])]
        averages = _bucket_averages([(s[0], s[1]) for s in samples if s[1] is not None], *ALIGNED)
        assert row["latency_p95_ms"] == round(percentile_95(averages), 3)


def test_utilisation_figures_and_the_fallback_to_percent(data: Data) -> None:
    rows = reports.utilisation_report(data.url, *UNALIGNED)
    assert [row["p95_from"] for row in rows] == ["samples", "samples"]
    for row in rows:
        rates = _inside(data.rates[row["lease"]], *UNALIGNED)
        assert row["samples"] == len(rates)
        # the fallback lease's rates come back from percent x the committed rate then
        assert row["rate_avg_mbps"] == pytest.approx(round(sum(rates) / len(rates), 3), abs=1e-3)
        assert row["rate_max_mbps"] == pytest.approx(round(max(rates), 3), abs=1e-3)
        assert row["p95_mbps"] == round(percentile_95(rates), 3)


def test_utilisation_reads_the_same_after_raw_samples_are_pruned(data: Data) -> None:
    figures = ("lease", "samples", "rate_avg_mbps", "rate_max_mbps")
    before = [
        tuple(row[n] for n in figures) for row in reports.utilisation_report(data.url, *ALIGNED)
    ]
    _prune_everything(data.url)
    rows = reports.utilisation_report(data.url, *ALIGNED)
    assert [tuple(row[n] for n in figures) for row in rows] == before
    for row in rows:
        rates = data.rates[row["lease"]]
        assert row["samples"] == len(_inside(rates, *ALIGNED))
        assert row["p95_from"] == "5min"
        expected = percentile_95(_bucket_averages(rates, *ALIGNED))
        assert row["p95_mbps"] == pytest.approx(round(expected, 3), abs=1e-3)
        assert row["p95_pct"] == pytest.approx(
            row["p95_mbps"] / row["committed_mbps"] * 100, abs=1e-2
        )


def test_a_window_partly_before_the_raw_samples_uses_5min(data: Data) -> None:
    with session_scope(data.url) as session:
        prune(session, now=T0 + timedelta(days=1, hours=12), raw_days=0.5, rollup_days=400)
    # raw samples remain from T0 + 1 day: a later window still reads them for its p95
    late = (T0 + timedelta(days=1, hours=1), END_OF_DATA)
    assert {row["p95_from"] for row in reports.qos_report(data.url, *late)} == {"samples"}
    assert {row["p95_from"] for row in reports.utilisation_report(data.url, *late)} == {"samples"}
    assert {row["p95_from"] for row in reports.qos_report(data.url, *ALIGNED)} == {"5min"}
    assert _qos_figures(reports.qos_report(data.url, *ALIGNED)) == _expected_qos(data, *ALIGNED)
