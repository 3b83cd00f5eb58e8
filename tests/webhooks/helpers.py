"""Helpers for the HTTP API tests: test secrets, signing, counting orders."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import func, select
from standardwebhooks.webhooks import Webhook
from werkzeug.test import TestResponse

from vpop.core.db import session_scope
from vpop.selection.models import Order

PROBLEM = "application/problem+json"

# fixed test secrets (32 bytes each): the first is "current", the second the rotated-in one
SECRETS = [
    "whsec_" + base64.b64encode(bytes(range(32))).decode(),
    "whsec_" + base64.b64encode(bytes(range(100, 132))).decode(),
]
UNKNOWN_SECRET = "whsec_" + base64.b64encode(bytes(range(200, 232))).decode()


def sign_headers(
    body: bytes | str,
    *,
    msg_id: str = "msg_1",
    timestamp: datetime | None = None,
    secret: str = SECRETS[0],
) -> dict[str, str]:
    """Standard Webhooks headers for ``body``, made by the real ``standardwebhooks`` package."""
    text = body.decode() if isinstance(body, bytes) else body
    when = timestamp or datetime.now(UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, when, text),
        "Content-Type": "application/json",
    }


def post_signed(
    client: FlaskClient, payload: Any, *, msg_id: str = "msg_1", **kwargs: Any
) -> TestResponse:
    """POST ``payload`` (JSON-encoded unless bytes) to /api/v1/selections, signed."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return client.post(
        "/api/v1/selections", data=body, headers=sign_headers(body, msg_id=msg_id, **kwargs)
    )


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for a token."""
    return {"Authorization": f"Bearer {token}"}


def order_count(url: str) -> int:
    """How many orders the database holds."""
    with session_scope(url) as session:
        return int(session.scalar(select(func.count()).select_from(Order)) or 0)


def minutes(n: float) -> timedelta:
    """A timedelta of ``n`` minutes."""
    return timedelta(minutes=n)


def assert_problem(response: TestResponse, status: int, code: str | None = None) -> dict[str, Any]:
    """Check that ``response`` is a problem+json of ``status`` (and ``code``); return it."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body: dict[str, Any] = response.get_json(force=True)
    assert body["status"] == status
    assert body["code"].startswith("VPOP-")
    assert body["type"].endswith(body["code"])
    assert body["title"] and body["detail"]
    if code is not None:
        assert body["code"] == code, body
    return body
