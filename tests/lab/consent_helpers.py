"""Helpers for the lab's tenancy and consent tests: ISP tokens, reads as an ISP, a consent
link followed like a browser without scripts, and a callback receiver on 127.0.0.1."""

from __future__ import annotations

import html
import http.cookiejar
import json
import re
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from tests.lab.helpers import Server

_HIDDEN = re.compile(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">')


def isp_token(server: Server, isp: str) -> str:
    """A new bearer token of role isp for ``isp`` in the server's database."""
    from vpop.core.db import session_scope
    from vpop.identity.tokens import create_token

    with session_scope(server.db_url) as session:
        return create_token(session, "isp", isp, name=f"lab {isp}")


def as_token(
    server: Server, token: str, method: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    """A JSON request with a bearer token; the status and the JSON body."""
    headers = {"Authorization": f"Bearer {token}"}
    data = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode()
    return server.request(method, path, data, headers)


def set_callback_url(server: Server, isp: str, url: str) -> None:
    """Point an ISP's callbacks at ``url``."""
    from vpop.catalogue.service import Isp
    from vpop.core.db import session_scope

    with session_scope(server.db_url) as session:
        row = session.get(Isp, isp)
        assert row is not None, isp
        row.callback_url = url


def confirm_by_link(base: str, consent_url: str, answer: str = "confirm") -> str:
    """Open a consent link on ``base`` and press a button, as a browser without scripts does.

    Returns:
        The URL the answer redirected to (the order's page).
    """
    parts = urllib.parse.urlsplit(consent_url)
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(f"{base}{parts.path}?{parts.query}", timeout=30) as page:
        body = page.read().decode()
    form = body[body.index('<form class="consent"') :]
    form = form[: form.index("</form>")]
    fields = {name: html.unescape(value) for name, value in _HIDDEN.findall(form)}
    fields["answer"] = answer
    request = urllib.request.Request(
        f"{base}/consent", data=urllib.parse.urlencode(fields).encode(), method="POST"
    )
    with opener.open(request, timeout=30) as done:
        return str(done.geturl())


@dataclass
class Received:
    """What a callback receiver got: each POST's headers (lower-case names) and body."""

    posts: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)


@contextmanager
def callback_receiver() -> Iterator[tuple[str, Received]]:
    """An HTTP listener on 127.0.0.1 answering 204 to every POST; stopped on exit."""
    received = Received()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            length = int(self.headers.get("Content-Length", "0"))
            headers = {k.lower(): v for k, v in self.headers.items()}
            received.posts.append((headers, self.rfile.read(length)))
            self.send_response(204)
            self.end_headers()
            received.arrived.set()

        def log_message(self, *args: object) -> None:
            """Quiet."""

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/vpop-callbacks", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def wait_final(server: Server, token: str, order_id: int, timeout: float = 60.0) -> dict[str, Any]:
    """Poll an order as ``token`` until it is final (bounded): the order's own view."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        status, body = as_token(server, token, "GET", f"/api/v1/orders/{order_id}")
        assert status == 200, body
        if body["final"]:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"order {order_id} not final after {timeout}s: {body}")
        time.sleep(0.05)
