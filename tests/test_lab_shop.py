"""The lab shop's HTTP handling against a small stand-in for the payments API on 127.0.0.1.

The ISP host's HTTP handler (:func:`vpop.lab.host.handle_http`) runs on a loopback port; a
stub API records what the shop sends and answers as the payments API does (201 with the
payment, AUTHORISED or DECLINED; 200 with the captured payment). The real API, the real
source address and the real lab are in ``tests/lab/test_shop_lab.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import stat
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from vpop.cli import main
from vpop.lab.host import handle_http
from vpop.lab.shop import ITEMS, Shop, config_path, write_config, write_token_file

TOKEN = "vpop_" + "s" * 43
ID_PAGE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
    b"Content-Length: 6\r\nX-ISP: isp-b\r\n\r\nisp-b\n"
)


@dataclass
class StubApi:
    """What the stand-in API received, and how it answers."""

    limit: int = 1000  # authorises up to this amount, declines (limit) above
    calls: list[tuple[str, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    payments: dict[int, dict[str, Any]] = field(default_factory=dict)
    url: str = ""


@pytest.fixture
def api() -> Iterator[StubApi]:
    stub = StubApi()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            headers = {k.lower(): v for k, v in self.headers.items()}
            stub.calls.append((self.path, headers, body))
            if headers.get("authorization") != f"Bearer {TOKEN}":
                self._answer(401, {"code": "VPOP-401", "detail": "no token"})
            elif self.path == "/api/v1/payments":
                pid = len(stub.payments) + 1
                ok = body["amount_minor"] <= stub.limit
                payment = {
                    "id": pid,
                    "status": "AUTHORISED" if ok else "DECLINED",
                    "decline_reason": None if ok else "limit",
                    "amount_minor": body["amount_minor"],
                    "captured_minor": 0,
                    "item": body["item"],
                }
                stub.payments[pid] = payment
                self._answer(201, payment)
            elif m := re.fullmatch(r"/api/v1/payments/(\d+)/capture", self.path):
                found = stub.payments.get(int(m.group(1)))
                if found is None:
                    self._answer(404, {"code": "VPOP-404-PAYMENT", "detail": "unknown payment"})
                    return
                found.update(status="CAPTURED", captured_minor=found["amount_minor"])
                self._answer(200, found)
            else:
                self._answer(404, {"code": "VPOP-404-ROUTE", "detail": "no such endpoint"})

        def _answer(self, status: int, doc: dict[str, Any]) -> None:
            raw = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()


def _host(shop: Shop) -> Iterator[int]:
    """The ISP host's HTTP handler on a loopback port, in its own event loop thread."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def start() -> None:
        server = await asyncio.start_server(
            lambda r, w: handle_http("isp-b", shop, r, w), "127.0.0.1", 0
        )
        box["server"], box["port"] = server, server.sockets[0].getsockname()[1]
        ready.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    assert ready.wait(10)
    try:
        yield box["port"]
    finally:
        # closed in the loop's own thread: asyncio's Server is not thread-safe (closed from
        # here, it raced the loop detaching a just-finished connection: both woke its waiters)
        loop.call_soon_threadsafe(box["server"].close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture
def lab_dir(tmp_path: Path) -> Path:
    return tmp_path / "lab"


@pytest.fixture
def configured(lab_dir: Path, api: StubApi) -> Path:
    token_file = lab_dir / "shop" / "isp-b.token"
    write_token_file(token_file, TOKEN)
    return write_config(lab_dir, "isp-b", api=api.url, token_file=token_file)


@pytest.fixture
def host(configured: Path) -> Iterator[int]:
    yield from _host(Shop("isp-b", configured))


def raw(port: int, request: bytes) -> bytes:
    """Send one raw HTTP request, return everything the host answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def http(
    port: int, method: str, path: str, form: dict[str, str] | None = None, extra: str = ""
) -> tuple[int, str]:
    body = urllib.parse.urlencode(form or {}).encode()
    head = f"{method} {path} HTTP/1.1\r\nHost: 203.0.113.100\r\n{extra}"
    if form is not None:
        head += "Content-Type: application/x-www-form-urlencoded\r\n"
        head += f"Content-Length: {len(body)}\r\n"
    answer = raw(port, head.encode() + b"\r\n" + body)
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2].decode()


def text_of(page: str, element: str) -> str:
    found = re.search(rf'id="{element}">([^<]*)<', page)
    assert found, page
    return found.group(1)


def test_the_id_page_answers_as_before(host: int) -> None:
    assert raw(host, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == ID_PAGE
    assert raw(host, b"GET /shopping HTTP/1.1\r\nHost: x\r\n\r\n") == ID_PAGE
    assert raw(host, b"HEAD /x HTTP/1.0\r\n\r\n") == ID_PAGE


def test_the_shop_lists_three_items_with_prices_and_buy_forms(host: int) -> None:
    status, page = http(host, "GET", "/shop/")
    assert status == 200
    assert "Film rental 4.99 EUR" in page
    assert "Music album 9.99 EUR" in page and "Game day pass 2.50 EUR" in page
    assert page.count('action="/shop/buy"') == len(ITEMS) == 3
    orders = re.findall(r'name="order" value="([0-9a-f]{16})"', page)
    assert len(set(orders)) == 3  # a fresh order number per form


def test_a_buy_names_the_buyer_by_the_peer_address_only(host: int, api: StubApi) -> None:
    form = {"item": "film", "order": "0123456789abcdef", "source_address": "192.0.2.6"}
    status, page = http(host, "POST", "/shop/buy", form, "X-Forwarded-For: 192.0.2.6\r\n")
    assert status == 200, page
    assert text_of(page, "status") == "AUTHORISED"
    assert text_of(page, "payment") == "1"
    assert 'name="payment" value="1"' in page  # the deliver form
    [(path, headers, body)] = api.calls
    assert path == "/api/v1/payments"
    assert headers["idempotency-key"] == "order-0123456789abcdef"
    assert body == {
        "source_address": "127.0.0.1",  # the TCP peer, not what the client claimed
        "amount_minor": 499,
        "currency": "EUR",
        "item": "Film rental",
        "merchant_reference": "order-0123456789abcdef",
    }


def test_the_same_order_twice_sends_the_same_key_and_an_order_less_buy_gets_its_own(
    host: int, api: StubApi
) -> None:
    form = {"item": "album", "order": "00000000000000aa"}
    http(host, "POST", "/shop/buy", form)
    http(host, "POST", "/shop/buy", form)
    http(host, "POST", "/shop/buy", {"item": "album"})
    http(host, "POST", "/shop/buy", {"item": "album", "order": "not-hex"})
    keys = [headers["idempotency-key"] for _, headers, _ in api.calls]
    assert keys[0] == keys[1] == "order-00000000000000aa"
    assert len(set(keys)) == 3
    assert all(re.fullmatch(r"order-[0-9a-f]{16}", key) for key in keys)


def test_a_declined_payment_says_declined_with_the_reason(host: int, api: StubApi) -> None:
    api.limit = 300
    status, page = http(host, "POST", "/shop/buy", {"item": "film"})
    assert status == 402
    assert text_of(page, "status") == "DECLINED"
    assert text_of(page, "reason") == "limit"
    assert 'action="/shop/deliver"' not in page
    status, page = http(host, "POST", "/shop/buy", {"item": "daypass"})
    assert (status, text_of(page, "status")) == (200, "AUTHORISED")


def test_delivering_captures_the_payment(host: int, api: StubApi) -> None:
    http(host, "POST", "/shop/buy", {"item": "daypass"})
    status, page = http(host, "POST", "/shop/deliver", {"payment": "1"})
    assert status == 200, page
    assert text_of(page, "status") == "CAPTURED"
    assert "2.50 EUR captured" in page
    path, headers, body = api.calls[-1]
    assert (path, headers["idempotency-key"], body) == (
        "/api/v1/payments/1/capture",
        "capture-1",
        {},
    )
    assert api.payments[1]["status"] == "CAPTURED"


@pytest.mark.parametrize(
    ("path", "form", "status"),
    [
        ("/shop/buy", {"item": "car"}, 400),
        ("/shop/deliver", {"payment": "x1"}, 400),
        ("/shop/deliver", {"payment": "99"}, 404),
        ("/shop/nothing", {}, 404),
    ],
    ids=["unknown-item", "bad-payment-id", "unknown-payment", "unknown-page"],
)
def test_bad_requests_get_a_page_saying_so(
    host: int, path: str, form: dict[str, str], status: int
) -> None:
    got, page = http(host, "POST", path, form)
    assert got == status, page
    assert text_of(page, "status") == "ERROR"


def test_a_form_too_large_is_refused(host: int) -> None:
    answer = raw(host, b"POST /shop/buy HTTP/1.1\r\nContent-Length: 999999\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413 ")


def test_an_api_that_does_not_answer_gives_503_and_the_id_page_still_works(
    lab_dir: Path, api: StubApi
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]  # nothing listens here once the socket is closed
    token_file = lab_dir / "shop" / "isp-b.token"
    write_token_file(token_file, TOKEN)
    config = write_config(lab_dir, "isp-b", api=f"http://127.0.0.1:{closed}", token_file=token_file)
    for port in _host(Shop("isp-b", config)):
        status, page = http(port, "POST", "/shop/buy", {"item": "film"})
        assert status == 503
        assert text_of(page, "status") == "UNAVAILABLE"
        assert f"127.0.0.1:{closed} does not answer" in page
        assert raw(port, b"GET / HTTP/1.1\r\n\r\n") == ID_PAGE
    assert api.calls == []


def test_a_shop_that_is_not_configured_says_how_to_configure_it(lab_dir: Path) -> None:
    for port in _host(Shop("isp-b", config_path(lab_dir, "isp-b"))):
        status, page = http(port, "POST", "/shop/deliver", {"payment": "1"})
        assert status == 503
        assert "not configured" in page and "vpop lab shop" in page
        assert http(port, "GET", "/shop/")[0] == 200  # the list shows; buying cannot


def test_the_configuration_and_token_are_readable_by_their_owner_only(configured: Path) -> None:
    doc = json.loads(configured.read_text())
    token_file = Path(doc["token_file"])
    assert token_file.read_text().strip() == TOKEN
    for path in (configured, token_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert TOKEN not in configured.read_text()


def test_vpop_lab_shop_points_a_shop_at_an_api_with_a_private_token_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VPOP_LAB_DIR", str(tmp_path / "lab"))
    token_file = tmp_path / "isp-b.token"
    token_file.write_text(TOKEN + "\n")
    os.chmod(token_file, 0o644)
    args = ["lab", "shop", "--api", "http://127.0.0.1:8080", "--token-file", str(token_file)]
    refused = CliRunner().invoke(main, [*args, "--isp", "isp-b"])
    assert refused.exit_code == 2
    assert "chmod 600" in refused.output
    os.chmod(token_file, 0o600)
    done = CliRunner().invoke(main, [*args, "--isp", "isp-b"])
    assert done.exit_code == 0, done.output
    doc = json.loads(config_path(tmp_path / "lab", "isp-b").read_text())
    assert doc == {"api": "http://127.0.0.1:8080", "token_file": str(token_file), "currency": "EUR"}
    no_lab = CliRunner().invoke(main, args)
    assert no_lab.exit_code == 2 and "no lab is up" in no_lab.output
    bad = CliRunner().invoke(main, [*args[:2], "--api", "ftp://x", *args[4:], "--isp", "isp-b"])
    assert bad.exit_code == 2 and "http://127.0.0.1:8080" in bad.output


def test_head_of_the_shop_page_has_its_headers_and_no_body(host: int) -> None:
    answer = raw(host, b"HEAD /shop/ HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"X-ISP: isp-b" in head
    assert body == b""
    assert int(re.search(rb"Content-Length: (\d+)", head).group(1)) > 0  # type: ignore[union-attr]


def test_vpop_lab_shop_without_a_token_file_makes_one_token_per_shop_and_revokes_the_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vpop.catalogue.service import Isp
    from vpop.core.db import dispose_engines, session_scope
    from vpop.core.migrate import upgrade
    from vpop.identity.service import lookup_token

    database = f"sqlite:///{tmp_path}/shop.sqlite"
    monkeypatch.setenv("VPOP_DATABASE_URL", database)
    monkeypatch.setenv("VPOP_LAB_DIR", str(tmp_path / "lab"))
    upgrade(database)
    with session_scope(database) as session:
        session.add(Isp(id="isp-b", name="ISP B", outbound_deny=[]))
    token_file = config_path(tmp_path / "lab", "isp-b").with_suffix(".token")
    args = ["lab", "shop", "--api", "http://127.0.0.1:8080", "--isp", "isp-b"]
    try:
        assert CliRunner().invoke(main, args).exit_code == 0
        first = token_file.read_text().strip()
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert CliRunner().invoke(main, args).exit_code == 0
        second = token_file.read_text().strip()
        with session_scope(database) as session:
            assert lookup_token(session, first) is None  # revoked
            live = lookup_token(session, second)
            assert live is not None and (live.role, live.isp_id) == ("isp", "isp-b")
        unknown = CliRunner().invoke(main, [*args[:-1], "isp-z"])
        assert unknown.exit_code == 2 and "isp-z" in unknown.output
    finally:
        dispose_engines()
