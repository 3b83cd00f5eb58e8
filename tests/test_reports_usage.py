"""The usage report by subscriber, ISP and lease: rollups for whole buckets, raw samples for
the edges, coverage, scope, totals that add up, rendering and the CLI.

The fixture writes 47 days of polls through the real accounting writer
(``vpop.accounting.service.record_poll``) and stores the raw samples as the poller does; the
expected figures are summed from the generated deltas themselves, never from the report.
"""

from __future__ import annotations

import csv
import io
import json
import random
import shutil
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from tests.pg import PG_BIN, postgres_cluster
from vpop.accounting.service import Measured, list_sessions, record_poll, switch_line
from vpop.catalogue.models import Isp, Line, Subscriber
from vpop.cli.reports import report
from vpop.core.db import dispose_engines, session_scope
from vpop.core.errors import BadInput
from vpop.core.migrate import upgrade
from vpop.core.time import iso
from vpop.leasing.models import Lease, LeaseVersion
from vpop.monitoring.models import CounterSample
from vpop.monitoring.rollups import prune
from vpop.reports import service as reports

T0 = datetime(2025, 3, 1, tzinfo=UTC)
DAYS = 47
POLL = timedelta(minutes=30)
FIRST_POLL = T0 + timedelta(minutes=10)  # polls at :10 and :40
HOSTILE_ISP = "<script>alert('c')</script> & \"C\""
HOSTILE_SUB = "=1+2<b>x</b>"
SUBSCRIBERS = {"sub1": "sub1", "sub2": "sub2", HOSTILE_SUB: "sub3"}  # id -> interface
MOVE_AT = T0 + timedelta(days=20, hours=12, minutes=10)  # a poll time: sub1 moves to isp-c
VERSION_2_AT = T0 + timedelta(days=10)
# sub3's line is not polled at 10:10, 10:40 and 11:10 on day 30: the 11:40 delta is a gap
GAP_DAY = T0 + timedelta(days=30)
MISSED = {GAP_DAY + timedelta(hours=10, minutes=m) for m in (10, 40, 70)}


def day(n: float) -> datetime:
    """``n`` days after T0."""
    return T0 + timedelta(days=n)


@dataclass
class World:
    """The generated deltas: the truth the reports are checked against."""

    url: str
    end: datetime
    lease: int = 0
    # (poll time, (isp, subscriber), Measured)
    lines: list[tuple[datetime, tuple[str, str], Measured]] = field(default_factory=list)
    uplink: list[tuple[datetime, Measured]] = field(default_factory=list)

    def by_pair(self, start: datetime, end: datetime) -> dict[tuple[str, str], list[int]]:
        """Bytes and packets per (subscriber, ISP) of the deltas polled in ``[start, end)``."""
        sums: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        for at, (isp, sub), m in self.lines:
            if start <= at < end:
                _add(sums[(sub, isp)], m)
        return dict(sums)

    def uplink_sum(self, start: datetime, end: datetime) -> list[int]:
        """Bytes and packets of the uplink deltas polled in ``[start, end)``."""
        out = [0, 0, 0, 0]
        for at, m in self.uplink:
            if start <= at < end:
                _add(out, m)
        return out


def _add(total: list[int], m: Measured) -> None:
    for index, value in enumerate((m.bytes_in, m.bytes_out, m.packets_in, m.packets_out)):
        total[index] += value


def _traffic(rng: random.Random, seconds: float, note: str | None) -> Measured:
    b_in = rng.randrange(0, 4_000_000)
    b_out = rng.randrange(0, 30_000_000)
    return Measured(
        seconds=seconds,
        bytes_in=b_in,
        bytes_out=b_out,
        packets_in=b_in // 600,
        packets_out=b_out // 1200,
        covered=note in (None, "wrap"),
    )


