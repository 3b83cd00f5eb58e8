"""The portal's bill in a real headless Chromium: a subscriber with their portal link opens
the bill from the ISP list, reads the running bill and disputes a purchase; then a NOC user
finds the dispute on the payment's page.

The app is served on 127.0.0.1 (a free port) in a thread, as in
:mod:`tests.web.test_noc_usage`; the purchases are
:func:`tests.web.test_noc_billing.seed_payments`'s.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.serving import make_server

from tests.web.helpers import NOC_PASSWORD, SECRET_KEY
from tests.web.test_noc_billing import seed_payments
from vpop.billing.service import Payment
from vpop.core.db import session_scope
from vpop.selection.service import make_token

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"


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


def test_a_subscriber_reads_the_bill_and_disputes_a_purchase_in_a_browser(
    served: str, database_url: str
) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium package")
    from playwright.sync_api import expect, sync_playwright

    paid = seed_payments(database_url)
    link = make_token("sub1", key=SECRET_KEY)
    SHOTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"], headless=True
        )
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone
            page.on(
                "console", lambda msg: problems.append(msg.text) if msg.type == "error" else None
            )
            page.goto(f"{served}/?link={link}")
            page.get_by_role("link", name="Your bill and purchases this month").click()
            expect(page.locator("h1")).to_contain_text("Your bill for")
            expect(page.locator('[data-bill="purchases"]')).to_have_text("12.00 EUR")
            expect(page.locator('[data-bill="refunds"]')).to_have_text("-2.00 EUR")
            expect(page.locator('[data-bill="total"]')).to_have_text("10.00 EUR")
            expect(page.locator("[data-available]")).to_have_text("37.00 EUR")
            expect(page.locator("[data-purchase]")).to_have_count(2)
            page.screenshot(path=str(SHOTS / "portal-bill.png"), full_page=True)
            film = page.locator(f'[data-purchase="{paid["film"]}"]')
            # the browser itself refuses an empty reason (required), nothing is sent
            film.get_by_role("button", name="Dispute this purchase").click()
            expect(film.locator("[data-purchase-state]")).to_have_text("paid")
            film.locator('input[name="reason"]').fill("The film stopped halfway")
            film.get_by_role("button", name="Dispute this purchase").click()
            expect(page.locator(".notice.info")).to_contain_text(
                f"Purchase {paid['film']} is disputed"
            )
            film = page.locator(f'[data-purchase="{paid["film"]}"]')
            expect(film.locator("[data-purchase-state]")).to_have_text("disputed")
            expect(film.locator("[data-disputed]")).to_contain_text("The film stopped halfway")
            expect(film.locator("form")).to_have_count(0)
            page.screenshot(path=str(SHOTS / "portal-bill-disputed.png"), full_page=True)
            # the NOC finds the dispute on the payment's page
            noc = browser.new_page()
            noc.goto(f"{served}/noc/payments/{paid['film']}")
            noc.locator('input[name="username"]').fill("alice")
            noc.locator('input[name="password"]').fill(NOC_PASSWORD)
            noc.locator('button[type="submit"]', has_text="Sign in").click()
            expect(noc.locator("h1")).to_contain_text(f"Payment {paid['film']}")
            expect(noc.locator("[data-dispute]")).to_contain_text("The film stopped halfway")
            expect(noc.locator('[data-event="disputed"]')).to_have_count(1)
        finally:
            browser.close()
    with session_scope(database_url) as db:
        film_row = db.get(Payment, paid["film"])
        assert film_row is not None and film_row.dispute_reason == "The film stopped halfway"
    # the pages' policy forbids inline styles and scripts: nothing on them may need one
    assert problems == [], problems
