"""The usage report and service sessions over the API: who reads what, formats, bad input.

The world (:func:`seed_usage`): on one UTC day, sub1 uses isp-a, sub2 and sub3 use isp-b;
each has a service session covering the whole day (sub3's still open) and hourly and daily
rollups of its traffic, as the poller writes them (subscriber and ISP levels). sub2's polls
covered only half of its hours, so its coverage is 50 %. Figures asserted below are worked
out from :data:`TRAFFIC` and :data:`COVERED`, never copied from an answer.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.webhooks.helpers import PROBLEM, bearer
from vpop.accounting.service import ServiceSession, UsageRollup
from vpop.catalogue.models import Line
from vpop.core.db import session_scope

DAY = datetime(2026, 11, 2, tzinfo=UTC)
WINDOW = "from=2026-11-02&to=2026-11-03"
USAGE = "/api/v1/reports/usage"
SESSIONS = "/api/v1/sessions"

# per subscriber: its ISP, and bytes in, bytes out, packets in, packets out in each hour
TRAFFIC = {
    "sub1": ("isp-a", 1_000_000, 7_000_000, 1_000, 6_000),
    "sub2": ("isp-b", 2_000_000, 3_000_000, 2_000, 2_500),
    "sub3": ("isp-b", 500_000, 900_000, 400, 800),
}
# the share of each hour its polls measured
COVERED = {"sub1": 1.0, "sub2": 0.5, "sub3": 1.0}
OWN = {"isp-a": {"sub1"}, "isp-b": {"sub2", "sub3"}}


@dataclass(frozen=True)
class Seeded:
    """What :func:`seed_usage` wrote: session ids by subscriber, and the day."""

    sessions: dict[str, int]
    day: datetime


def seed_usage(url: str, day: datetime = DAY, names: dict[str, str] | None = None) -> Seeded:
    """A day of usage for sub1 (isp-a), sub2 and sub3 (isp-b): sessions and rollups.

    Sessions start 2 hours before ``day`` and end 2 hours after it (sub3's is open); the
    rollups are 24 hourly rows and one daily row per subscriber and per ISP, with the
    traffic of :data:`TRAFFIC` in every hour.
    """
    with session_scope(url) as session:
        lines = {line.subscriber_id: line for line in session.scalars(select(Line))}
        ids: dict[str, int] = {}
        for sub, (isp, *_counts) in TRAFFIC.items():
            line = lines[sub]
            row = ServiceSession(
                source="selection",
                line_id=line.id,
                subscriber_id=sub,
                isp_id=isp,
                router=line.router,
                interface=line.interface,
                started_at=day - timedelta(hours=2),
                ended_at=None if sub == "sub3" else day + timedelta(hours=26),
                end_reason=None if sub == "sub3" else "moved",
                bytes_in=28 * TRAFFIC[sub][1],
                bytes_out=28 * TRAFFIC[sub][2],
                packets_in=28 * TRAFFIC[sub][3],
                packets_out=28 * TRAFFIC[sub][4],
                covered_seconds=28 * 3600 * COVERED[sub],
            )
            session.add(row)
            session.flush()
            ids[sub] = row.id
        per_isp: dict[str, list[str]] = {}
        for sub, (isp, *_counts) in TRAFFIC.items():
            per_isp.setdefault(isp, []).append(sub)
        subjects = [("subscriber", sub, TRAFFIC[sub][0], [sub]) for sub in TRAFFIC]
        subjects += [("isp", isp, isp, subs) for isp, subs in per_isp.items()]
        for level, subject, isp, members in subjects:
            hourly = [sum(int(TRAFFIC[m][k]) for m in members) for k in (1, 2, 3, 4)]
            covered = sum(3600 * COVERED[m] for m in members)
            for period, buckets, scale in (
                ("hour", [day + timedelta(hours=h) for h in range(24)], 1),
                ("day", [day], 24),
            ):
                for bucket in buckets:
                    session.add(
                        UsageRollup(
                            period=period,
                            level=level,
                            isp_id=isp,
                            subject=subject,
                            bucket=bucket,
                            bytes_in=hourly[0] * scale,
                            bytes_out=hourly[1] * scale,
                            packets_in=hourly[2] * scale,
                            packets_out=hourly[3] * scale,
                            covered_seconds=covered * scale,
                            samples=12 * scale,
                        )
                    )
    return Seeded(sessions=ids, day=day)


def expected_row(sub: str) -> dict[str, Any]:
    """The report row of ``sub`` over :data:`DAY`, worked out from the seed's figures."""
    isp, bytes_in, bytes_out, packets_in, packets_out = TRAFFIC[sub]
    return {
        "subscriber": sub,
        "isp": isp,
        "sessions": 1,
        "bytes_in": 24 * bytes_in,
        "bytes_out": 24 * bytes_out,
        "packets_in": 24 * packets_in,
        "packets_out": 24 * packets_out,
        "service_seconds": 86400.0,
        "covered_seconds": 86400.0 * COVERED[sub],
        "coverage_pct": 100.0 * COVERED[sub],
    }


@pytest.fixture
def seeded(database_url: str) -> Seeded:
    return seed_usage(database_url)


def _get(client: FlaskClient, path: str, token: str | None) -> Any:
    return client.get(path, headers=bearer(token) if token else {})


def test_operators_read_every_isps_usage_by_subscriber(
    client: FlaskClient, tokens: dict[str, str], seeded: Seeded
) -> None:
    for role in ("admin", "noc"):
        response = _get(client, f"{USAGE}?by=subscriber&{WINDOW}", tokens[role])
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.mimetype == "application/json"
        report = response.get_json()
        assert (report["by"], report["isp"]) == ("subscriber", None)
        assert report["from"] == DAY.isoformat()
        assert report["to"] == (DAY + timedelta(days=1)).isoformat()
        rows = {row["subscriber"]: row for row in report["rows"]}
        assert set(rows) == set(TRAFFIC)
        for sub, row in rows.items():
            assert {k: row[k] for k in expected_row(sub)} == expected_row(sub), sub
        assert rows["sub1"]["isp_name"] == "Alpha Net"
        for key in ("bytes_in", "bytes_out", "packets_in", "packets_out"):
            assert report["totals"][key] == sum(expected_row(sub)[key] for sub in TRAFFIC)
        # the hourly series adds up to the totals
        assert len(report["series"]) == 24
        assert sum(p["bytes_out"] for p in report["series"]) == report["totals"]["bytes_out"]


def test_isp_rows_are_the_sums_of_their_subscribers(
    client: FlaskClient, tokens: dict[str, str], seeded: Seeded
) -> None:
    report = _get(client, f"{USAGE}?by=isp&{WINDOW}", tokens["admin"]).get_json()
    rows = {row["isp"]: row for row in report["rows"]}
    assert set(rows) == {"isp-a", "isp-b"}
    for isp, members in OWN.items():
        assert rows[isp]["subscribers"] == len(members)
        for key in ("bytes_in", "bytes_out", "service_seconds", "covered_seconds"):
            assert rows[isp][key] == sum(expected_row(sub)[key] for sub in members), (isp, key)
    # sub2's half-covered day and sub3's whole one: isp-b is 75 % covered
    assert rows["isp-b"]["coverage_pct"] == 75.0
    assert rows["isp-a"]["coverage_pct"] == 100.0


@pytest.mark.parametrize("by", ["subscriber", "isp"])
@pytest.mark.parametrize("own", ["isp-a", "isp-b"])
def test_an_isp_token_reads_only_its_own_customers(
    client: FlaskClient, tokens: dict[str, str], seeded: Seeded, own: str, by: str
) -> None:
    other = "isp-b" if own == "isp-a" else "isp-a"
    for query in (f"by={by}&{WINDOW}", f"by={by}&{WINDOW}&isp={own}"):
        response = _get(client, f"{USAGE}?{query}", tokens[own])
        assert response.status_code == 200, response.get_data(as_text=True)
        report = response.get_json()
        assert report["isp"] == own
        assert {row["isp"] for row in report["rows"]} == {own}
        if by == "subscriber":
            assert {row["subscriber"] for row in report["rows"]} == OWN[own]
        text = response.get_data(as_text=True)
        for stranger in OWN[other]:
            assert f'"{stranger}"' not in text
        assert f'"{other}"' not in text
    # asking for another ISP's customer by name gives nothing of theirs
    stranger = sorted(OWN[other])[0]
    report = _get(client, f"{USAGE}?by=subscriber&{WINDOW}&subscriber={stranger}", tokens[own])
    assert report.get_json()["rows"] == []


def test_an_isp_token_reads_only_its_own_sessions(
    client: FlaskClient, tokens: dict[str, str], seeded: Seeded
) -> None:
    for own, members in OWN.items():
        response = _get(client, SESSIONS, tokens[own])
        assert response.status_code == 200
        sessions = response.get_json()["sessions"]
        assert {s["subscriber"] for s in sessions} == members
        assert {s["isp"] for s in sessions} == {own}


@pytest.mark.parametrize("path", [f"{USAGE}?by=isp&{WINDOW}&isp=isp-b", f"{SESSIONS}?isp=isp-b"])
def test_naming_another_isp_is_403_for_an_isp_token(
    client: FlaskClient, tokens: dict[str, str], seeded: Seeded, path: str
) -> None:
    response = _get(client, path, tokens["isp-a"])
    assert response.status_code == 403
    assert response.mimetype == PROBLEM
    assert response.get_json()["code"] == "VPOP-403"
    assert _get(client, path, tokens["isp-b"]).status_code == 200


@pytest.mark.parametrize("path", [f"{USAGE}?by=isp&{WINDOW}", SESSIONS])
def test_portal_tokens_are_refused_and_strangers_must_authenticate(
    client: FlaskClient, tokens: dict[str, str], seeded: Seeded, path: str
) -> None:
    refused = _get(client, path, tokens["portal"])
    assert refused.status_code == 403
    assert refused.get_json()["code"] == "VPOP-403"
    anonymous = _get(client, path, None)
    assert anonymous.status_code == 401
    assert anonymous.mimetype == PROBLEM
    assert "Bearer" in anonymous.headers["WWW-Authenticate"]


def test_csv_is_an_attachment_with_a_header_the_rows_and_a_totals_line(
    client: FlaskClient, tokens: dict[str, str], seeded: Seeded
) -> None:
    response = _get(client, f"{USAGE}?by=subscriber&{WINDOW}&format=csv", tokens["admin"])
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="usage-subscriber-2026-11-02-2026-11-03.csv"'
    )
    lines = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    header, body, total = lines[0], lines[1:-1], lines[-1]
    assert header[:3] == ["subscriber", "isp", "isp_name"]
    assert sorted(row[0] for row in body) == sorted(TRAFFIC)
    column = header.index("bytes_in")
    for row in body:
        assert int(row[column]) == expected_row(row[0])["bytes_in"]
    assert total[0] == "total"
    assert int(total[column]) == sum(expected_row(sub)["bytes_in"] for sub in TRAFFIC)


