"""The thin client of ``vpop select``: which server to send the order to, and its round trip.

With a server configured (``VPOP_SERVER_URL`` and ``VPOP_API_TOKEN_FILE``), ``vpop select``
POSTs the order to ``/api/v1/selections`` and waits for it with the long-poll of
``GET /api/v1/orders/{id}`` (``Prefer: wait=N``, RFC 7240), polling every 0.2 s only when the
server does not answer with ``Preference-Applied``. This path imports click and the standard
library only (no pydantic, SQLAlchemy, Flask or Nornir): the command's whole process is a
Python start, click, ``http.client`` and two or three requests (``docs/cli.md``;
``tests/test_cli_startup.py`` holds the imports).
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from vpop.cli.common import CommandError, InputError, bad_input

SERVER_VARIABLE = "VPOP_SERVER_URL"
TOKEN_FILE_VARIABLE = "VPOP_API_TOKEN_FILE"
CONFIG_VARIABLE = "VPOP_CONFIG"

#: The statuses ``vpop select`` stops waiting at (``UNKNOWN``: a reconcile decides, later).
STOP_AT = frozenset({"DONE_SUCCESS", "DONE_FAILED", "RECONCILED", "UNKNOWN", "DECLINED", "EXPIRED"})

#: The longest wait a server applies (contract: ``Prefer: wait=N``, N in 1..60).
MAX_WAIT = 60
#: How often an order is polled on a server that does not apply ``Prefer: wait``.
POLL_SECONDS = 0.2
#: Seconds a request may take beyond the wait it asked for before the server counts as gone.
ANSWER_SECONDS = 30.0


@dataclass(frozen=True)
class ServerConfig:
    """The running server ``vpop select`` submits to, if any.

    Attributes:
        url: ``VPOP_SERVER_URL`` (``http://127.0.0.1:8080``), or None: apply in this process.
        token_file: ``VPOP_API_TOKEN_FILE``, a file holding an API token (admin or noc).
    """

    url: str | None
    token_file: Path | None


def server_config() -> ServerConfig:
    """Read ``VPOP_SERVER_URL`` and ``VPOP_API_TOKEN_FILE`` without loading every setting.

    The one documented exception to "settings only through ``load_settings()``": the thin
    client must not import pydantic-settings (a third of a second), so it reads these two
    variables itself, as ``load_settings()`` would (names in any case, empty means unset).
    When either comes from the config file (``VPOP_CONFIG`` is set and the variable is
    not), :func:`vpop.core.settings.load_settings` decides, with its own checks.

    Raises:
        ConfigError: from ``load_settings()``, when the config file is invalid.
    """
    # documented exception (docs/cli.md): the thin client reads its two settings here
    found = {k.upper(): v for k, v in os.environ.items() if k[:5].upper() == "VPOP_" and v}
    url = found.get(SERVER_VARIABLE)
    token_file = found.get(TOKEN_FILE_VARIABLE)
    if CONFIG_VARIABLE in found and (url is None or token_file is None):
        from vpop.core.settings import load_settings

        settings = load_settings()
        return ServerConfig(settings.server_url, settings.api_token_file)
    return ServerConfig(url, Path(token_file) if token_file else None)


def read_token(token_file: Path | None) -> str:
    """The API token in ``token_file``; a missing, unreadable or empty file is bad input."""
    if token_file is None:
        raise bad_input(
            f"{SERVER_VARIABLE} is set but {TOKEN_FILE_VARIABLE} is not: name a file holding "
            "an API token (`vpop token create --role noc`)"
        )
    try:
        token = token_file.read_text().strip()
    except OSError as err:
        raise bad_input(
            f"{TOKEN_FILE_VARIABLE}={token_file}: cannot read it ({err.strerror})"
        ) from None
    if not token:
        raise bad_input(f"{TOKEN_FILE_VARIABLE}={token_file} is empty: put an API token in it")
    return token


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: status, the headers (names in lower case) and the JSON body."""

    status: int
    headers: dict[str, str]
    body: dict[str, Any]


class Server:
    """One keep-alive connection to the server at ``url`` (``http`` or ``https``).

    Raises:
        InputError: from the constructor when ``url`` is not an ``http(s)://host[:port]`` URL.
    """

    def __init__(self, url: str) -> None:
        """Check ``url``; connect at the first request."""
        parts = urllib.parse.urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
            raise bad_input(
                f"{SERVER_VARIABLE}={url!r} is not an http(s) URL: write e.g. http://127.0.0.1:8080"
            )
        self.base = url.rstrip("/")
        self._prefix = parts.path.rstrip("/")
        kind = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        self._conn = kind(parts.hostname, port, timeout=ANSWER_SECONDS)

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def call(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes | None = None,
        *,
        seconds: float = ANSWER_SECONDS,
    ) -> Answer:
        """Send one request and read its answer within ``seconds``.

        A connection the server closed between two requests is opened again once (every
        request here may be repeated: the POST carries its Idempotency-Key).

        Raises:
            CommandError: ``VPOP-SERVER`` when the server cannot be reached or does not
                answer in time (exit 1).
        """
        for attempt in (1, 2):
            reused = self._conn.sock is not None
            self._conn.timeout = seconds
            if self._conn.sock is not None:
                self._conn.sock.settimeout(seconds)
            try:
                self._conn.request(method, self._prefix + path, body=body, headers=headers)
                resp = self._conn.getresponse()
                raw = resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as err:
                self._conn.close()
                if reused and attempt == 1:
                    continue
                raise self._unreachable(err) from None
            except TimeoutError:
                self._conn.close()
                raise CommandError(
                    "VPOP-SERVER",
                    f"{SERVER_VARIABLE}={self.base} did not answer {method} {path} "
                    f"within {seconds:.0f}s",
                ) from None
            except (OSError, http.client.HTTPException) as err:
                self._conn.close()
                raise self._unreachable(err) from None
            if resp.will_close:
                self._conn.close()
            return Answer(
                resp.status, {k.lower(): v for k, v in resp.getheaders()}, _json_object(raw)
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def _unreachable(self, err: BaseException) -> CommandError:
        reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
        return CommandError(
            "VPOP-SERVER",
            f"cannot reach {SERVER_VARIABLE}={self.base} ({reason}): start the server "
            f"(`vpop serve`) or unset {SERVER_VARIABLE} to apply orders in this process",
        )


def _json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object; anything else (an HTML error page) as an empty one."""
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def refused(answer: Answer) -> CommandError:
    """The server's problem as one line: the caller's mistake exits 2, the server's 1.

    A refused token (401, 403) and a rate limit (429) are not mistakes in the command's
    arguments: they exit 1, as a server error does.
    """
    code = str(answer.body.get("code") or f"HTTP-{answer.status}")
    detail = answer.body.get("detail") or answer.body.get("title") or f"HTTP {answer.status}"
    if 400 <= answer.status < 500 and answer.status not in (401, 403, 429):
        return InputError(code, str(detail))
    return CommandError(code, str(detail))


def select_on_server(
    config: ServerConfig, subscriber: str, isp: str, dry_run: bool, timeout: float
) -> dict[str, Any]:
    """Submit the order to the configured server and follow it until it stops.

    Prints ``order N: STATUS`` for the first answer and each change seen. Returns the
    order's view (``GET /api/v1/orders/{id}``) once its status is in :data:`STOP_AT` or
    the server calls it final.

    Raises:
        InputError: a bad token file or URL, or a request the server refused as the
            caller's mistake (exit 2).
        CommandError: the server is unreachable, refused the token, failed, or the order
            did not stop within ``timeout`` seconds (exit 1).
    """
    assert config.url is not None
    token = read_token(config.token_file)
    server = Server(config.url)
    try:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        body = json.dumps({"subscriber": subscriber, "isp": isp, "dry_run": dry_run}).encode()
        post_headers = {
            **headers,
            "Content-Type": "application/json",
            # a repeated request is the same order, not a second one
            "Idempotency-Key": str(uuid.uuid4()),
        }
        answer = server.call("POST", "/api/v1/selections", post_headers, body)
        if answer.status not in (200, 202):
            raise refused(answer)
        order_id = int(answer.body["order"])
        status = str(answer.body["status"])
        click.echo(f"order {order_id}: {status} ({subscriber} -> {isp}, via {server.base})")
        return _follow(server, headers, order_id, status, timeout)
    finally:
        server.close()


def _follow(
    server: Server, headers: dict[str, str], order_id: int, last: str, timeout: float
) -> dict[str, Any]:
    """Wait for the order with the long-poll; poll only a server that does not apply it."""
    started = time.monotonic()
    long_poll = True
    path = f"/api/v1/orders/{order_id}"
    while True:
        remaining = timeout - (time.monotonic() - started)
        wait = min(MAX_WAIT, int(remaining)) if long_poll else 0
        asked = {**headers, "Prefer": f"wait={wait}"} if wait >= 1 else headers
        answer = server.call("GET", path, asked, seconds=wait + ANSWER_SECONDS)
        if answer.status != 200:
            raise refused(answer)
        view = answer.body
        if view.get("status") != last:
            last = str(view.get("status"))
            click.echo(f"order {order_id}: {last} ({time.monotonic() - started:.2f}s)")
        if last in STOP_AT or view.get("final") is True:
            return view
        applied = answer.headers.get("preference-applied", "").startswith("wait")
        if wait >= 1 and not applied:
            long_poll = False  # an older server answered at once: poll it instead
        elapsed = time.monotonic() - started
        if elapsed >= timeout:
            raise CommandError(
                "VPOP-TIMEOUT",
                f"order {order_id} still {last} after {elapsed:.1f}s (the server goes on "
                f"with it: GET {server.base}{path})",
            )
        if not applied:
            time.sleep(min(POLL_SECONDS, timeout - elapsed))
