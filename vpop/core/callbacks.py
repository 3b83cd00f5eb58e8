"""Outgoing callbacks: signed with Standard Webhooks, never sent to internal addresses.

The signing secret and the private-address switch are settings (``VPOP_CALLBACK_SECRET``,
``VPOP_WEBHOOK_SECRETS``, ``VPOP_CALLBACK_ALLOW_PRIVATE``), read on every send so that a
rotated secret applies at once. A callback connects only to the addresses its host resolved
to when it was checked (:mod:`vpop.core.pinned_http`), so a DNS answer that changes between the
check and the connection cannot reach an internal address.
"""

from __future__ import annotations

import http.client
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

from vpop.core import pinned_http
from vpop.core.errors import VpopError
from vpop.core.pinned_http import DestinationRefused, checked_target
from vpop.core.settings import load_settings

TIMEOUT = 5.0


class CallbackFailed(VpopError):
    """The callback URL did not accept the callback (it is retried)."""

    code = "VPOP-502-CALLBACK"


def signing_secret() -> str | None:
    """``VPOP_CALLBACK_SECRET``, else the first of ``VPOP_WEBHOOK_SECRETS``."""
    settings = load_settings()
    secret = settings.callback_secret.get_secret_value() if settings.callback_secret else ""
    if secret:
        return secret
    secrets = [s.strip() for s in settings.webhook_secrets.split(",")]
    return next((s for s in secrets if s), None)


def refused_destination(url: str) -> str | None:
    """Why a callback must not go to ``url`` (None when it may).

    Callbacks go to URLs that callers chose, so by default they may not reach this host or
    the operator's internal networks (loopback, private, link-local, reserved addresses):
    otherwise any token holder could make vpop POST into them. ``VPOP_CALLBACK_ALLOW_PRIVATE=1``
    lifts this where receivers really live on such networks (the lab, the tests). This checks a
    URL when it is set; sending checks again, on the addresses it then connects to
    (:func:`post_signed`).
    """
    if load_settings().callback_allow_private:
        return None
    try:
        checked_target(url, allow_private=False)
    except DestinationRefused as err:
        return err.message
    return None


def post_signed(url: str, msg_id: str, payload: str) -> str:
    """POST ``payload`` to ``url``, signed per Standard Webhooks, to a checked address only.

    The URL's host is resolved once; every address is checked (:func:`refused_destination`'s
    rule) and the connection goes to those addresses, never to a second answer of the resolver
    (:mod:`vpop.core.pinned_http`). Redirects are not followed: a 3xx is a failure.

    Args:
        url: the receiver's http(s) URL.
        msg_id: the ``webhook-id`` (the same on retries).
        payload: the JSON body.

    Returns:
        ``"delivered: HTTP <status>"``, ``"failed: ..."`` (worth retrying) or ``"not sent: ..."``
        (no signing secret, or a destination that is refused).
    """
    secret = signing_secret()
    if secret is None:
        return "not sent: no signing secret configured"
    now = datetime.now(UTC)
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, payload),
    }
    try:
        answer = pinned_http.post(
            url,
            payload.encode(),
            headers,
            timeout=TIMEOUT,
            allow_private=load_settings().callback_allow_private,
        )
    except DestinationRefused as err:
        return f"not sent: {err.message}"
    except (OSError, http.client.HTTPException) as err:
        return f"failed: {err}"
    status = answer.status
    if 200 <= status < 300:
        return f"delivered: HTTP {status}"
    if 300 <= status < 400:
        return f"failed: HTTP {status}, redirect to {answer.location} not followed"
    return f"failed: HTTP {status}"