def test_csv_of_a_window_with_times_names_them_in_the_file_name(
    client: FlaskClient, tokens: dict[str, str], seeded: Seeded
) -> None:
    query = "by=isp&from=2026-11-02T06:00:00Z&to=2026-11-02T18:30:00Z&format=csv"
    response = _get(client, f"{USAGE}?{query}", tokens["isp-b"])
    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="usage-isp-2026-11-02T060000Z-2026-11-02T183000Z.csv"'
    )
    text = response.get_data(as_text=True)
    assert "isp-b" in text and "isp-a" not in text


def test_html_is_a_self_contained_page_with_charts_and_totals(
    client: FlaskClient, tokens: dict[str, str], seeded: Seeded
) -> None:
    response = _get(client, f"{USAGE}?by=isp&{WINDOW}&format=html", tokens["noc"])
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    page = response.get_data(as_text=True)
    assert page.startswith("<!DOCTYPE html>")
    assert "<svg" in page
    assert "Beta Fibre" in page
    for external in ("<script", 'src="http', 'href="http', "@import", "url("):
        assert external not in page, external


@pytest.mark.parametrize(
    ("query", "code"),
    [
        (f"{WINDOW}", "VPOP-400-MISSING"),
        ("by=isp&from=2026-11-02", "VPOP-400-MISSING"),
        ("by=isp&to=2026-11-02", "VPOP-400-MISSING"),
        ("by=nation&" + WINDOW, "VPOP-400-REPORT-BY"),
        (f"by=isp&{WINDOW}&format=xml", "VPOP-400"),
        ("by=isp&from=yesterday&to=2026-11-03", "VPOP-400-TIME"),
        ("by=isp&from=2026-11-02T00:00:00&to=2026-11-03", "VPOP-400-TIME"),
        ("by=isp&from=2026-11-03&to=2026-11-02", "VPOP-400-TIME"),
        ("by=isp&from=2026-11-02&to=2026-11-02", "VPOP-400-TIME"),
        ("by=isp&from=2025-01-01&to=2026-02-06", "VPOP-400-RANGE"),  # 401 days
        (f"by=isp&{WINDOW}&isp=Not An Isp", "VPOP-400"),
        (f"by=isp&{WINDOW}&colour=red", "VPOP-400-UNKNOWN-FIELD"),
        (f"by=isp&{WINDOW}&by=subscriber", "VPOP-400-TYPE"),
    ],
)
def test_bad_usage_queries_are_422_problems(
    client: FlaskClient, tokens: dict[str, str], query: str, code: str
) -> None:
    response = _get(client, f"{USAGE}?{query}", tokens["admin"])
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["code"] == code
    assert body["detail"]