def _sample(at: datetime, kind: str, name: str, m: Measured, note: str | None) -> CounterSample:
    """A raw sample as the poller stores it: rates over the delta's seconds."""
    s = m.seconds
    return CounterSample(
        router="rc1",
        kind=kind,
        name=name,
        at=at,
        seconds=s,
        rx_bps=m.bytes_in / s * 8,
        tx_bps=m.bytes_out / s * 8,
        rx_pps=m.packets_in / s,
        tx_pps=m.packets_out / s,
        note=note,
    )


def build_world(url: str, days: int = DAYS) -> World:
    """ISPs, subscribers, lines, a lease with two versions, and ``days`` of polls."""
    upgrade(url)
    world = World(url=url, end=day(days))
    with session_scope(url) as session:
        session.add_all([Isp(id="isp-b", name="ISP B"), Isp(id="isp-c", name=HOSTILE_ISP)])
        session.flush()
        line_ids = {}
        for index, (sub, interface) in enumerate(SUBSCRIBERS.items()):
            session.add(Subscriber(id=sub, name=interface, profile={}))
            session.flush()
            line = Line(
                subscriber_id=sub, router="rc1", interface=interface, prefix=f"192.0.2.{index}/32"
            )
            session.add(line)
            session.flush()
            line_ids[sub] = line.id
        for sub, isp in (("sub1", "isp-b"), ("sub2", "isp-b"), (HOSTILE_SUB, "isp-c")):
            switch_line(session, line_id=line_ids[sub], isp_id=isp, at=T0)
        lease = Lease(
            isp_id="isp-b",
            router="rc1",
            uplink="isp-b",
            committed_mbps=100,
            price_minor=90_000,
            starts_at=T0,
            status="active",
        )
        session.add(lease)
        session.flush()
        world.lease = lease.id
        for number, (valid_from, valid_to, rate, price) in enumerate(
            ((T0, VERSION_2_AT, 100, 90_000), (VERSION_2_AT, None, 200, 150_000)), start=1
        ):
            session.add(
                LeaseVersion(
                    lease_id=lease.id,
                    version=number,
                    valid_from=valid_from,
                    valid_to=valid_to,
                    committed_mbps=rate,
                    peak_pct=125,
                    price_minor=price,
                    currency="EUR",
                    reason="create" if number == 1 else "change",
                    actor="test",
                )
            )
    rng = random.Random(11)
    owner = {"sub1": "isp-b", "sub2": "isp-b", HOSTILE_SUB: "isp-c"}
    last = {sub: FIRST_POLL - POLL for sub in SUBSCRIBERS}
    at = FIRST_POLL
    while at < world.end:
        with session_scope(url) as session:  # a day of polls per transaction
            stop = min(world.end, at + timedelta(days=1))
            while at < stop:
                lines: dict[str, Measured] = {}
                notes: dict[str, str | None] = {}
                for sub, interface in SUBSCRIBERS.items():
                    if sub == HOSTILE_SUB and at in MISSED:
                        continue
                    seconds = (at - last[sub]).total_seconds()
                    notes[interface] = "gap" if seconds > 3 * POLL.total_seconds() else None
                    lines[interface] = _traffic(rng, seconds, notes[interface])
                    last[sub] = at
                    world.lines.append((at, (owner[sub], sub), lines[interface]))
                uplink = _traffic(rng, POLL.total_seconds(), None)
                world.uplink.append((at, uplink))
                named = record_poll(
                    session, router="rc1", at=at, lines=lines, uplinks={"isp-b": uplink}
                )
                for interface, m in lines.items():
                    row = _sample(at, "line", interface, m, notes[interface])
                    row.session_id = named.get(interface)
                    session.add(row)
                session.add(_sample(at, "interface", "isp-b", uplink, None))
                if at == MOVE_AT:
                    switch_line(session, line_id=line_ids["sub1"], isp_id="isp-c", at=at)
                    owner["sub1"] = "isp-c"
                at += POLL
    return world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """47 days of polls in a migrated SQLite file (built once; tests only read it)."""
    path = tmp_path_factory.mktemp("usage") / "usage.sqlite"
    try:
        yield build_world(f"sqlite:///{path}")
    finally:
        dispose_engines()


