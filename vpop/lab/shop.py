"""The web shop each lab ISP host serves at ``http://203.0.113.100/shop/`` (claim 19).

A subscriber buys an item; the shop asks vpop's payments API to authorise the payment,
naming the buyer only by the TCP peer address it saw (``source_address``: the routing centre
knows which line that address belongs to). "Delivering" the item captures the payment.

* ``GET /shop/``: the items with their prices, one buy form each (the form carries a fresh
  order number, so a form submitted twice replays the same authorisation instead of buying
  twice: the order names the business action, as an idempotency key should).
* ``POST /shop/buy`` (form ``item``, ``order``): ``POST /api/v1/payments`` with the shop's ISP
  token and ``Idempotency-Key: order-<order>``; the page says ``AUTHORISED`` (with the payment
  id and a deliver form) or ``DECLINED`` with the reason (HTTP 402).
* ``POST /shop/deliver`` (form ``payment``): ``POST /api/v1/payments/<id>/capture`` with
  ``Idempotency-Key: capture-<id>``; the page says ``CAPTURED``.

The buyer's address is never taken from the request (no form field, no ``X-Forwarded-For``):
only the connection's peer address is sent. An API that does not answer, or a shop that is
not configured, gives a 503 page; the host's id page answers as before.

Configuration, read on every request so that ``vpop serve`` or ``vpop lab shop`` can set it
after the lab is up: ``<lab_dir>/shop/<isp>.json`` = ``{"api": "http://127.0.0.1:8080",
"token_file": "<path>", "currency": "EUR"}``; the token file (mode 0600) holds an ISP token.

Standard library only: the ISP host imports this module, and must not load Flask or the
database.
"""

from __future__ import annotations

import html
import json
import os
import re
import secrets
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

API_TIMEOUT = 10.0  # seconds for one call to the payments API
MAX_BODY = 16 * 1024  # the largest form the shop reads
_ORDER = re.compile(r"[0-9a-f]{16}")
_PAYMENT_ID = re.compile(r"[1-9][0-9]{0,17}")
_CURRENCY = re.compile(r"[A-Z]{3}")


@dataclass(frozen=True)
class Item:
    """Something the shop sells: a form key, a name and a price in minor units."""

    key: str
    name: str
    price_minor: int


ITEMS: tuple[Item, ...] = (
    Item("film", "Film rental", 499),
    Item("album", "Music album", 999),
    Item("daypass", "Game day pass", 250),
)


@dataclass(frozen=True)
class ShopConfig:
    """Where the shop's payments API is, with what token, in which currency."""

    api: str
    token: str
    currency: str


@dataclass(frozen=True)
class Request:
    """One HTTP request to the shop, as the host read it off the connection."""

    method: str
    path: str
    peer: str  # the TCP peer address: the only buyer identification the shop sends
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Response:
    """The shop's answer: a status and an HTML page."""

    status: int
    body: bytes
    content_type: str = "text/html; charset=utf-8"

    def encode(self, isp: str, *, head: bool = False) -> bytes:
        """The whole HTTP/1.1 response, connection closed after it (``head``: no body)."""
        reason = HTTPStatus(self.status).phrase
        lines = (
            f"HTTP/1.1 {self.status} {reason}\r\nContent-Type: {self.content_type}\r\n"
            f"Content-Length: {len(self.body)}\r\nCache-Control: no-store\r\n"
            f"Connection: close\r\nX-ISP: {isp}\r\n\r\n"
        )
        return lines.encode("ascii") + (b"" if head else self.body)


class ShopUnavailable(Exception):
    """The shop cannot reach its payments API (not configured, or the API does not answer)."""


# ---- configuration ---------------------------------------------------------------------
def config_path(lab_dir: Path, isp: str) -> Path:
    """The shop configuration file of ``isp``'s host under the lab directory."""
    return lab_dir / "shop" / f"{isp}.json"


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (0600), replacing it whole."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write_token_file(path: Path, token: str) -> None:
    """Store a token for a shop in ``path``, mode 0600."""
    _write_private(path, token + "\n")


def write_config(
    lab_dir: Path, isp: str, *, api: str, token_file: Path, currency: str = "EUR"
) -> Path:
    """Point ``isp``'s shop at the payments API ``api`` with the token in ``token_file``.

    Returns:
        The configuration file written (mode 0600).

    Raises:
        ValueError: the API URL is not ``http(s)://host[:port]`` or the currency not ISO 4217.
    """
    parts = urllib.parse.urlsplit(api)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"the API URL must look like http://127.0.0.1:8080, not {api!r}")
    if not _CURRENCY.fullmatch(currency):
        raise ValueError(f"currency {currency!r} is not three upper-case letters")
    path = config_path(lab_dir, isp)
    doc = {"api": api.rstrip("/"), "token_file": str(token_file), "currency": currency}
    _write_private(path, json.dumps(doc, indent=2) + "\n")
    return path


