"""Reports: QoS and utilisation over a period, rendered as CSV, JSON and HTML."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from tests.test_postgres import PG_BIN, pg_url  # noqa: F401 (pg_url is a fixture)
from vpop.catalogue.models import Isp
from vpop.core.db import dispose_engines, session_scope
from vpop.core.errors import BadInput
from vpop.core.migrate import upgrade
from vpop.core.time import as_utc, parse_time
from vpop.leasing.models import Lease, UtilisationEvent, UtilisationSample
from vpop.monitoring.models import QosSample
from vpop.monitoring.qos import QOS_FIGURES, current_qos
from vpop.monitoring.rollups import add_to_rollup, series_name
from vpop.reports import service as reports

START = datetime(2025, 1, 1, tzinfo=UTC)
END = datetime(2025, 1, 2, tzinfo=UTC)
SCRIPT_NAME = "<script>alert('x')</script> & Co"


def at(hours: float) -> datetime:
    """``hours`` after the report period's start."""
    return START + timedelta(hours=hours)


def stored(session: Session, sample: QosSample | UtilisationSample) -> None:
    """Store a sample and add it to its 5-minute rollups, as the pollers do."""
    session.add(sample)
    session.flush()
    if isinstance(sample, QosSample):
        for figure in QOS_FIGURES:
            value = getattr(sample, figure)
            if value is not None:
                series = series_name("qos", sample.isp_id, sample.router, figure)
                add_to_rollup(session, series, sample.at, float(value))
        return
    lease = str(sample.lease_id)
    add_to_rollup(session, series_name("util", "lease", lease), sample.at, sample.utilisation_pct)
    add_to_rollup(session, series_name("util_mbps", "lease", lease), sample.at, sample.rate_mbps)


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    """A migrated SQLite database with isp-a, isp-b (named like a script) and isp-c."""
    database = f"sqlite:///{tmp_path}/reports.sqlite"
    upgrade(database)
    with session_scope(database) as session:
        session.add_all(
            [
                Isp(id="isp-a", name="Alpha Net"),
                Isp(id="isp-b", name=SCRIPT_NAME),
                Isp(id="isp-c", name='=HYPERLINK("http://x")'),
            ]
        )
    try:
        yield database
    finally:
        dispose_engines()


@pytest.fixture
def qos(url: str) -> None:
    """isp-a on rc1: latency 1..20 ms hourly; on rc2: one sample; samples outside the period."""
    with session_scope(url) as session:
        for k in range(20):
            stored(
                session,
                QosSample(
                    isp_id="isp-a",
                    router="rc1",
                    at=at(k),
                    latency_ms=float(k + 1),
                    jitter_ms=2.0 if k % 2 else 4.0,
                    loss_pct=0.0 if k else 10.0,
                    throughput_mbps=None if k else 80.0,
                ),
            )
        # a probe nothing answered: no latency, all lost
        lost = QosSample(isp_id="isp-a", router="rc2", at=at(1), latency_ms=None, loss_pct=100.0)
        stored(session, lost)
        stored(session, QosSample(isp_id="isp-b", router="rc1", at=at(23.99), latency_ms=9.0))
        stored(session, QosSample(isp_id="isp-b", router="rc1", at=END, latency_ms=500.0))
        stored(session, QosSample(isp_id="isp-b", router="rc1", at=at(-0.01), latency_ms=500.0))


def test_the_qos_report_aggregates_per_isp_and_router(url: str, qos: None) -> None:
    rows = reports.qos_report(url, START, END)
    assert [(r["isp"], r["router"], r["samples"]) for r in rows] == [
        ("isp-a", "rc1", 20),
        ("isp-a", "rc2", 1),
        ("isp-b", "rc1", 1),  # the sample at END is outside the half-open period
    ]
    rc1 = rows[0]
    assert list(rc1) == list(reports.QOS_COLUMNS)
    assert (rc1["latency_avg_ms"], rc1["latency_min_ms"], rc1["latency_max_ms"]) == (10.5, 1, 20)
    # LibreNMS's pick among 20 ascending samples: index round(20 * 0.95) - 1 = 18, i.e. 19 ms
    assert rc1["latency_p95_ms"] == 19.0
    assert (rc1["jitter_avg_ms"], rc1["loss_avg_pct"], rc1["throughput_avg_mbps"]) == (
        3.0,
        0.5,
        80.0,
    )
    rc2 = rows[1]
    assert (rc2["latency_avg_ms"], rc2["latency_p95_ms"]) == (None, None)
    assert rows[2]["isp_name"] == SCRIPT_NAME