@pytest.fixture
def copied(world: World, tmp_path: Path) -> Iterator[World]:
    """A copy of the world's database this test may change."""
    dispose_engines()
    source = Path(world.url.removeprefix("sqlite:///"))
    target = tmp_path / "copy.sqlite"
    shutil.copy(source, target)
    try:
        yield World(
            url=f"sqlite:///{target}",
            end=world.end,
            lease=world.lease,
            lines=world.lines,
            uplink=world.uplink,
        )
    finally:
        dispose_engines()


def usage(world: World, start: datetime, end: datetime, by: str, **kw: Any) -> dict[str, Any]:
    """The report, with "now" at the end of the generated data."""
    return reports.usage_report(world.url, start, end, by=by, now=world.end, **kw)


def traffic(row: dict[str, Any]) -> list[int]:
    """A row's bytes and packets."""
    return [row["bytes_in"], row["bytes_out"], row["packets_in"], row["packets_out"]]


def by_pair(result: dict[str, Any]) -> dict[tuple[str, str], list[int]]:
    """A subscriber report's traffic per (subscriber, ISP)."""
    return {(row["subscriber"], row["isp"]): traffic(row) for row in result["rows"]}


WINDOWS = {
    "days": (day(2), day(5)),
    "hours": (day(1) + timedelta(hours=7), day(3) + timedelta(hours=19)),
    "unaligned": (
        day(3) + timedelta(hours=10, minutes=17, seconds=30),
        day(4) + timedelta(hours=13, minutes=42, seconds=10),
    ),
    "inside-an-hour": (
        day(6) + timedelta(hours=5, minutes=5),
        day(6) + timedelta(hours=5, minutes=50),
    ),
    "across-the-move": (day(19) + timedelta(hours=3, minutes=3), day(22) + timedelta(minutes=1)),
}


@pytest.mark.parametrize("window", list(WINDOWS), ids=list(WINDOWS))
def test_subscriber_rows_are_the_traffic_polled_in_the_window(world: World, window: str) -> None:
    start, end = WINDOWS[window]
    result = usage(world, start, end, "subscriber")
    assert by_pair(result) == world.by_pair(start, end)
    assert result["columns"] == list(reports.USAGE_COLUMNS["subscriber"])
    assert all(list(row) == result["columns"] for row in result["rows"])
    assert (result["from"], result["to"]) == (iso(start), iso(end))


def test_a_45_day_window_reads_the_same_totals_after_raw_samples_are_pruned(
    copied: World,
) -> None:
    start, end = day(1) + timedelta(hours=7), day(46) + timedelta(hours=19)
    before = {by: usage(copied, start, end, by) for by in reports.USAGE_BY}
    with session_scope(copied.url) as session:
        deleted = prune(session, now=copied.end, raw_days=0.25, rollup_days=400)
    assert deleted["counter_samples"] > 4 * 2 * 24 * 40  # nearly every raw sample went
    with session_scope(copied.url) as session:
        oldest = session.scalar(select(func.min(CounterSample.at)))
    assert oldest is not None and oldest >= copied.end - timedelta(hours=6)
    after = {by: usage(copied, start, end, by) for by in reports.USAGE_BY}
    assert after == before
    assert by_pair(after["subscriber"]) == copied.by_pair(start, end)
    lease_rows = after["lease"]["rows"]
    assert [sum(traffic(r)[i] for r in lease_rows) for i in range(4)] == copied.uplink_sum(
        start, end
    )
    # an unaligned window now misses its pruned edges, and its coverage says so
    edges = usage(copied, start + timedelta(minutes=20), end, "isp")
    assert all(row["coverage_pct"] < 100 for row in edges["rows"])


