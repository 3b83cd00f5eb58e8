"""Outgoing callbacks: signed with Standard Webhooks, never sent to internal addresses.

The signing secret and the private-address switch are settings (``VPOP_CALLBACK_SECRET``,
``VPOP_WEBHOOK_SECRETS``, ``VPOP_CALLBACK_ALLOW_PRIVATE``), read on every send so that a
rotated secret applies at once.
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

from vpop.core.errors import VpopError
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
    lifts this where receivers really live on such networks (the lab, the tests).
    """
    if load_settings().callback_allow_private:
        return None
    host = urllib.parse.urlsplit(url).hostname
    if not host:
        return "no host in the callback URL"
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError as err:
        return f"cannot resolve {host}: {err}"
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if (
            address.is_loopback
            or address.is_private
            or address.is_link_local
            or address.is_reserved
            or address.is_multicast
            or address.is_unspecified
        ):
            return (
                f"{host} is {address}, an internal address; set VPOP_CALLBACK_ALLOW_PRIVATE=1 "
                "to allow callbacks there"
            )
    return None


def post_signed(url: str, msg_id: str, payload: str) -> str:
    secret = signing_secret()
    if secret is None:
        return "not sent: no signing secret configured"
    refused = refused_destination(url)
    if refused is not None:
        return f"not sent: {refused}"
    now = datetime.now(UTC)
    request = urllib.request.Request(
        url,
        data=payload.encode(),
        method="POST",
        headers={
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, now, payload),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310
            status = response.status
    except urllib.error.HTTPError as err:
        status = err.code
    except (urllib.error.URLError, OSError) as err:
        return f"failed: {err}"
    return f"delivered: HTTP {status}" if 200 <= status < 300 else f"failed: HTTP {status}"