@pytest.fixture
def leases(url: str) -> dict[str, int]:
    """Leases: 'busy' (isp-a, 200 Mbit/s, 11 samples, events), 'later' starts after the
    period, 'gone' ended before it, 'quiet' (isp-b) without samples."""
    with session_scope(url) as session:
        rows = {
            "busy": Lease(
                isp_id="isp-a",
                router="rc1",
                uplink="isp-a",
                committed_mbps=200,
                price_minor=1,
                starts_at=at(-24 * 30),
            ),
            "later": Lease(
                isp_id="isp-a",
                router="rc2",
                uplink="isp-a",
                committed_mbps=100,
                price_minor=1,
                starts_at=END,
            ),
            "gone": Lease(
                isp_id="isp-b",
                router="rc2",
                uplink="isp-b",
                committed_mbps=100,
                price_minor=1,
                starts_at=at(-48),
                ended_at=at(-1),
                status="ended",
            ),
            "quiet": Lease(
                isp_id="isp-b",
                router="rc1",
                uplink="isp-b",
                committed_mbps=100,
                price_minor=1,
                starts_at=at(-48),
            ),
        }
        session.add_all(rows.values())
        session.flush()
        busy = rows["busy"].id
        for k, rate in enumerate([30, 110, 10, 90, 50, 20, 100, 70, 40, 60, 80]):
            stored(
                session,
                UtilisationSample(
                    lease_id=busy, at=at(k + 1), rate_mbps=rate, utilisation_pct=rate / 2
                ),
            )
        stored(session, UtilisationSample(lease_id=busy, at=END, rate_mbps=999, utilisation_pct=1))
        for kind, opened, closed in (
            ("under", at(-1), at(1)),  # 3600 s inside the period
            ("under", at(2), at(2.5)),  # 1800 s
            ("over", at(23.5), None),  # still open: clipped at the period's end, 1800 s
            ("over", at(-30), at(-29)),  # before the period: not counted
        ):
            session.add(
                UtilisationEvent(
                    lease_id=busy,
                    isp_id="isp-a",
                    kind=kind,
                    opened_at=opened,
                    closed_at=closed,
                    extreme_pct=1.0,
                )
            )
        return {name: row.id for name, row in rows.items()}


def test_the_utilisation_report_has_p95_and_clipped_events(
    url: str, leases: dict[str, int]
) -> None:
    rows = reports.utilisation_report(url, START, END)
    assert [row["lease"] for row in rows] == [leases["busy"], leases["quiet"]]
    busy, quiet = rows
    assert list(busy) == list(reports.UTILISATION_COLUMNS)
    assert (busy["isp"], busy["router"], busy["uplink"], busy["committed_mbps"]) == (
        "isp-a",
        "rc1",
        "isp-a",
        200,
    )
    assert (busy["samples"], busy["rate_avg_mbps"], busy["rate_max_mbps"]) == (11, 60.0, 110.0)
    # hand-computed: 11 samples, LibreNMS index round(11 * 0.95) - 1 = 9 -> the 10th smallest
    assert (busy["p95_mbps"], busy["p95_pct"]) == (100.0, 50.0)
    assert (busy["events_under"], busy["events_over"]) == (2, 1)
    assert (busy["seconds_under"], busy["seconds_over"]) == (5400.0, 1800.0)
    assert quiet["isp_name"] == SCRIPT_NAME
    assert (quiet["samples"], quiet["p95_mbps"], quiet["p95_pct"]) == (0, None, None)
    assert (quiet["seconds_under"], quiet["events_over"]) == (0.0, 0)


@pytest.mark.parametrize(
    "report", [reports.qos_report, reports.utilisation_report], ids=["qos", "utilisation"]
)
def test_a_report_needs_a_period(url: str, report: Any) -> None:
    with pytest.raises(BadInput) as err:
        report(url, END, START)
    assert err.value.code == "VPOP-400-TIME"


@pytest.mark.parametrize(
    ("opened", "closed", "expected"),
    [
        (at(-2), at(-1), 0.0),
        (at(-1), at(1), 3600.0),
        (at(1), at(2), 3600.0),
        (at(23), at(25), 3600.0),
        (at(-1), at(25), 86400.0),
        (at(23), None, 3600.0),
    ],
    ids=["before", "into", "inside", "out-of", "around", "open"],
)
def test_clipped_seconds(opened: datetime, closed: datetime | None, expected: float) -> None:
    now = at(48)
    assert reports.clipped_seconds(opened, closed, START, END, now=now) == expected


# --- times --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-06-01T12:00:00Z", datetime(2025, 6, 1, 12, tzinfo=UTC)),
        ("2025-06-01T14:00:00+02:00", datetime(2025, 6, 1, 12, tzinfo=UTC)),
        ("2025-06-01 12:00:00.5+00:00", datetime(2025, 6, 1, 12, 0, 0, 500000, tzinfo=UTC)),
        ("2025-06-01", datetime(2025, 6, 1, tzinfo=UTC)),
    ],
    ids=["zulu", "offset", "space-and-fraction", "date"],
)
def test_parse_time_accepts(text: str, expected: datetime) -> None:
    parsed = parse_time(text, "since")
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "value",
    [
        "2025-06-01T12:00:00",
        "yesterday",
        "",
        "2025-02-30",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "2025-06-01T12:00:00Z" + " " * 60,
        "２０２５-06-01",
        1_717_243_200,
        None,
    ],
    ids=[
        "naive",
        "words",
        "empty",
        "no-such-day",
        "underflow",
        "overflow",
        "too-long",
        "non-ascii-digits",
        "number",
        "none",
    ],
)
def test_parse_time_refuses(value: object) -> None:
    with pytest.raises(BadInput) as err:
        parse_time(value, "since")
    assert err.value.code == "VPOP-400-TIME"
    assert err.value.message.startswith("since: ")