def test_isp_rows_are_the_sums_of_their_subscriber_rows(world: World) -> None:
    start, end = WINDOWS["unaligned"][0], day(45) + timedelta(minutes=7)
    subscribers = usage(world, start, end, "subscriber")
    isps = usage(world, start, end, "isp")
    summed: dict[str, dict[str, Any]] = {}
    for row in subscribers["rows"]:
        into = summed.setdefault(row["isp"], defaultdict(int))
        into["subscribers"] += 1
        for name in reports.TOTAL_COLUMNS["subscriber"]:
            into[name] += row[name]
    assert [row["isp"] for row in isps["rows"]] == ["isp-b", "isp-c"]
    for row in isps["rows"]:
        expected = summed[row["isp"]]
        for name in reports.TOTAL_COLUMNS["isp"]:
            assert row[name] == pytest.approx(expected[name], abs=1e-6), name
    assert isps["rows"][1]["isp_name"] == HOSTILE_ISP
    for result in (subscribers, isps):
        for name in reports.TOTAL_COLUMNS[result["by"]]:
            column = sum(row[name] for row in result["rows"])
            assert result["totals"][name] == pytest.approx(column, abs=1e-6), name
    assert subscribers["totals"]["bytes_out"] == sum(
        v[1] for v in world.by_pair(start, end).values()
    )