def test_a_window_of_400_days_is_accepted(
    client: FlaskClient, tokens: dict[str, str], seeded: Seeded
) -> None:
    start = DAY - timedelta(days=399)
    query = f"by=isp&from={start.date().isoformat()}&to=2026-11-03"
    report = _get(client, f"{USAGE}?{query}", tokens["admin"]).get_json()
    assert sum(row["bytes_in"] for row in report["rows"]) == sum(
        expected_row(sub)["bytes_in"] for sub in TRAFFIC
    )


def test_sessions_newest_first_with_filters(
    client: FlaskClient, tokens: dict[str, str], seeded: Seeded
) -> None:
    admin = tokens["admin"]
    everything = _get(client, SESSIONS, admin).get_json()["sessions"]
    assert {s["subscriber"] for s in everything} == set(TRAFFIC)
    started = [s["started_at"] for s in everything]
    assert started == sorted(started, reverse=True)
    sub1 = next(s for s in everything if s["subscriber"] == "sub1")
    assert sub1["id"] == seeded.sessions["sub1"]
    assert (sub1["isp"], sub1["end_reason"], sub1["source"]) == ("isp-a", "moved", "selection")
    assert sub1["bytes_out"] == 28 * TRAFFIC["sub1"][2]
    live = _get(client, f"{SESSIONS}?open=true", admin).get_json()["sessions"]
    assert [s["subscriber"] for s in live] == ["sub3"]
    assert live[0]["ended_at"] is None
    ended = _get(client, f"{SESSIONS}?open=false", admin).get_json()["sessions"]
    assert {s["subscriber"] for s in ended} == {"sub1", "sub2"}
    one = _get(client, f"{SESSIONS}?subscriber=sub2", admin).get_json()["sessions"]
    assert [s["id"] for s in one] == [seeded.sessions["sub2"]]
    by_line = _get(client, f"{SESSIONS}?line={sub1['line']}", admin).get_json()["sessions"]
    assert [s["id"] for s in by_line] == [seeded.sessions["sub1"]]
    # the closed sessions ended on DAY + 26 h; a window after that finds only the open one
    later = _get(client, f"{SESSIONS}?from=2026-11-04", admin).get_json()["sessions"]
    assert [s["subscriber"] for s in later] == ["sub3"]
    before = _get(client, f"{SESSIONS}?to=2026-11-01", admin).get_json()["sessions"]
    assert before == []
    limited = _get(client, f"{SESSIONS}?limit=2", admin).get_json()["sessions"]
    assert len(limited) == 2


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("limit=0", "VPOP-400-RANGE"),
        ("limit=ten", "VPOP-400-TYPE"),
        ("line=-1", "VPOP-400-TYPE"),
        ("open=yes", "VPOP-400-TYPE"),
        ("from=2026-11-03&to=2026-11-02", "VPOP-400-TIME"),
        ("from=soon", "VPOP-400-TIME"),
        ("subscriber=Sub%201", "VPOP-400"),
        ("state=open", "VPOP-400-UNKNOWN-FIELD"),
    ],
)
def test_bad_session_queries_are_422_problems(
    client: FlaskClient, tokens: dict[str, str], query: str, code: str
) -> None:
    response = _get(client, f"{SESSIONS}?{query}", tokens["noc"])
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.get_json()["code"] == code
