"""Who is calling: a Standard Webhooks signature or a bearer token, checked before parsing.

Writes accept either scheme, reads only bearer tokens. A request carrying both, neither, a
header twice, or a header in the wrong shape is refused with 401 before its body is parsed.

Standard Webhooks (https://www.standardwebhooks.com/): ``webhook-id``, ``webhook-timestamp``
(Unix seconds) and ``webhook-signature`` (space-separated ``v1,<base64>``) over
``"{id}.{timestamp}.{raw body}"``. Several secrets may be configured at once so that senders
can rotate keys; each is tried in turn. The timestamp must be within five minutes of now in
either direction; within that window a replay is harmless, because the ``webhook-id`` is the
order's idempotency key.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

from flask import current_app, request
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from vpop.core.errors import ConfigError
from vpop.identity.service import token_holder
from vpop.selection.service import Caller
from webhooks.problems import Problem

TOLERANCE_SECONDS = 5 * 60
MIN_SECRET_BYTES = 24  # the Standard Webhooks spec asks for 24 to 64 random bytes
EXTENSION = "vpop_webhook_secrets"
WEBHOOK_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")

# Commas and spaces are excluded on purpose: a server joins a repeated header with ", ",
# so a repeated header can never pass these patterns.
MESSAGE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:~-]{0,199}")
TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIG = r"v[0-9a-z]{1,8},[A-Za-z0-9+/]{1,200}={0,2}"
SIGNATURE = re.compile(rf"{_SIG}(?: {_SIG}){{0,9}}")
SECRET = re.compile(r"whsec_[A-Za-z0-9+/]+={0,2}")

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="vpop"'}


@dataclass(frozen=True)
class Authenticated:
    """The outcome of authentication: the caller, and the webhook id when signed."""

    caller: Caller
    webhook_id: str | None = None


def load_webhook_secrets(value: object) -> list[Webhook]:
    """Verifiers for the configured secrets.

    Args:
        value: ``WEBHOOK_SECRETS``: comma-separated ``whsec_<base64>`` secrets, or a list of
            them. Empty means webhook signatures are not accepted.

    Raises:
        ConfigError: a secret is not ``whsec_<base64>`` of at least 24 bytes.
    """
    if value is None:
        return []
    if isinstance(value, str):
        items: Iterable[object] = value.split(",")
    elif isinstance(value, list | tuple):
        items = value
    else:
        raise ConfigError(
            "WEBHOOK_SECRETS must be a comma-separated string of whsec_ secrets",
            code="VPOP-CFG-WEBHOOK-SECRET",
        )
    verifiers = []
    for position, item in enumerate(items, start=1):
        secret = item.strip() if isinstance(item, str) else item
        if secret == "":
            continue
        if not isinstance(secret, str) or not SECRET.fullmatch(secret):
            raise ConfigError(
                f"webhook secret #{position} is not of the form whsec_<base64>",
                code="VPOP-CFG-WEBHOOK-SECRET",
            )
        try:
            raw = base64.b64decode(secret.removeprefix("whsec_") + "==")
        except binascii.Error as err:
            raise ConfigError(
                f"webhook secret #{position} is not valid base64",
                code="VPOP-CFG-WEBHOOK-SECRET",
            ) from err
        if len(raw) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"webhook secret #{position} has {len(raw)} bytes; use at least "
                f"{MIN_SECRET_BYTES} random bytes",
                code="VPOP-CFG-WEBHOOK-SECRET",
            )
        verifiers.append(Webhook(raw))
    return verifiers


def authenticate(*, allow_webhook: bool, merchant_ok: bool = False) -> Authenticated:
    """Identify the caller of the current request, reading the body only to verify it.

    Args:
        allow_webhook: Whether a Standard Webhooks signature is accepted (writes only).
        merchant_ok: Whether a ``merchant`` token may call this route (the payments API
            only); elsewhere it is refused with 403 whatever the route would do.

    Raises:
        Problem: 401 when the caller cannot be identified (413 if the body is too large);
            403 for a merchant token on a route that is not for merchants.
    """
    authorization = _single_header("Authorization")
    signed = any(name in request.headers for name in WEBHOOK_HEADERS)
    if authorization is not None and signed:
        raise _unauthorized(
            "VPOP-401-AMBIGUOUS",
            "send either a bearer token or a webhook signature, not both",
        )
    if authorization is not None:
        caller = _bearer(authorization)
        if caller.role == "merchant" and not merchant_ok:
            raise Problem(
                403, "VPOP-403-MERCHANT", "a merchant token may only call the payments API"
            )
        return Authenticated(caller)
    if signed:
        if not allow_webhook:
            raise _unauthorized("VPOP-401-BEARER-REQUIRED", "reads need a bearer token")
        return Authenticated(Caller(name="webhook", role="webhook"), webhook_id=_webhook())
    raise _unauthorized(
        "VPOP-401-MISSING",
        "authenticate with 'Authorization: Bearer <token>'"
        + (" or a Standard Webhooks signature" if allow_webhook else ""),
    )


def _unauthorized(code: str, detail: str) -> Problem:
    return Problem(401, code, detail, headers=_CHALLENGE)


def _single_header(name: str) -> str | None:
    """The header's value, looked up directly (``headers.getlist`` walks every variable of
    the request per lookup). A repeated header arrives joined (``a, b``: servers and werkzeug
    combine them), which the patterns of :func:`_webhook` refuse as not sent once."""
    value: str | None = request.headers.get(name)
    return value


def _bearer(authorization: str) -> Caller:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("VPOP-401-HEADER", "the Authorization header must be 'Bearer <token>'")
    found = token_holder(current_app.config["DATABASE_URL"], token)
    if found is None:
        raise _unauthorized("VPOP-401-TOKEN", "the bearer token is unknown or revoked")
    token_id, role, isp, merchant = found
    return Caller(name=f"token:{token_id}", role=role, isp=isp, merchant=merchant)


def _webhook() -> str:
    """Verify the Standard Webhooks signature of the current request; return its id."""
    msg_id = _single_header("webhook-id")
    timestamp = _single_header("webhook-timestamp")
    signature = _single_header("webhook-signature")
    if msg_id is None or timestamp is None or signature is None:
        raise _unauthorized(
            "VPOP-401-HEADER",
            "a signed request needs webhook-id, webhook-timestamp and webhook-signature",
        )
    if not MESSAGE_ID.fullmatch(msg_id):
        raise _unauthorized(
            "VPOP-401-HEADER",
            "webhook-id must be sent once, 1-200 characters of A-Z a-z 0-9 _ . : ~ -",
        )
    if not TIMESTAMP.fullmatch(timestamp):
        raise _unauthorized(
            "VPOP-401-HEADER", "webhook-timestamp must be sent once, in whole Unix seconds"
        )
    if abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
        raise _unauthorized(
            "VPOP-401-TIMESTAMP",
            "webhook-timestamp is more than 5 minutes away from the server's clock",
        )
    if not SIGNATURE.fullmatch(signature):
        raise _unauthorized(
            "VPOP-401-HEADER",
            "webhook-signature must be sent once, as space-separated 'v1,<base64>' values",
        )
    verifiers: list[Webhook] = current_app.extensions[EXTENSION]
    if not verifiers:
        raise _unauthorized("VPOP-401-SIGNATURE", "webhook signatures are not enabled here")
    raw = request.get_data(cache=True)  # the raw bytes, limited by MAX_CONTENT_LENGTH
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": signature,
    }
    for verifier in verifiers:
        try:
            verifier.verify(raw, headers, json_parse=False)
        except (WebhookVerificationError, ValueError):
            # ValueError covers a body that is not UTF-8 (the scheme signs text)
            continue
        return msg_id
    raise _unauthorized("VPOP-401-SIGNATURE", "no webhook signature matches")
