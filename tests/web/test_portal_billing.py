"""The subscriber's bill on the portal: the running bill, the spending limit used and
available, the purchases, and disputing one (a form with the CSRF token).

The purchases are :func:`tests.web.test_noc_billing.seed_payments`'s: sub1 bought a film
(12.00, 2.00 refunded) from isp-b's shop and has 3.00 held for a book from isp-b; sub2 bought
5.00 of a song; sub3's 60.00 was declined.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.web.helpers import SECRET_KEY, hidden_fields, text
from tests.web.test_noc_billing import seed_payments
from vpop.accounting.service import ServiceSession
from vpop.billing import service as billing
from vpop.billing.service import Payment, PaymentEvent
from vpop.catalogue.service import Line
from vpop.core.db import session_scope
from vpop.core.time import utcnow
from vpop.selection.service import make_token
from webhooks.pages.helpers import money_filter


@pytest.fixture
def paid(database_url: str) -> dict[str, int]:
    return seed_payments(database_url)


@pytest.fixture
def changes() -> Iterator[list[tuple[int, int]]]:
    """What ``payment_changed`` announced (after the commit), in order."""
    seen: list[tuple[int, int]] = []
    with billing.payment_changed.connected_to(seen.append):
        yield seen


def _purchase(page: str, payment: int) -> str:
    start = page.index(f'data-purchase="{payment}"')
    return page[start : page.index("</section>", start)]


def _disputed(url: str, payment: int) -> tuple[object, list[str]]:
    with session_scope(url) as db:
        row = db.get(Payment, payment)
        assert row is not None
        kinds = db.scalars(
            select(PaymentEvent.kind)
            .where(PaymentEvent.payment_id == payment)
            .order_by(PaymentEvent.id)
        ).all()
        return row.disputed_at, list(kinds)


def test_a_stranger_gets_no_bill(client: FlaskClient, paid: dict[str, int]) -> None:
    response = client.get("/bill")
    assert response.status_code == 403
    assert response.mimetype == "text/html"
    assert "open this page from your own line" in text(response)
    assert 'href="/bill"' not in text(client.get("/"))


def test_the_portal_links_to_the_bill(line_client: FlaskClient, client: FlaskClient) -> None:
    assert 'href="/bill" data-bill-link' in text(line_client.get("/"))
    link = make_token("sub2", key=SECRET_KEY)
    page = text(client.get(f"/?link={link}"))
    assert f'href="/bill?link={link}" data-bill-link' in page


def test_the_running_bill_on_the_line(line_client: FlaskClient, paid: dict[str, int]) -> None:
    response = line_client.get("/bill")
    assert response.status_code == 200
    page = text(response)
    assert 'data-visitor="sub1"' in page
    # sub1: the film's 12.00 purchase less its 2.00 refund; no plan in service
    assert 'data-bill="purchases">12.00 EUR<' in page
    assert 'data-bill="refunds">-2.00 EUR<' in page
    assert 'data-bill="total"><strong>10.00 EUR<' in page
    # the limit: 50.00; 10.00 spent and 3.00 held for the book: 13.00 used, 37.00 left
    assert "data-limit>50.00 EUR<" in page
    assert "data-used>13.00 EUR<" in page and "data-available>37.00 EUR<" in page
    # both of sub1's purchases, newest first; nobody else's
    shown = [int(found) for found in re.findall(r'data-purchase="([0-9]+)"', page)]
    assert shown == [paid["book"], paid["film"]]
    film = _purchase(page, paid["film"])
    assert "Film night" in film and "Beta Shop" in film and "refunded 2.00 EUR" in film
    assert f'data-dispute-form="{paid["film"]}"' in film
    # the book is not charged yet: nothing to dispute
    book = _purchase(page, paid["book"])
    assert "waiting for delivery" in book and "data-dispute-form" not in book


def test_the_bill_prorates_the_plan_over_the_time_in_service(
    client: FlaskClient, database_url: str
) -> None:
    # sub2 was on isp-c (its only plan: Value 50, 19.00 a month) for the month's first day
    now = utcnow()
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (start + timedelta(days=32)).replace(day=1)
    end = min(start + timedelta(days=1), now - timedelta(seconds=1)).replace(microsecond=0)
    with session_scope(database_url) as db:
        line = db.scalars(select(Line).where(Line.subscriber_id == "sub2")).one()
        db.add(
            ServiceSession(
                source="selection",
                line_id=line.id,
                subscriber_id="sub2",
                isp_id="isp-c",
                started_at=start,
                ended_at=end,
            )
        )
    seconds = int((end - start).total_seconds())
    month = int((following - start).total_seconds())
    expected = (1900 * seconds + month // 2) // month  # half up, by the second
    shown = money_filter(expected, "EUR")
    page = text(client.get("/bill", query_string={"link": make_token("sub2", key=SECRET_KEY)}))
    plan = page[page.index('data-bill-line="plan"') :]
    plan = plan[: plan.index("</tr>")]
    assert "Plan: " in plan and "Value 50" in plan and f"{shown}<" in plan
    assert f'data-bill="plan">{shown}<' in page
    assert 'data-bill="purchases">0.00 EUR<' in page
    assert f'data-bill="total"><strong>{shown}<' in page


def test_a_subscriber_disputes_a_purchase(
    line_client: FlaskClient,
    paid: dict[str, int],
    database_url: str,
    changes: list[tuple[int, int]],
) -> None:
    page = line_client.get("/bill")
    fields = hidden_fields(page, f'data-dispute-form="{paid["film"]}"')
    assert fields["payment"] == str(paid["film"])
    response = line_client.post(
        "/bill/disputes", data={**fields, "reason": "The film stopped halfway"}
    )
    assert response.status_code == 303, text(response)
    assert response.headers["Location"] == "/bill"
    after = text(line_client.get("/bill"))
    assert f"Purchase {paid['film']} is disputed" in after
    film = _purchase(after, paid["film"])
    assert ">disputed<" in film and "The film stopped halfway" in film
    assert "data-dispute-form" not in film
    disputed_at, kinds = _disputed(database_url, paid["film"])
    assert disputed_at is not None and kinds[-1] == "disputed"
    # the payee is told: one change announced, after the commit, naming the new event
    assert len(changes) == 1
    payment_id, event_id = changes[0]
    assert payment_id == paid["film"]
    with session_scope(database_url) as db:
        event = db.get(PaymentEvent, event_id)
        assert event is not None and event.kind == "disputed"


def test_a_dispute_through_a_link_keeps_the_link(
    client: FlaskClient, paid: dict[str, int], database_url: str
) -> None:
    link = make_token("sub2", key=SECRET_KEY)
    page = client.get("/bill", query_string={"link": link})
    assert 'data-visitor="sub2"' in text(page)
    fields = hidden_fields(page, f'data-dispute-form="{paid["song"]}"')
    assert fields["link"] == link
    response = client.post("/bill/disputes", data={**fields, "reason": "never arrived"})
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/bill?link=")
    assert _disputed(database_url, paid["song"])[0] is not None


def test_a_dispute_without_the_csrf_token_is_refused(
    line_client: FlaskClient, paid: dict[str, int], database_url: str
) -> None:
    line_client.get("/bill")
    response = line_client.post(
        "/bill/disputes", data={"payment": str(paid["film"]), "reason": "x"}
    )
    assert response.status_code == 400
    assert _disputed(database_url, paid["film"])[0] is None


@pytest.mark.parametrize(
    ("payment", "reason", "words"),
    [
        ("song", "not mine", "of yours"),  # sub2's purchase
        ("book", "too slow", "nothing was charged"),  # only held
        ("film", "", "say in a few words"),
        ("film", "x" * 501, "reason"),
        ("nothing", "why", "purchase is missing"),
    ],
    ids=["another-subscribers", "not-charged", "no-reason", "long-reason", "no-payment"],
)
def test_a_refused_dispute_says_why_and_changes_nothing(
    line_client: FlaskClient,
    paid: dict[str, int],
    database_url: str,
    payment: str,
    reason: str,
    words: str,
) -> None:
    fields = hidden_fields(line_client.get("/bill"), f'data-dispute-form="{paid["film"]}"')
    fields["payment"] = str(paid[payment]) if payment in paid else ""
    response = line_client.post("/bill/disputes", data={**fields, "reason": reason})
    assert response.status_code in (404, 409, 422), text(response)
    page = text(response)
    assert "data-form-error" in page and words in page
    assert 'data-visitor="sub1"' in page  # the bill is shown again
    for name, payment_id in paid.items():
        assert _disputed(database_url, payment_id)[0] is None, name


def test_a_purchase_is_disputed_once(
    line_client: FlaskClient, paid: dict[str, int], database_url: str
) -> None:
    fields = hidden_fields(line_client.get("/bill"), f'data-dispute-form="{paid["film"]}"')
    first = line_client.post("/bill/disputes", data={**fields, "reason": "first"})
    assert first.status_code == 303
    again = line_client.post("/bill/disputes", data={**fields, "reason": "second"})
    assert again.status_code == 409
    assert "already disputed" in text(again)
    assert _disputed(database_url, paid["film"])[1].count("disputed") == 1


def test_hostile_items_are_escaped_on_the_bill(
    line_client: FlaskClient, database_url: str, paid: dict[str, int]
) -> None:
    from tests.web.test_noc_billing import HOSTILE_ITEM, ISP_B, _authorise

    _authorise(database_url, ISP_B, "sub1", 100, HOSTILE_ITEM, "order-9")
    page = text(line_client.get("/bill"))
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page
