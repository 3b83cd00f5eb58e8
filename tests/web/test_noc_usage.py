"""The NOC's usage pages: usage by subscriber, ISP or lease with a period picker, charts,
totals and exports; a subscriber's session history; a lease with its versions.

Usage is seeded as the poller leaves it (:func:`tests.webhooks.test_api_usage.seed_usage`:
sessions and hourly/daily rollups of sub1 on isp-a, sub2 and sub3 on isp-b, on one day);
expected figures are worked out from that seed. One test drives the usage page in a real
headless Chromium against the app served on 127.0.0.1.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from tests.web.helpers import NOC_PASSWORD, text
from tests.webhooks.test_api_usage import COVERED, DAY, TRAFFIC, expected_row, seed_usage
from vpop.accounting.service import UsageRollup
from vpop.catalogue.models import Isp, Subscriber
from vpop.core.db import session_scope
from vpop.core.time import utcnow
from vpop.leasing.models import Lease, LeaseVersion

PERIOD = "from=2026-11-02&to=2026-11-02"  # one day: both ends are included on the page
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
HOSTILE_ISP = '<script>alert("isp")</script>'
HOSTILE_NAME = "<img src=x onerror=alert(1)>"


@pytest.fixture
def usage(database_url: str) -> None:
    seed_usage(database_url)


def _href(page: str, marker: str) -> str:
    """The (unescaped) href of the link carrying ``marker``."""
    found = re.search(rf'<a href="([^"]+)"[^>]*{re.escape(marker)}', page)
    assert found, marker
    return html.unescape(found.group(1))


def _row(page: str, key: str) -> str:
    """The HTML of the table row ``data-usage-row="key"``."""
    start = page.index(f'data-usage-row="{key}"')
    return page[start : page.index("</tr>", start)]


def _mb(count: int) -> str:
    return f"{count / 1e6:.1f} MB"


def test_the_nav_links_to_usage_and_pages_need_a_sign_in(
    noc: FlaskClient, client: FlaskClient
) -> None:
    assert 'href="/noc/usage"' in text(noc.get("/noc/orders"))
    for path in ("/noc/usage", "/noc/usage.csv", "/noc/subscribers/sub1/sessions", "/noc/leases/1"):
        response = client.get(path)
        assert response.status_code == 303, path
        assert "/noc/login" in response.headers["Location"]


def test_usage_by_subscriber_shows_rows_coverage_totals_and_charts(
    noc: FlaskClient, usage: None
) -> None:
    response = noc.get(f"/noc/usage?by=subscriber&{PERIOD}")
    assert response.status_code == 200
    page = text(response)
    assert page.count("data-usage-row=") == len(TRAFFIC)
    for sub, (isp, *_figures) in TRAFFIC.items():
        row = _row(page, f"{sub}:{isp}")
        expected = expected_row(sub)
        assert _mb(expected["bytes_in"]) in row and _mb(expected["bytes_out"]) in row
        # coverage under 100 % is flagged on its row, and only there
        assert ("data-coverage-gap" in row) == (COVERED[sub] < 1), sub
    assert "50.0 %" in _row(page, "sub2:isp-b")
    totals = page[page.index("data-usage-totals") :]
    assert _mb(sum(expected_row(sub)["bytes_in"] for sub in TRAFFIC)) in totals
    assert page.count('<svg class="chart"') == 2
    assert "2026-11-02 00:00:00 UTC" in page and "2026-11-03 00:00:00 UTC" in page


def test_usage_by_isp_sums_its_subscribers_and_links_to_them(noc: FlaskClient, usage: None) -> None:
    page = text(noc.get(f"/noc/usage?by=isp&{PERIOD}"))
    assert page.count("data-usage-row=") == 2
    isp_b = _row(page, "isp-b")
    total_out = expected_row("sub2")["bytes_out"] + expected_row("sub3")["bytes_out"]
    assert _mb(total_out) in isp_b
    assert "75.0 %" in isp_b and "data-coverage-gap" in isp_b
    link = html.unescape(re.search(r'href="([^"]+)"', isp_b).group(1))  # type: ignore[union-attr]
    narrowed = text(noc.get(link))
    assert "data-usage-row=" in narrowed
    assert narrowed.count("data-usage-row=") == 2 and "sub1:isp-a" not in narrowed


def test_the_period_picker_has_dates_and_presets(noc: FlaskClient, usage: None) -> None:
    page = text(noc.get(f"/noc/usage?by=isp&{PERIOD}&isp=isp-b"))
    assert '<input type="date" name="from" value="2026-11-02"' in page
    assert '<input type="date" name="to" value="2026-11-02"' in page
    today = utcnow().date()
    first = today.replace(day=1)
    last_month_end = first - timedelta(days=1)
    expected = {
        "Today": (today, today),
        "Last 7 days": (today - timedelta(days=6), today),
        "This month": (first, today),
        "Last month": (last_month_end.replace(day=1), last_month_end),
    }
    presets = page[page.index("data-presets") : page.index("</nav>", page.index("data-presets"))]
    for label, (start, end) in expected.items():
        link = re.search(rf'<a href="([^"]+)"[^>]*>{label}</a>', presets)
        assert link, label
        url = html.unescape(link.group(1))
        # a preset keeps the other filters and sets both ends
        assert f"from={start.isoformat()}" in url and f"to={end.isoformat()}" in url, url
        assert "by=isp" in url and "isp=isp-b" in url
        assert noc.get(url).status_code == 200


def test_the_default_period_is_this_month_so_far(noc: FlaskClient) -> None:
    today = utcnow().date()
    page = text(noc.get("/noc/usage"))
    assert f'name="from" value="{today.replace(day=1).isoformat()}"' in page
    assert f'name="to" value="{today.isoformat()}"' in page
    assert "No usage in this period." in page


def test_the_exports_give_the_pages_report(noc: FlaskClient, usage: None) -> None:
    page = text(noc.get(f"/noc/usage?by=subscriber&{PERIOD}"))
    filename = "usage-subscriber-2026-11-02-2026-11-03"
    csv_export = noc.get(_href(page, 'data-export="csv"'))
    assert csv_export.status_code == 200
    assert csv_export.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert csv_export.headers["Content-Disposition"] == f'attachment; filename="{filename}.csv"'
    lines = list(csv.reader(io.StringIO(text(csv_export))))
    column = lines[0].index("bytes_out")
    assert {line[0]: int(line[column]) for line in lines[1:-1]} == {
        sub: expected_row(sub)["bytes_out"] for sub in TRAFFIC
    }
    assert lines[-1][0] == "total"
    json_export = noc.get(_href(page, 'data-export="json"'))
    assert json_export.headers["Content-Disposition"] == f'attachment; filename="{filename}.json"'
    report = json.loads(text(json_export))
    assert {row["subscriber"] for row in report["rows"]} == set(TRAFFIC)
    assert report["from"] == DAY.isoformat()
    html_export = noc.get(_href(page, 'data-export="html"'))
    assert html_export.mimetype == "text/html"
    assert html_export.headers["Content-Disposition"] == f'attachment; filename="{filename}.html"'
    assert "<svg" in text(html_export) and "sub2" in text(html_export)


def test_a_subscribers_session_history_from_the_usage_page(noc: FlaskClient, usage: None) -> None:
    page = text(noc.get(f"/noc/usage?by=subscriber&{PERIOD}"))
    link = re.search(r'href="(/noc/subscribers/sub1/sessions[^"]*)"', page)
    assert link
    sessions = noc.get(html.unescape(link.group(1)))
    assert sessions.status_code == 200
    body = text(sessions)
    assert body.count("data-session-row=") == 1
    row = body[body.index("data-session-row=") :]
    row = row[: row.index("</tr>")]
    assert "Alpha Net" in row and "moved" in row and "selection" in row
    assert _mb(28 * TRAFFIC["sub1"][1]) in row and _mb(28 * TRAFFIC["sub1"][2]) in row
    assert "100 %" in row
    # sub3's session is still open
    open_page = text(noc.get("/noc/subscribers/sub3/sessions"))
    assert "data-open" in open_page


def test_a_subscribers_sessions_export_as_csv(noc: FlaskClient, usage: None) -> None:
    page = text(noc.get("/noc/subscribers/sub2/sessions"))
    export = noc.get(_href(page, 'data-export="csv"'))
    assert export.status_code == 200
    assert export.headers["Content-Disposition"] == 'attachment; filename="sessions-sub2.csv"'
    lines = list(csv.reader(io.StringIO(text(export))))
    assert lines[0][:5] == ["id", "source", "line", "subscriber", "isp"]
    assert lines[0][-1] == "coverage_pct"
    assert [line[3:5] for line in lines[1:]] == [["sub2", "isp-b"]]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/noc/subscribers/nobody/sessions", 404),
        ("/noc/subscribers/Not%20An%20Id/sessions", 422),
        ("/noc/usage?from=02-11-2026", 422),
        ("/noc/usage?from=2026-11-03&to=2026-11-02", 422),
        ("/noc/usage?from=2025-01-01&to=2026-02-05", 422),
        ("/noc/usage?by=planet", 422),
        ("/noc/usage?isp=isp-a&isp=isp-b", 422),
        ("/noc/usage.xml", 404),
        ("/noc/leases/999999", 404),
        ("/noc/leases/999999/versions.csv", 404),
    ],
)
def test_bad_periods_and_unknown_ids_are_html_errors(
    noc: FlaskClient, path: str, status: int
) -> None:
    response = noc.get(path)
    assert response.status_code == status, text(response)
    assert response.mimetype == "text/html"


def test_hostile_names_are_escaped(noc: FlaskClient, database_url: str, usage: None) -> None:
    with session_scope(database_url) as db:
        db.get(Isp, "isp-a").name = HOSTILE_ISP  # type: ignore[union-attr]
        db.get(Subscriber, "sub1").name = HOSTILE_NAME  # type: ignore[union-attr]
    for path in (f"/noc/usage?by=subscriber&{PERIOD}", "/noc/subscribers/sub1/sessions"):
        page = text(noc.get(path))
        assert "<script>alert" not in page and "<img src=x" not in page, path
    assert "&lt;script&gt;alert(" in text(noc.get(f"/noc/usage?by=isp&{PERIOD}"))
    assert "&lt;img src=x onerror=alert(1)&gt;" in text(noc.get("/noc/subscribers/sub1/sessions"))


@pytest.fixture
def lease(database_url: str) -> int:
    """isp-b's lease on rc1 (started 90 days ago), renegotiated 45 days ago from 100 to 200
    Mbit/s, with 3 GB received and 1 GB sent on its uplink on the first of this month."""
    now = utcnow()
    changed = now - timedelta(days=45)
    with session_scope(database_url) as db:
        row = Lease(isp_id="isp-b", router="rc1", uplink="isp-b", committed_mbps=200,
                    price_minor=250_000, status="active",
                    starts_at=now - timedelta(days=90))  # fmt: skip
        db.add(row)
        db.flush()
        for number, (start, stop, rate, price, reason) in enumerate(
            [
                (row.starts_at, changed, 100, 150_000, "create"),
                (changed, None, 200, 250_000, "change"),
            ],
            start=1,
        ):
            db.add(LeaseVersion(lease_id=row.id, version=number, valid_from=start,
                                valid_to=stop, committed_mbps=rate, peak_pct=100,
                                price_minor=price, currency="EUR", reason=reason,
                                actor="user:alice"))  # fmt: skip
        first = datetime.combine(now.date().replace(day=1), datetime.min.time(), UTC)
        for period in ("hour", "day"):
            db.add(UsageRollup(period=period, level="lease", isp_id="isp-b", subject=str(row.id),
                               bucket=first, bytes_in=3_000_000_000, bytes_out=1_000_000_000,
                               packets_in=3, packets_out=1, covered_seconds=3600.0,
                               samples=12))  # fmt: skip
        return row.id


def test_a_lease_shows_its_versions_and_usage(noc: FlaskClient, lease: int) -> None:
    leases = text(noc.get("/noc/leases"))
    assert f'href="/noc/leases/{lease}"' in leases
    response = noc.get(f"/noc/leases/{lease}")
    assert response.status_code == 200
    page = text(response)
    assert "Beta Fibre" in page and "200 Mbit/s" in page
    assert page.count("data-version-row=") == 2
    v1 = page[page.index('data-version-row="1"') :]
    v1 = v1[: v1.index("</tr>")]
    assert "100 Mbit/s" in v1 and "1500.00 EUR" in v1 and "create" in v1
    v2 = page[page.index('data-version-row="2"') :]
    assert "in force" in v2[: v2.index("</tr>")]
    usage = page[page.index("data-lease-usage") :]
    assert "3.0 GB" in usage and "1.0 GB" in usage
    by_lease = text(noc.get(_href(page, "data-lease-usage-link")))
    row = _row(by_lease, f"{lease}:2")
    assert "3.0 GB" in row and "200 Mbit/s" in row and "2500.00 EUR" in row
    export = noc.get(_href(page, 'data-export="csv"'))
    lines = list(csv.reader(io.StringIO(text(export))))
    assert lines[0][:2] == ["lease", "version"]
    assert [line[1] for line in lines[1:]] == ["1", "2"]


# --- a real browser ------------------------------------------------------------------------


@pytest.fixture
def served(app: Flask) -> Iterator[str]:
    """The app on 127.0.0.1 (a free port) in a thread; its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def test_the_usage_page_in_a_real_browser(served: str, usage: None, tmp_path: Path) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium package")
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"], headless=True
        )
        try:
            context = browser.new_context(accept_downloads=True)
            page = context.new_page()
            page.on(
                "console", lambda msg: problems.append(msg.text) if msg.type == "error" else None
            )
            page.goto(f"{served}/noc/usage?by=subscriber&{PERIOD}")
            page.locator('input[name="username"]').fill("alice")
            page.locator('input[name="password"]').fill(NOC_PASSWORD)
            page.locator('button[type="submit"]', has_text="Sign in").click()
            expect(page.locator("h1")).to_have_text("Usage by subscriber")
            rows = page.locator("[data-usage-table] tbody tr[data-usage-row]")
            expect(rows).to_have_count(len(TRAFFIC))
            expect(
                page.locator('[data-usage-row="sub2:isp-b"] [data-coverage-gap]')
            ).to_be_visible()
            expect(page.locator("svg.chart")).to_have_count(2)
            page.screenshot(path=str(SHOTS / "noc-usage.png"), full_page=True)
            # the picker: a day before any service (date inputs), then back with a preset
            page.locator('input[name="from"]').fill("2026-10-01")
            page.locator('input[name="to"]').fill("2026-10-01")
            page.locator("[data-period-picker] button").click()
            expect(page.locator("[data-usage-table] tbody")).to_contain_text("No usage")
            page.get_by_role("link", name="This month").click()
            first = utcnow().date().replace(day=1).isoformat()
            expect(page.locator('input[name="from"]')).to_have_value(first)
            page.goto(f"{served}/noc/usage?by=subscriber&{PERIOD}")
            with page.expect_download() as info:
                page.locator('[data-export="csv"]').click()
            download = info.value
            assert download.suggested_filename == "usage-subscriber-2026-11-02-2026-11-03.csv"
            saved = tmp_path / download.suggested_filename
            download.save_as(saved)
            lines = list(csv.reader(io.StringIO(saved.read_text())))
            assert sorted(line[0] for line in lines[1:-1]) == sorted(TRAFFIC)
            page.get_by_role("link", name="sub1").click()
            expect(page.locator("h1")).to_contain_text("Sessions of sub1")
            expect(page.locator("[data-session-row]")).to_have_count(1)
            page.screenshot(path=str(SHOTS / "noc-subscriber-sessions.png"), full_page=True)
        finally:
            browser.close()
    # the pages' policy forbids inline styles and scripts: nothing on them may need one
    assert problems == [], problems