def test_as_utc_takes_naive_times_as_utc() -> None:
    assert as_utc(datetime(2025, 1, 1)) == START
    assert as_utc(datetime(2025, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))) == START


# --- rendering ----------------------------------------------------------------------------

ROWS: list[dict[str, Any]] = [
    {"isp": "isp-a", "isp_name": "Alpha Net", "samples": 3, "p95_mbps": 12.5},
    {"isp": "isp-b", "isp_name": SCRIPT_NAME, "samples": 0, "p95_mbps": None},
    {"isp": "isp-c", "isp_name": "=1+2", "samples": 1, "p95_mbps": -1.0},
]


def test_render_csv() -> None:
    text = reports.render(ROWS, "csv")
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert list(parsed[0]) == ["isp", "isp_name", "samples", "p95_mbps"]
    assert [row["isp_name"] for row in parsed] == ["Alpha Net", SCRIPT_NAME, "'=1+2"]
    assert [row["p95_mbps"] for row in parsed] == ["12.5", "", "-1.0"]  # numbers stay numbers


def test_render_json() -> None:
    assert json.loads(reports.render(ROWS, "json")) == ROWS
    picked = json.loads(reports.render(ROWS, "json", columns=["samples", "isp"]))
    assert picked[0] == {"samples": 3, "isp": "isp-a"}
    assert list(picked[0]) == ["samples", "isp"]


def test_render_html_escapes_everything() -> None:
    page = reports.render(ROWS, "html", title="QoS <b>report</b>")
    assert page.startswith("<!DOCTYPE html>\n")
    assert page.rstrip().endswith("</html>")
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; Co" in page
    assert "<title>QoS &lt;b&gt;report&lt;/b&gt;</title>" in page
    assert '<th scope="col">p95_mbps</th>' in page
    assert '<td class="num">12.5</td>' in page
    assert page.count("<tr>") == 1 + len(ROWS)
    # self-contained: no scripts, links or remote assets
    for marker in ("src=", "href=", "@import", "url("):
        assert marker not in page


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("csv", "lease,isp\n"),
        ("json", "[]\n"),
    ],
    ids=["csv", "json"],
)
def test_render_no_rows(fmt: str, expected: str) -> None:
    assert reports.render([], fmt, columns=["lease", "isp"]) == expected


def test_render_no_rows_as_html() -> None:
    page = reports.render([], "html", columns=["lease", "isp"])
    assert "No data in this period." in page
    assert '<th scope="col">lease</th>' in page


def test_render_refuses_an_unknown_format() -> None:
    with pytest.raises(BadInput, match="xml"):
        reports.render(ROWS, "xml")


def test_reports_render_end_to_end(url: str, qos: None, leases: dict[str, int]) -> None:
    qos_rows = reports.qos_report(url, START, END)
    page = reports.render(qos_rows, "html", columns=reports.QOS_COLUMNS)
    assert "&lt;script&gt;" in page and "<script>" not in page
    utilisation = reports.utilisation_report(url, START, END)
    parsed = list(
        csv.DictReader(
            io.StringIO(reports.render(utilisation, "csv", columns=reports.UTILISATION_COLUMNS))
        )
    )
    assert parsed[0]["p95_mbps"] == "100.0" and parsed[0]["seconds_under"] == "5400.0"


@pytest.mark.skipif(not PG_BIN.exists(), reason="PostgreSQL 15 is not installed")
def test_the_read_side_runs_on_postgresql(pg_url: str) -> None:  # noqa: F811 (the fixture)
    """The window-function and aggregate queries are portable (SQLite runs all the rest)."""
    upgrade(pg_url)
    now = datetime.now(UTC)
    with session_scope(pg_url) as session:
        session.add(Isp(id="isp-a", name=SCRIPT_NAME))
        session.flush()
        for router, ago, latency in (("rc1", 30, 10), ("rc2", 60, 20), ("rc1", 90, 99)):
            stored(
                session,
                QosSample(
                    isp_id="isp-a",
                    router=router,
                    at=now - timedelta(seconds=ago),
                    latency_ms=latency,
                ),
            )
        leased = Lease(
            isp_id="isp-a",
            router="rc1",
            uplink="isp-a",
            committed_mbps=100,
            price_minor=1,
            starts_at=now - timedelta(days=1),
        )
        session.add(leased)
        session.flush()
        stored(
            session,
            UtilisationSample(lease_id=leased.id, at=now, rate_mbps=50.0, utilisation_pct=50.0),
        )
    with session_scope(pg_url) as session:
        current = current_qos(session, now=now)
    assert current["isp-a"]["latency_ms"] == 15.0
    assert current["isp-a"]["age_seconds"]["latency_ms"] == 60.0
    day = (now - timedelta(days=1), now + timedelta(seconds=1))
    assert [row["samples"] for row in reports.qos_report(pg_url, *day)] == [2, 1]
    (row,) = reports.utilisation_report(pg_url, *day)
    assert (row["p95_mbps"], row["p95_pct"]) == (50.0, 50.0)