def load_config(path: Path | None) -> ShopConfig:
    """Read the shop's configuration and its token (on every request).

    Raises:
        ShopUnavailable: no configuration, an unreadable one, or no token.
    """
    fix = "run `vpop serve` with the lab up, or `vpop lab shop --api URL --token-file F`"
    if path is None:
        raise ShopUnavailable(f"this shop is not configured; {fix}")
    try:
        doc = json.loads(path.read_text())
        api, token_file = str(doc["api"]), Path(str(doc["token_file"]))
        currency = str(doc.get("currency", "EUR"))
    except FileNotFoundError:
        raise ShopUnavailable(f"this shop is not configured; {fix}") from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ShopUnavailable(f"the shop configuration {path} is unusable ({err}); {fix}") from err
    try:
        token = token_file.read_text().strip()
    except OSError as err:
        raise ShopUnavailable(f"the shop's token file {token_file} is unreadable: {err}") from err
    if not token:
        raise ShopUnavailable(f"the shop's token file {token_file} is empty; {fix}")
    return ShopConfig(api=api, token=token, currency=currency)


# ---- the payments API ------------------------------------------------------------------
def call_api(
    config: ShopConfig, path: str, body: dict[str, Any], *, key: str
) -> tuple[int, dict[str, Any]]:
    """POST ``body`` as JSON to the payments API with the shop's token and ``key``.

    Returns:
        The HTTP status and the decoded JSON body (``{}`` when it is not JSON).

    Raises:
        ShopUnavailable: the API does not answer (refused, timed out, unreachable).
    """
    req = urllib.request.Request(
        config.api + path,
        data=json.dumps(body).encode("utf-8"),
        method="POST",
        headers={
            "Authorization": f"Bearer {config.token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Idempotency-Key": key,
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=API_TIMEOUT) as resp:
            return resp.status, _json(resp.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, _json(err.read())
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        message = f"the payments API at {config.api} does not answer: {reason}"
        raise ShopUnavailable(message) from err


def _json(raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


# ---- pages -----------------------------------------------------------------------------
def _money(minor: int, currency: str) -> str:
    return f"{minor // 100}.{minor % 100:02d} {currency}"


def _page(isp: str, title: str, content: str, status: int = 200) -> Response:
    esc = html.escape
    doc = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(isp)} shop: {esc(title)}</title></head>\n<body>\n"
        f"<h1>{esc(isp)} shop</h1>\n{content}\n"
        '<p><a href="/shop/">Back to the shop</a></p>\n</body></html>\n'
    )
    return Response(status, doc.encode("utf-8"))


def _problem(isp: str, status: int, what: str, detail: str) -> Response:
    esc = html.escape
    content = f'<p id="status">{esc(what)}</p>\n<p id="detail">{esc(detail)}</p>'
    return _page(isp, what, content, status)


def _api_error(isp: str, status: int, body: dict[str, Any]) -> Response:
    """A page for an API answer the shop did not expect (refused, not found, conflict)."""
    code = str(body.get("code") or f"HTTP {status}")
    detail = str(body.get("detail") or body.get("title") or "no detail")
    # not found and conflicts are the buyer's to see; anything else is the shop's trouble
    shown = 502
    if status == 404:
        shown = 404
    elif status == 409 or code == "VPOP-409-IDEMPOTENCY":
        shown = 409
    return _problem(isp, shown, "ERROR", f"the payments API answered {status} {code}: {detail}")


class Shop:
    """The shop of one ISP host: turns a request into a page, calling the payments API."""

    def __init__(self, isp: str, config_file: Path | None) -> None:
        """Build the shop of ``isp``, configured by ``config_file`` (read per request)."""
        self.isp = isp
        self.config_file = config_file

    def handle(self, request: Request) -> Response:
        """Answer one request to ``/shop...`` (blocking: it may call the payments API)."""
        path = request.path.split("?", 1)[0]
        routes = {"/shop": self.index, "/shop/": self.index}
        posts = {"/shop/buy": self.buy, "/shop/deliver": self.deliver}
        try:
            if path in routes:
                if request.method not in ("GET", "HEAD"):
                    return _problem(self.isp, 405, "ERROR", "use GET for the shop's page")
                return routes[path]()
            if path in posts:
                if request.method != "POST":
                    return _problem(self.isp, 405, "ERROR", f"use POST for {path}")
                return posts[path](request)
            return _problem(self.isp, 404, "ERROR", f"no page {path} in this shop")
        except ShopUnavailable as err:
            return _problem(self.isp, 503, "UNAVAILABLE", str(err))

    def index(self) -> Response:
        """The item list, a buy form per item (each with a fresh order number)."""
        try:
            currency = load_config(self.config_file).currency
        except ShopUnavailable:
            currency = "EUR"  # the list still shows; buying says what is missing
        rows = []
        for item in ITEMS:
            rows.append(
                f'<li data-item="{item.key}">{html.escape(item.name)} '
                f"{_money(item.price_minor, currency)}"
                '<form method="post" action="/shop/buy">'
                f'<input type="hidden" name="item" value="{item.key}">'
                f'<input type="hidden" name="order" value="{secrets.token_hex(8)}">'
                '<button type="submit">Buy</button></form></li>'
            )
        content = (
            "<p>Paid through your line's bill: the routing centre knows who you are.</p>\n"
            "<ul>\n" + "\n".join(rows) + "\n</ul>"
        )
        return _page(self.isp, "items", content)

    def buy(self, request: Request) -> Response:
        """Authorise a payment for the item, for whoever is behind the peer address."""
        form = _form(request.body)
        item = next((i for i in ITEMS if i.key == form.get("item")), None)
        if item is None:
            keys = ", ".join(i.key for i in ITEMS)
            return _problem(self.isp, 400, "ERROR", f"choose an item: one of {keys}")
        order = form.get("order", "")
        if not _ORDER.fullmatch(order):
            order = secrets.token_hex(8)
        config = load_config(self.config_file)
        body = {
            "source_address": request.peer,
            "amount_minor": item.price_minor,
            "currency": config.currency,
            "item": item.name,
            "merchant_reference": f"order-{order}",
        }
        status, answer = call_api(config, "/api/v1/payments", body, key=f"order-{order}")
        if status not in (200, 201) or "status" not in answer:
            return _api_error(self.isp, status, answer)
        payment = answer.get("id")
        esc = html.escape
        price = _money(item.price_minor, config.currency)
        if answer["status"] == "AUTHORISED":
            content = (
                f'<p id="status">AUTHORISED</p>\n<p>{esc(item.name)}, {price}: '
                f'payment <span id="payment">{esc(str(payment))}</span>, '
                f"order {order}.</p>\n"
                '<form method="post" action="/shop/deliver">'
                f'<input type="hidden" name="payment" value="{esc(str(payment))}">'
                '<button type="submit">Deliver</button></form>'
            )
            return _page(self.isp, "AUTHORISED", content)
        reason = str(answer.get("decline_reason") or "")
        content = (
            f'<p id="status">{esc(str(answer["status"]))}</p>\n'
            f'<p>{esc(item.name)}, {price}: payment <span id="payment">{esc(str(payment))}'
            f'</span> declined, reason <span id="reason">{esc(reason)}</span>.</p>'
        )
        return _page(self.isp, str(answer["status"]), content, 402)

    def deliver(self, request: Request) -> Response:
        """Deliver the item of an authorised payment: capture it."""
        payment = _form(request.body).get("payment", "")
        if not _PAYMENT_ID.fullmatch(payment):
            return _problem(self.isp, 400, "ERROR", "name the payment to deliver (its id)")
        config = load_config(self.config_file)
        path = f"/api/v1/payments/{payment}/capture"
        status, answer = call_api(config, path, {}, key=f"capture-{payment}")
        if status != 200 or "status" not in answer:
            return _api_error(self.isp, status, answer)
        captured = answer.get("captured_minor")
        amount = _money(captured, config.currency) if isinstance(captured, int) else "?"
        content = (
            f'<p id="status">{html.escape(str(answer["status"]))}</p>\n'
            f'<p>Payment <span id="payment">{payment}</span>: {amount} captured; '
            f"{html.escape(str(answer.get('item', '')))} delivered.</p>"
        )
        return _page(self.isp, str(answer["status"]), content)


def _form(body: bytes) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body, first value of each field."""
    try:
        pairs = urllib.parse.parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, max_num_fields=20
        )
    except (UnicodeDecodeError, ValueError):
        return {}
    form: dict[str, str] = {}
    for name, value in pairs:
        form.setdefault(name, value)
    return form
