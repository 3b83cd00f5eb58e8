"""The NOC's payment pages: payments with filters and a CSV export, a payment's history with
its subscriber's spending limit (changed by a form), settlements with lines and statement
downloads, and the report of payments by payee and period.

Payments are made through the billing service as the API makes them (:func:`seed_payments`):
a merchant under isp-b (2.5 % + 0.10 fee) sells sub1 a film (12.00, refunded 2.00) and sub2 a
song (8.00, 5.00 captured); isp-b itself holds 3.00 of sub1's allowance and declines sub3's
60.00 (over the 50.00 limit). The expected figures below are worked out from that by hand.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import re

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.pg import postgres_cluster
from tests.web.helpers import form_token, text
from vpop.billing import service as billing
from vpop.catalogue.service import Isp, Line, Subscriber
from vpop.core.audit import AuditEntry
from vpop.core.db import session_scope
from vpop.core.migrate import upgrade
from vpop.core.time import utcnow
from vpop.selection.service import Caller

SHOP = Caller(name="token:90", role="merchant", isp="isp-b", merchant="shop-b")
ISP_B = Caller(name="token:91", role="isp", isp="isp-b")
HOSTILE_ITEM = '=HYPERLINK("http://x")<script>alert(1)</script>'


def _authorise(url: str, caller: Caller, subscriber: str, amount: int, item: str, ref: str) -> int:
    body = billing.PaymentBody.parse(
        {
            "subscriber": subscriber,
            "amount_minor": amount,
            "currency": "EUR",
            "item": item,
            "merchant_reference": ref,
        }
    )
    with session_scope(url) as db:
        return billing.authorise(db, caller, body).id


def seed_payments(url: str) -> dict[str, int]:
    """The payments of the module docstring; their ids by name."""
    with session_scope(url) as db:
        billing.register_merchant(
            db, "shop-b", "isp-b", "Beta Shop", fee_bp=250, fee_fixed_minor=10, actor="tests"
        )
    film = _authorise(url, SHOP, "sub1", 1200, "Film night", "order-1")
    song = _authorise(url, SHOP, "sub2", 800, "Song", "order-2")
    book = _authorise(url, ISP_B, "sub1", 300, "Book", "order-3")
    big = _authorise(url, ISP_B, "sub3", 6000, "Big screen", "order-4")
    with session_scope(url) as db:
        billing.capture(db, SHOP, film)
    with session_scope(url) as db:
        billing.refund(db, SHOP, film, 200, reason="scratched")
    with session_scope(url) as db:
        billing.capture(db, SHOP, song, 500)
    return {"film": film, "song": song, "book": book, "big": big}


@pytest.fixture
def paid(database_url: str) -> dict[str, int]:
    return seed_payments(database_url)


def _row(page: str, marker: str) -> str:
    start = page.index(marker)
    return page[start : page.index("</tr>", start)]


def _href(page: str, marker: str) -> str:
    found = re.search(rf'<a href="([^"]+)"[^>]*{re.escape(marker)}', page)
    assert found, marker
    return html.unescape(found.group(1))


def _period() -> str:
    return utcnow().strftime("%Y-%m")


def test_the_nav_links_to_payments_and_settlements_and_pages_need_a_sign_in(
    noc: FlaskClient, client: FlaskClient
) -> None:
    nav = text(noc.get("/noc/orders"))
    assert 'href="/noc/payments"' in nav and 'href="/noc/settlements"' in nav
    for path in (
        "/noc/payments",
        "/noc/payments.csv",
        "/noc/payments/1",
        "/noc/payments/report",
        "/noc/payments/report.csv",
        "/noc/settlements",
        "/noc/settlements/1",
        "/noc/settlements/1/statement.json",
    ):
        response = client.get(path)
        assert response.status_code == 303, path
        assert "/noc/login" in response.headers["Location"]
    posted = client.post("/noc/payments/1/spending-limit", data={"limit_minor": "1"})
    assert posted.status_code == 303 and "/noc/login" in posted.headers["Location"]


def test_payments_are_listed_newest_first_with_their_figures(
    noc: FlaskClient, paid: dict[str, int]
) -> None:
    page = text(noc.get("/noc/payments"))
    ids = [int(found) for found in re.findall(r'data-payment-row="([0-9]+)"', page)]
    assert ids == sorted(paid.values(), reverse=True)
    film = _row(page, f'data-payment-row="{paid["film"]}"')
    assert "CAPTURED" in film and "Beta Shop" in film and "sub1" in film
    assert "12.00 EUR" in film and "2.00 EUR" in film
    big = _row(page, f'data-payment-row="{paid["big"]}"')
    assert "DECLINED" in big and "limit" in big


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("payee=shop-b", ("film", "song")),
        ("payee=isp-b", ("book", "big")),
        ("isp=isp-b", ("film", "song", "book", "big")),
        ("isp=isp-a", ()),
        ("subscriber=sub1", ("film", "book")),
        ("status=DECLINED", ("big",)),
        ("status=CAPTURED&subscriber=sub2", ("song",)),
    ],
    ids=lambda value: str(value),
)
def test_the_payment_filters_narrow_the_list_and_its_export(
    noc: FlaskClient, paid: dict[str, int], query: str, expected: tuple[str, ...]
) -> None:
    page = text(noc.get(f"/noc/payments?{query}"))
    shown = {int(found) for found in re.findall(r'data-payment-row="([0-9]+)"', page)}
    assert shown == {paid[name] for name in expected}
    if not expected:
        assert "No payments match the filter." in page
    export = noc.get(_href(page, 'data-export="csv"'))
    assert export.status_code == 200
    assert export.headers["Content-Disposition"] == 'attachment; filename="payments.csv"'
    lines = list(csv.DictReader(io.StringIO(text(export))))
    assert {int(line["id"]) for line in lines} == shown


def test_the_day_filter_keeps_todays_payments_and_drops_others(
    noc: FlaskClient, paid: dict[str, int]
) -> None:
    today = utcnow().date().isoformat()
    page = text(noc.get(f"/noc/payments?from={today}&to={today}"))
    assert page.count("data-payment-row=") == len(paid)
    page = text(noc.get("/noc/payments?from=2020-01-01&to=2020-01-31"))
    assert page.count("data-payment-row=") == 0


def test_the_payments_export_is_formula_safe(noc: FlaskClient, database_url: str) -> None:
    payment = _authorise(database_url, ISP_B, "sub2", 100, HOSTILE_ITEM, "order-9")
    export = text(noc.get("/noc/payments.csv"))
    lines = list(csv.DictReader(io.StringIO(export)))
    assert [int(line["id"]) for line in lines] == [payment]
    assert lines[0]["item"] == "'" + HOSTILE_ITEM
    assert lines[0]["amount_minor"] == "100"
    page = text(noc.get("/noc/payments"))
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page


def test_a_payment_shows_its_whole_history(noc: FlaskClient, paid: dict[str, int]) -> None:
    response = noc.get(f"/noc/payments/{paid['film']}")
    assert response.status_code == 200
    page = text(response)
    kinds = re.findall(r'data-event="([a-z]+)"', page)
    assert kinds == ["authorised", "captured", "refunded"]
    refunded = _row(page, 'data-event="refunded"')
    assert "2.00 EUR" in refunded and "scratched" in refunded
    assert "Film night" in page and "order-1" in page and "Beta Shop" in page
    declined = text(noc.get(f"/noc/payments/{paid['big']}"))
    assert re.findall(r'data-event="([a-z]+)"', declined) == ["declined"]
    assert "data-decline-reason>limit<" in declined


def test_a_payment_shows_its_subscribers_spending(noc: FlaskClient, paid: dict[str, int]) -> None:
    page = text(noc.get(f"/noc/payments/{paid['book']}"))
    spending = page[page.index("data-spending") :]
    # sub1: a 50.00 limit; the film's 12.00 less its 2.00 refund spent, the book's 3.00 held
    assert "data-limit>50.00 EUR<" in spending
    assert "data-spent>10.00 EUR<" in spending
    assert "data-held>3.00 EUR<" in spending
    assert "data-available>37.00 EUR<" in spending


def test_the_noc_changes_a_spending_limit_with_the_form(
    noc: FlaskClient, paid: dict[str, int], database_url: str
) -> None:
    path = f"/noc/payments/{paid['book']}"
    token = form_token(noc.get(path))
    response = noc.post(f"{path}/spending-limit", data={"csrf_token": token, "limit_minor": "8000"})
    assert response.status_code == 303, text(response)
    assert response.headers["Location"].endswith(path)
    page = text(noc.get(path))
    assert "The spending limit of sub1 is now 80.00 EUR a month." in page
    assert "data-limit>80.00 EUR<" in page and "data-available>67.00 EUR<" in page
    with session_scope(database_url) as db:
        assert billing.spending(db, "sub1")["limit_minor"] == 8000
        actors = db.scalars(select(AuditEntry.actor)).all()
    assert "user:alice" in actors


@pytest.mark.parametrize(
    ("fields", "with_csrf", "status"),
    [
        ({"limit_minor": "8000"}, False, 400),
        ({"limit_minor": "80.00"}, True, 422),
        ({"limit_minor": "-1"}, True, 422),
        ({"limit_minor": ""}, True, 422),
        ({"limit_minor": str(2**62 + 1)}, True, 422),
        ({"limit_minor": "8000", "subscriber": "sub2"}, True, 422),
    ],
    ids=["no-csrf", "decimal", "negative", "empty", "too-large", "unknown-field"],
)
def test_a_bad_limit_form_changes_nothing(
    noc: FlaskClient,
    paid: dict[str, int],
    database_url: str,
    fields: dict[str, str],
    with_csrf: bool,
    status: int,
) -> None:
    path = f"/noc/payments/{paid['book']}"
    data = dict(fields)
    if with_csrf:
        data["csrf_token"] = form_token(noc.get(path))
    response = noc.post(f"{path}/spending-limit", data=data)
    assert response.status_code == status, text(response)
    assert response.mimetype == "text/html"
    with session_scope(database_url) as db:
        assert billing.spending(db, "sub1")["limit_minor"] == 5000


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/noc/payments/999999", 404),
        ("/noc/payments/99999999999999999999", 404),
        ("/noc/payments?status=PAID", 422),
        ("/noc/payments?payee=Not%20A%20Payee", 422),
        ("/noc/payments?from=01-12-2026", 422),
        ("/noc/payments?from=2026-12-02&to=2026-12-01", 422),
        ("/noc/settlements/999999", 404),
        ("/noc/settlements/999999/statement.csv", 404),
        ("/noc/settlements/1/statement.xml", 404),
        ("/noc/settlements?period=2026-13", 422),
        ("/noc/payments/report?period=26-12", 422),
        ("/noc/payments/report?period=2999-01", 422),
    ],
)
def test_bad_filters_and_unknown_ids_are_html_errors(
    noc: FlaskClient, path: str, status: int
) -> None:
    response = noc.get(path)
    assert response.status_code == status, text(response)
    assert response.mimetype == "text/html"


def _settle(url: str) -> list[int]:
    with session_scope(url) as db:
        done = billing.run_settlement(db, _period(), now=utcnow(), actor="tests")
        return [s.id for s in done]


def test_settlements_list_and_a_settlement_with_lines_and_downloads(
    noc: FlaskClient, paid: dict[str, int], database_url: str
) -> None:
    ids = _settle(database_url)
    listing = text(noc.get(f"/noc/settlements?period={_period()}"))
    shown = [int(found) for found in re.findall(r'data-settlement-row="([0-9]+)"', listing)]
    assert sorted(shown) == sorted(ids)
    with session_scope(database_url) as db:
        shop = next(
            s for s in billing.list_settlements(db, period=_period()) if s.payee_id == "shop-b"
        )
        stored_json = shop.statement_json.encode()
        stored_sha = shop.statement_sha256
    row = _row(listing, f'data-settlement-row="{shop.id}"')
    # 12.00 + 5.00 captured, 2.00 refunded, fees 0.40 + 0.23: 14.37 paid out
    assert "Beta Shop" in row and "14.37 EUR" in row
    assert text(noc.get("/noc/settlements?payee=isp-a")).count("data-settlement-row=") == 0
    link = re.search(rf'<a href="([^"]+)">settlement {shop.id}</a>', listing)
    assert link and link.group(1) == f"/noc/settlements/{shop.id}"
    page = text(noc.get(link.group(1)))
    assert 'data-total="payout"><strong>14.37 EUR<' in page
    assert 'data-total="fees">0.63 EUR<' in page
    kinds = re.findall(r'data-line-kind="([a-z]+)"', page)
    assert sorted(kinds) == ["capture", "capture", "fee", "fee", "refund"]
    assert f'href="/noc/payments/{paid["film"]}"' in page
    for fmt in ("json", "csv", "html"):
        shown_sha = re.search(rf'data-sha="{fmt}">([0-9a-f]{{64}})<', page)
        assert shown_sha, fmt
        download = noc.get(_href(page, f'data-download="{fmt}"'))
        assert download.status_code == 200
        body = download.get_data()
        digest = hashlib.sha256(body).hexdigest()
        assert download.headers["X-Content-SHA256"] == digest == shown_sha.group(1), fmt
        assert "attachment" in download.headers["Content-Disposition"]
        if fmt == "json":
            assert body == stored_json and digest == stored_sha
            assert download.mimetype == "application/json"
        # a second download is byte-identical
        assert noc.get(_href(page, f'data-download="{fmt}"')).get_data() == body


def test_the_report_sums_payments_by_payee(noc: FlaskClient, paid: dict[str, int]) -> None:
    page = text(noc.get(f"/noc/payments/report?period={_period()}"))
    assert page.count("data-report-row=") == 2
    shop = _row(page, 'data-report-row="shop-b:EUR"')
    cells = re.findall(r"<td[^>]*>(.*?)</td>", shop, re.S)
    # payments, declined, authorised, captured, refunded, fees, net
    assert cells[2:9] == ["2", "0", "20.00 EUR", "17.00 EUR", "2.00 EUR", "0.63 EUR", "14.37 EUR"]
    assert "0 of 2 captures" in shop
    isp = _row(page, 'data-report-row="isp-b:EUR"')
    cells = re.findall(r"<td[^>]*>(.*?)</td>", isp, re.S)
    assert cells[2:9] == ["2", "1", "3.00 EUR", "0.00 EUR", "0.00 EUR", "0.00 EUR", "0.00 EUR"]
    total = _row(page, 'data-report-total="EUR"')
    assert "23.00 EUR" in total and "14.37 EUR" in total
    # filters
    only_isp_a = text(noc.get(f"/noc/payments/report?period={_period()}&isp=isp-a"))
    assert only_isp_a.count("data-report-row=") == 0
    only_shop = text(noc.get(f"/noc/payments/report?period={_period()}&payee=shop-b"))
    assert only_shop.count("data-report-row=") == 1
    # another month has nothing
    assert "No payments in this period." in text(noc.get("/noc/payments/report?period=2020-01"))


def test_settled_fees_come_from_the_settlement(
    noc: FlaskClient, paid: dict[str, int], database_url: str
) -> None:
    _settle(database_url)
    with session_scope(database_url) as db:
        billing.update_payee(db, "shop-b", actor="tests", fee_bp=1000, fee_fixed_minor=0)
    page = text(noc.get(f"/noc/payments/report?period={_period()}"))
    shop = _row(page, 'data-report-row="shop-b:EUR"')
    assert "0.63 EUR" in shop and "14.37 EUR" in shop and "2 of 2 captures" in shop
    # a capture after the settlement is not settled: the current terms (10 %) apply to it
    late = _authorise(database_url, SHOP, "sub2", 1000, "Album", "order-5")
    with session_scope(database_url) as db:
        billing.capture(db, SHOP, late)
    shop = _row(text(noc.get("/noc/payments/report")), 'data-report-row="shop-b:EUR"')
    assert "1.63 EUR" in shop and "2 of 3 captures" in shop
    assert "23.37 EUR" in shop  # 27.00 - 2.00 - 1.63


def test_the_report_export_has_rows_and_a_total_line(
    noc: FlaskClient, paid: dict[str, int]
) -> None:
    page = text(noc.get(f"/noc/payments/report?period={_period()}"))
    export = noc.get(_href(page, 'data-export="csv"'))
    assert export.status_code == 200
    assert (
        export.headers["Content-Disposition"] == f'attachment; filename="payments-{_period()}.csv"'
    )
    lines = list(csv.DictReader(io.StringIO(text(export))))
    assert [(line["payee"], line["currency"]) for line in lines] == [
        ("isp-b", "EUR"),
        ("shop-b", "EUR"),
        ("total", "EUR"),
    ]
    shop = lines[1]
    assert (shop["captured_minor"], shop["refunded_minor"], shop["fees_minor"]) == (
        "1700",
        "200",
        "63",
    )
    assert shop["net_minor"] == "1437" and lines[2]["authorised_minor"] == "2300"


def test_the_report_gives_the_same_figures_on_postgresql() -> None:
    with postgres_cluster("report") as url:
        upgrade(url)
        with session_scope(url) as db:
            db.add(Isp(id="isp-b", name="Beta Fibre"))
            for k, sub in enumerate(("sub1", "sub2", "sub3")):
                db.add(Subscriber(id=sub, name=f"Subscriber {k + 1}", profile={}))
                db.flush()
                db.add(Line(subscriber_id=sub, router="rc1", interface=sub,
                            prefix=f"192.0.2.{4 * k + 2}/32"))  # fmt: skip
        seed_payments(url)
        _settle(url)
        late = _authorise(url, SHOP, "sub2", 1000, "Album", "order-5")
        with session_scope(url) as db:
            billing.capture(db, SHOP, late)
        with session_scope(url) as db:
            report = billing.payments_report_for_period(db, _period())
    rows = {row["payee"]: row for row in report["rows"]}
    shop = rows["shop-b"]
    # the settled film and song as charged (0.40 + 0.23), the album's 0.35 by the terms
    assert (shop["payments"], shop["captures"], shop["settled_captures"]) == (3, 3, 2)
    assert (shop["captured_minor"], shop["refunded_minor"], shop["fees_minor"]) == (2700, 200, 98)
    assert shop["net_minor"] == 2402
    assert (rows["isp-b"]["payments"], rows["isp-b"]["declined"]) == (2, 1)
    summed = {
        key: sum(row[key] for row in report["rows"]) for key in billing.PAYMENTS_REPORT_COLUMNS[5:]
    }
    assert report["totals"] == [{"currency": "EUR", **summed}]
