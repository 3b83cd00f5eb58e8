"""Switching with consent in the lab and a real browser.

sub6 (on rc2) is first moved to isp-a by the operator, so isp-a is its ISP. Then isp-c asks
for sub6 with its own token: a pending order, and nothing changes on the router. A headless
Chromium inside sub6's namespace opens the portal through rc2, finds isp-c's request on its
line's page and presses Confirm; the order runs, sub6's real traffic leaves through isp-c,
and isp-a, the losing ISP, receives a signed callback on a listener on 127.0.0.1 whose
Standard Webhooks signature verifies with the server's secret. A declined request (sub8,
through its consent link) changes nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from tests.lab.consent_helpers import (
    as_token,
    callback_receiver,
    confirm_by_link,
    isp_token,
    set_callback_url,
    wait_final,
)
from tests.lab.helpers import SECRET, Server, curl, start_server, stop_server
from tests.lab.test_browser import CHROMIUM, CHROMIUM_ARGS, ORDER_TIMEOUT_MS, PHONE, chromium_in
from vpop.lab.topology import PORTAL_ADDRESS

pytestmark = pytest.mark.lab

CALLBACK_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def server(lab: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`vpop serve` on the lab with the portal, consent links on the portal address."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium package")
    running = start_server(
        tmp_path_factory.mktemp("consent"),
        lab,
        portal=True,
        extra_env={"VPOP_PUBLIC_URL": f"http://{PORTAL_ADDRESS}"},
    )
    try:
        yield running
    finally:
        stop_server(running)


def test_an_isp_requests_the_subscriber_confirms_in_a_browser_and_the_loser_is_told(
    server: Server, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    status, body = server.select({"subscriber": "sub6", "isp": "isp-a"})
    assert status == 202, body
    assert server.wait_order(body["order"])["status"] == "DONE_SUCCESS"
    assert curl("sub6") == "isp-a"

    isp_c = isp_token(server, "isp-c")
    with callback_receiver() as (url, received):
        set_callback_url(server, "isp-a", url)
        status, asked = as_token(
            server, isp_c, "POST", "/api/v1/selections", {"subscriber": "sub6", "isp": "isp-c"}
        )
        assert status == 202 and asked["status"] == "PENDING_CONSENT", asked
        assert asked["consent_url"].startswith(f"http://{PORTAL_ADDRESS}/consent?c=")
        order_id = asked["order"]
        assert curl("sub6") == "isp-a"  # nothing happens before the subscriber says yes

        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=chromium_in("sub6", tmp_path), args=CHROMIUM_ARGS, headless=True
            )
            try:
                page = browser.new_context(viewport=PHONE, is_mobile=True).new_page()
                page.goto(f"http://{PORTAL_ADDRESS}/")
                expect(page.locator("[data-visitor]")).to_have_attribute("data-visitor", "sub6")
                request = page.locator(f'[data-request="{order_id}"]')
                expect(request).to_contain_text("asked to take over your line")
                page.locator(f'[data-confirm="{order_id}"]').click()
                result = page.locator(f'[data-order="{order_id}"][data-final="true"]')
                expect(result).to_be_visible(timeout=ORDER_TIMEOUT_MS)
                expect(result).to_have_attribute("data-order-status", "DONE_SUCCESS")
            finally:
                browser.close()

        assert curl("sub6") == "isp-c"
        view = wait_final(server, isp_c, order_id)
        assert (view["status"], view["consented_by"]) == ("DONE_SUCCESS", "portal")
        assert received.arrived.wait(CALLBACK_TIMEOUT), "the losing ISP heard nothing"
        [(headers, raw)] = received.posts
    payload = Webhook(SECRET).verify(raw, headers)
    assert headers["webhook-id"] == f"order-{order_id}-lost"
    assert payload["type"] == "line.switched_away"
    assert (payload["data"]["order"], payload["data"]["isp"]) == (order_id, "isp-a")
    assert payload["data"]["subscriber"] == "sub6"
    assert "isp-c" not in json.dumps(payload)


def test_a_declined_request_changes_nothing(server: Server) -> None:
    isp_b = isp_token(server, "isp-b")
    before = curl("sub8")
    status, asked = as_token(
        server, isp_b, "POST", "/api/v1/selections", {"subscriber": "sub8", "isp": "isp-b"}
    )
    assert status == 202 and asked["status"] == "PENDING_CONSENT", asked
    # the link names the portal address, which only the lab's namespaces reach: follow it on
    # the server's own address instead (same path and signature)
    landed = confirm_by_link(server.base, asked["consent_url"], answer="decline")
    assert landed.endswith(f"/orders/{asked['order']}")
    view = wait_final(server, isp_b, asked["order"])
    assert (view["status"], view["run"]) == ("DECLINED", None)
    assert curl("sub8") == before