def _summed_by_isp(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Subscriber rows added up per ISP: traffic, pairs and covered seconds."""
    summed: dict[str, dict[str, Any]] = {}
    for row in rows:
        into = summed.setdefault(row["isp"], {"traffic": [0, 0, 0, 0], "pairs": 0, "covered": 0.0})
        into["traffic"] = [a + b for a, b in zip(into["traffic"], traffic(row), strict=True)]
        into["pairs"] += 1
        into["covered"] += row["covered_seconds"]
    return summed


@pytest.mark.parametrize("window", list(WINDOWS), ids=list(WINDOWS))
def test_isp_rows_equal_their_subscribers_exactly(world: World, window: str) -> None:
    """ISP rows (read from the ISP rollups) carry exactly their subscribers' bytes and
    packets; covered seconds agree to the report's 0.1 s."""
    start, end = WINDOWS[window]
    summed = _summed_by_isp(usage(world, start, end, "subscriber")["rows"])
    isps = usage(world, start, end, "isp")["rows"]
    assert {row["isp"] for row in isps} == set(summed)
    for row in isps:
        expected = summed[row["isp"]]
        assert traffic(row) == expected["traffic"], row["isp"]
        assert row["subscribers"] == expected["pairs"]
        assert row["covered_seconds"] == pytest.approx(expected["covered"], abs=0.1)
    # one subscriber's ISP rows are the sums of that subscriber's rows
    mine = usage(world, start, end, "subscriber", subscriber="sub1")["rows"]
    theirs = usage(world, start, end, "isp", subscriber="sub1")["rows"]
    assert {row["isp"]: traffic(row) for row in theirs} == {
        isp: sums["traffic"] for isp, sums in _summed_by_isp(mine).items()
    }


@pytest.mark.parametrize("window", ["hours", "unaligned", "across-the-move"])
def test_the_series_of_everyone_is_the_sum_of_each_subscribers_series(
    world: World, window: str
) -> None:
    """The series of all subscribers (summed from the ISP rollups) equals, bucket by bucket,
    the sum of each subscriber's own series (from the subscriber rollups)."""
    start, end = WINDOWS[window]
    everyone = usage(world, start, end, "subscriber")["series"]
    summed: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for subscriber in SUBSCRIBERS:
        for point in usage(world, start, end, "subscriber", subscriber=subscriber)["series"]:
            summed[point["bucket"]][0] += point["bytes_in"]
            summed[point["bucket"]][1] += point["bytes_out"]
    assert {p["bucket"]: [p["bytes_in"], p["bytes_out"]] for p in everyone} == summed
    assert sum(p["bytes_out"] for p in everyone) > 0


def test_the_sessions_of_a_subscriber_sum_to_its_row(world: World) -> None:
    start, end = T0, day(25)
    (session,) = [
        s
        for s in list_sessions(world.url, subscriber="sub1", start=start, end=end)
        if s["isp"] == "isp-b"
    ]
    assert session["ended_at"] == iso(MOVE_AT)  # lies wholly in the window
    rows = {(r["subscriber"], r["isp"]): r for r in usage(world, start, end, "subscriber")["rows"]}
    row = rows[("sub1", "isp-b")]
    assert traffic(row) == [
        session[k] for k in ("bytes_in", "bytes_out", "packets_in", "packets_out")
    ]
    assert row["sessions"] == 1
    assert row["service_seconds"] == (MOVE_AT - T0).total_seconds()
    assert row["covered_seconds"] == round(session["covered_seconds"], 1)
    assert rows[("sub1", "isp-c")]["service_seconds"] == (end - MOVE_AT).total_seconds()


def test_a_window_with_missing_polls_shows_its_coverage(world: World) -> None:
    result = usage(world, GAP_DAY, GAP_DAY + timedelta(days=1), "subscriber")
    coverage = {row["subscriber"]: row["coverage_pct"] for row in result["rows"]}
    # sub3's line went unmeasured from 09:40 to 11:40: 7200 s of the day's 86400
    assert coverage == {"sub1": 100.0, "sub2": 100.0, HOSTILE_SUB: round(100 * 79200 / 86400, 1)}
    isps = usage(world, GAP_DAY, GAP_DAY + timedelta(days=1), "isp")
    coverage = {row["isp"]: row["coverage_pct"] for row in isps["rows"]}
    # isp-c carries sub3 and, since the move, sub1: 2 x 86400 s in service, 7200 s unmeasured
    assert coverage == {"isp-b": 100.0, "isp-c": round(100 * (2 * 86400 - 7200) / 172800, 1)}
    assert result["totals"]["coverage_pct"] == round(100 * (3 * 86400 - 7200) / (3 * 86400), 1)


def test_an_isp_sees_only_its_own_subscribers(world: World) -> None:
    start, end = day(1), day(45)
    result = usage(world, start, end, "subscriber", isp="isp-b")
    assert result["isp"] == "isp-b"
    assert {row["isp"] for row in result["rows"]} == {"isp-b"}
    assert {row["subscriber"] for row in result["rows"]} == {"sub1", "sub2"}
    everyone = usage(world, start, end, "subscriber")
    theirs = [row for row in everyone["rows"] if row["isp"] == "isp-b"]
    assert result["rows"] == theirs
    assert result["totals"]["bytes_in"] == sum(row["bytes_in"] for row in theirs)
    (row,) = usage(world, start, end, "isp", isp="isp-c")["rows"]
    assert row["isp"] == "isp-c" and row["subscribers"] == 2
    assert usage(world, start, end, "lease", isp="isp-c")["rows"] == []
    mine = usage(world, start, end, "subscriber", subscriber="sub1")
    assert {(r["subscriber"], r["isp"]) for r in mine["rows"]} == {
        ("sub1", "isp-b"),
        ("sub1", "isp-c"),
    }


def test_lease_rows_follow_the_terms_in_force(world: World) -> None:
    start, end = day(5) + timedelta(hours=6, minutes=20), day(15) + timedelta(hours=6, minutes=30)
    result = usage(world, start, end, "lease")
    rows = result["rows"]
    assert [(r["lease"], r["version"], r["committed_mbps"], r["price_minor"]) for r in rows] == [
        (world.lease, 1, 100, 90_000),
        (world.lease, 2, 200, 150_000),
    ]
    assert traffic(rows[0]) == world.uplink_sum(start, VERSION_2_AT)
    assert traffic(rows[1]) == world.uplink_sum(VERSION_2_AT, end)
    assert rows[0]["service_seconds"] == (VERSION_2_AT - start).total_seconds()
    assert rows[1]["service_seconds"] == (end - VERSION_2_AT).total_seconds()
    assert (rows[0]["valid_from"], rows[0]["valid_to"]) == (iso(T0), iso(VERSION_2_AT))
    # a delta counts at its poll time: the first one after the change (00:10, covering
    # 23:40 .. 00:10) is measured time of version 2; coverage is what the polls measured
    for row, (a, b) in zip(rows, ((start, VERSION_2_AT), (VERSION_2_AT, end)), strict=True):
        measured = sum(m.seconds for at, m in world.uplink if a <= at < b)
        assert row["covered_seconds"] == measured
        service = row["service_seconds"]
        assert row["coverage_pct"] == round(100 * min(measured, service) / service, 1)
    assert rows[0]["coverage_pct"] < 100 <= rows[1]["coverage_pct"]


@pytest.mark.parametrize(
    ("start", "end", "points", "width"),
    [
        (day(3) + timedelta(minutes=30), day(5), 48, timedelta(hours=1)),
        (day(1), day(41), 40, timedelta(days=1)),
    ],
    ids=["hourly", "daily"],
)
def test_the_series_adds_up_to_the_totals(
    world: World, start: datetime, end: datetime, points: int, width: timedelta
) -> None:
    for by in reports.USAGE_BY:
        result = usage(world, start, end, by)
        series = result["series"]
        assert len(series) == points
        stamps = [datetime.fromisoformat(p["bucket"]) for p in series]
        assert all(b - a == width for a, b in zip(stamps, stamps[1:], strict=False))
        assert sum(p["bytes_in"] for p in series) == result["totals"]["bytes_in"]
        assert sum(p["bytes_out"] for p in series) == result["totals"]["bytes_out"]


def test_a_report_needs_a_known_by_and_a_window(world: World) -> None:
    with pytest.raises(BadInput) as err:
        usage(world, day(1), day(2), "router")
    assert err.value.code == "VPOP-400-REPORT-BY"
    with pytest.raises(BadInput) as err:
        usage(world, day(2), day(1), "isp")
    assert err.value.code == "VPOP-400-TIME"
    with pytest.raises(BadInput) as err:
        usage(world, day(1), day(2), "lease", subscriber="sub1")
    assert err.value.code == "VPOP-400-REPORT-BY"


# --- rendering ----------------------------------------------------------------------------


def test_render_usage_as_csv(world: World) -> None:
    result = usage(world, GAP_DAY, GAP_DAY + timedelta(days=1), "subscriber")
    parsed = list(csv.reader(io.StringIO(reports.render_usage(result, "csv"))))
    assert parsed[0] == list(reports.USAGE_COLUMNS["subscriber"])
    assert len(parsed) == 1 + len(result["rows"]) + 1
    subscribers = [line[0] for line in parsed[1:-1]]
    assert "'" + HOSTILE_SUB in subscribers  # formula-safe
    isp_names = {line[2] for line in parsed[1:-1]}
    assert HOSTILE_ISP in isp_names
    total = dict(zip(parsed[0], parsed[-1], strict=True))
    assert total["subscriber"] == "total"
    assert int(total["bytes_in"]) == sum(row["bytes_in"] for row in result["rows"])
    assert float(total["coverage_pct"]) == result["totals"]["coverage_pct"]


def test_render_usage_as_json(world: World) -> None:
    result = usage(world, day(2), day(3), "lease")
    assert json.loads(reports.render_usage(result, "json")) == result


def test_render_usage_as_html(world: World) -> None:
    result = usage(world, GAP_DAY, GAP_DAY + timedelta(days=1), "subscriber")
    page = reports.render_usage(result, "html")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "Content-Security-Policy" in page
    assert page.count("<svg") == 2
    assert page.count("<title>") >= 1 + 2 + 24  # page, charts, a bar per hour
    assert "<script>" not in page and "<b>x</b>" not in page
    assert "=1+2&lt;b&gt;x&lt;/b&gt;" in page
    assert "&lt;script&gt;alert(&#x27;c&#x27;)&lt;/script&gt;" in page
    for marker in ("src=", "href=", "@import", "url("):
        assert marker not in page
    assert '<tfoot><tr class="total"><td>total</td>' in page
    assert page.count('<tr class="partial">') == 1  # sub3's row, flagged
    assert "MB" in page  # axis and tooltips in human units


def test_render_usage_refuses_an_unknown_format(world: World) -> None:
    with pytest.raises(BadInput, match="xml"):
        reports.render_usage(usage(world, day(2), day(3), "isp"), "xml")


# --- the command --------------------------------------------------------------------------


@pytest.fixture
def cli_db(copied: World, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.setenv("VPOP_DATABASE_URL", copied.url)
    return copied


def test_vpop_report_usage(cli_db: World, tmp_path: Path) -> None:
    args = ["usage", "--by", "isp", "--from", iso(day(2)) or "", "--to", iso(day(4)) or ""]
    done = CliRunner().invoke(report, [*args, "--format", "json"], catch_exceptions=False)
    assert done.exit_code == 0, done.stderr
    shown = json.loads(done.stdout)
    assert [row["isp"] for row in shown["rows"]] == ["isp-b", "isp-c"]
    expected = cli_db.by_pair(day(2), day(4))
    assert shown["totals"]["bytes_in"] == sum(v[0] for v in expected.values())
    out = tmp_path / "usage.html"
    args = [*args, "--format", "html", "--isp", "isp-b", "--output", str(out)]
    done = CliRunner().invoke(report, args, catch_exceptions=False)
    assert done.exit_code == 0, done.stderr
    assert done.stdout == f"wrote 1 rows to {out}\n"
    assert "<svg" in out.read_text() and "isp-c" not in out.read_text()
    csv_out = CliRunner().invoke(
        report,
        [
            "usage",
            "--by",
            "subscriber",
            "--from",
            "2025-03-02",
            "--to",
            "2025-03-03",
            "--subscriber",
            "sub2",
        ],
        catch_exceptions=False,
    )
    assert csv_out.exit_code == 0
    assert csv_out.stdout.splitlines()[1].startswith("sub2,isp-b,ISP B,1,")


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--by", "router", "--from", "2025-03-02", "--to", "2025-03-03"], "VPOP-400-REPORT-BY"),
        (["--by", "isp", "--from", "2025-03-03", "--to", "2025-03-02"], "VPOP-400-TIME"),
    ],
    ids=["bad-by", "inverted"],
)
def test_vpop_report_usage_refuses_bad_input(cli_db: World, args: list[str], code: str) -> None:
    done = CliRunner().invoke(report, ["usage", *args], catch_exceptions=False)
    assert done.exit_code == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {code}"), done.stderr


# --- PostgreSQL ---------------------------------------------------------------------------


@pytest.mark.skipif(not PG_BIN.exists(), reason="PostgreSQL 15 is not installed")
def test_the_usage_report_on_postgresql(tmp_path: Path) -> None:
    """The same world, 4 days of it, gives the same reports on PostgreSQL as on SQLite."""
    lite = build_world(f"sqlite:///{tmp_path}/small.sqlite", days=4)
    start, end = day(1) + timedelta(hours=2, minutes=25), day(3) + timedelta(hours=22, minutes=5)
    expected = {by: usage(lite, start, end, by) for by in reports.USAGE_BY}
    dispose_engines()
    with postgres_cluster("usage") as pg_url:
        pg = build_world(pg_url, days=4)
        for by in reports.USAGE_BY:
            assert usage(pg, start, end, by) == expected[by]
        assert by_pair(expected["subscriber"]) == pg.by_pair(start, end)
