"""The portal and the NOC pages in a real browser, against a real `vpop serve` and the lab.

A headless Chromium runs *inside* sub1's network namespace, so it reaches the portal the way
a subscriber does: through its access router (rc1), on the portal address, and the portal
recognises the line by the source address. It picks isp-b; the order runs on the router; and
then sub1's real traffic leaves through isp-b. A second Chromium, outside the lab, signs in
to the NOC pages, finds that order and its diff. Screenshots of both go to
``artifacts/screenshots/``.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.lab.helpers import Server, curl, netns, start_server, stop_server
from vpop.core.db import session_scope
from vpop.identity.users import create_user
from vpop.lab.topology import ISPS, PORTAL_ADDRESS

if TYPE_CHECKING:
    from playwright.sync_api import ViewportSize

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",  # root in a VM; the sandbox needs user namespaces we do not rely on
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE: ViewportSize = {"width": 390, "height": 844}
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
NOC_USER = "noc-alice"
NOC_PASSWORD = "browser-test-password"
FIGURES_TIMEOUT = 60.0
ORDER_TIMEOUT_MS = 60_000


def wait_for_figures(server: Server, timeout: float = FIGURES_TIMEOUT) -> dict[str, Any]:
    """Poll the public catalogue until every lab ISP has a latency figure (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = server.request("GET", "/api/v1/isps")
        assert status == 200, body
        measured = {isp["id"] for isp in body["isps"] if isp["qos"]["latency_ms"] is not None}
        if set(ISPS) <= measured:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"no latency for {set(ISPS) - measured} after {timeout}s")
        time.sleep(0.25)


@pytest.fixture(scope="module")
def server(lab: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`vpop serve` on the lab, portal on, fast probes, with a NOC user; stopped afterwards."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium package")
    workdir = tmp_path_factory.mktemp("browser")
    running = start_server(
        workdir,
        lab,
        portal=True,
        extra_env={"VPOP_POLL_PROBES_SECONDS": "1", "VPOP_POLL_COUNTERS_SECONDS": "2"},
    )
    try:
        with session_scope(running.db_url) as session:
            create_user(session, NOC_USER, NOC_PASSWORD, "noc", actor="tests")
        wait_for_figures(running)
        yield running
    finally:
        stop_server(running)


def chromium_in(node: str, directory: Path) -> str:
    """An executable that starts Chromium inside ``node``'s namespace (Playwright runs it)."""
    wrapper = directory / f"chromium-{node}"
    ip = shutil.which("ip") or "/usr/sbin/ip"
    wrapper.write_text(f'#!/bin/sh\nexec {ip} netns exec {netns(node)} {CHROMIUM} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(wrapper)


@pytest.fixture
def chromium_in_sub1(tmp_path: Path) -> str:
    """Chromium in sub1's namespace."""
    return chromium_in("sub1", tmp_path)


def test_sub1_picks_isp_b_in_a_browser_and_the_noc_finds_the_order(
    server: Server, chromium_in_sub1: str
) -> None:
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    assert curl("sub1") == "isp-a"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium_in_sub1, args=CHROMIUM_ARGS, headless=True
        )
        try:
            context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
            page = context.new_page()
            page.goto(f"http://{PORTAL_ADDRESS}/")
            expect(page.locator("[data-visitor]")).to_have_attribute("data-visitor", "sub1")
            expect(page.locator("section.isp")).to_have_count(3)
            for isp in ISPS:
                card = page.locator(f'section.isp[data-isp="{isp}"]')
                expect(card.locator('[data-figure="latency_ms"]')).to_have_text(
                    re.compile(r"^\d+(\.\d+)?$")
                )
                expect(card.locator('[data-age="latency_ms"]')).to_have_text(re.compile(r"ago$"))
                expect(card.locator(".plans li").first).to_contain_text("EUR a month")
            expect(page.locator("[data-reason]")).to_contain_text("right now")
            page.screenshot(path=str(SHOTS / "portal-list.png"), full_page=True)

            page.locator('[data-choose="isp-b"]').click()
            result = page.locator('[data-order][data-final="true"]')
            expect(result).to_be_visible(timeout=ORDER_TIMEOUT_MS)
            expect(result).to_have_attribute("data-order-status", "DONE_SUCCESS")
            expect(result).to_contain_text("Your line now uses ISP B")
            page.screenshot(path=str(SHOTS / "portal-order.png"), full_page=True)
            order_id = int(result.get_attribute("data-order") or "0")
        finally:
            browser.close()

        assert curl("sub1") == "isp-b"

        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_context(viewport=DESKTOP).new_page()
            page.goto(f"{server.base}/noc/")
            page.locator('input[name="username"]').fill(NOC_USER)
            page.locator('input[name="password"]').fill(NOC_PASSWORD)
            page.locator('button[type="submit"]', has_text="Sign in").click()
            row = page.locator(f'tr[data-order-row="{order_id}"]')
            expect(row).to_contain_text("DONE_SUCCESS")
            expect(row).to_contain_text("portal:sub1")
            page.screenshot(path=str(SHOTS / "noc-orders.png"), full_page=True)
            row.get_by_role("link", name=f"order {order_id}").click()
            expect(page.locator("h1")).to_contain_text(f"Order {order_id}")
            expect(page.locator("[data-diff]")).to_contain_text("set nexthop-group vpop-isp-b")
            expect(page.locator('[data-result-router="rc1"]')).to_contain_text("vpop-isp-b")
            page.screenshot(path=str(SHOTS / "noc-order.png"), full_page=True)
        finally:
            browser.close()


def test_the_portal_works_without_javascript(server: Server, tmp_path: Path) -> None:
    """sub2 (on rc2) chooses isp-c with scripting off: plain forms and a self-refreshing page."""
    from playwright.sync_api import expect, sync_playwright

    assert curl("sub2") == "isp-a"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium_in("sub2", tmp_path), args=CHROMIUM_ARGS, headless=True
        )
        try:
            context = browser.new_context(viewport=PHONE, java_script_enabled=False)
            page = context.new_page()
            page.goto(f"http://{PORTAL_ADDRESS}/")
            expect(page.locator("[data-visitor]")).to_have_attribute("data-visitor", "sub2")
            page.locator('[data-choose="isp-c"]').click()
            result = page.locator('[data-order][data-final="true"]')
            expect(result).to_be_visible(timeout=ORDER_TIMEOUT_MS)
            expect(result).to_have_attribute("data-order-status", "DONE_SUCCESS")
        finally:
            browser.close()
    assert curl("sub2") == "isp-c"
