"""Idempotent calls: the first answer to a caller's key is stored and replayed.

The key names the business action (``capture of payment 42``), not a network try; a caller
(its ``scope``, e.g. ``token:7``) that sends the same key again with the same request gets
the stored status and body back, byte for byte, and nothing runs again; the same key with
another request (or for another operation) is refused with
:class:`~vpop.billing.errors.IdempotencyConflict`. The answer is stored in the transaction
that did the work, so it exists exactly when the work was committed. Refusals (a
:class:`~vpop.core.errors.VpopError` raised by the work) are not stored: the transaction is
rolled back and a retry runs again.

Two concurrent requests with one key: the unique ``(scope, key)`` makes the second fail at
its insert or commit; the caller retries once and replays the first's answer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vpop.billing.errors import IdempotencyConflict
from vpop.billing.payment_models import BillingRequest
from vpop.core.errors import BadInput
from vpop.core.time import utcnow

KEY_MAX = 200
_KEY_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F))


def check_key(key: object) -> str:
    """An idempotency key: 1-200 printable ASCII characters without spaces.

    Raises:
        BadInput: ``VPOP-400-IDEMPOTENCY-KEY`` for anything else.
    """
    if not isinstance(key, str) or not 0 < len(key) <= KEY_MAX or not set(key) <= _KEY_CHARS:
        raise BadInput(
            "Idempotency-Key: send 1-200 printable ASCII characters without spaces",
            code="VPOP-400-IDEMPOTENCY-KEY",
        )
    return key


def request_sha256(request: Mapping[str, Any]) -> str:
    """The SHA-256 of the request as canonical JSON (sorted keys, no spaces)."""
    blob = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def replay_or_run(
    session: Session,
    *,
    scope: str,
    key: str,
    operation: str,
    request: Mapping[str, Any],
    run: Callable[[], tuple[int, dict[str, Any]]],
) -> tuple[int, dict[str, Any], bool]:
    """The stored answer to ``(scope, key)``, or ``run()``'s, stored now.

    Args:
        session: the caller's transaction (the work and its answer commit together).
        scope: who asks (``caller.name``); keys of different callers never meet.
        key: the caller's idempotency key (:func:`check_key`).
        operation: what the key is for (``authorise``, ``capture:42``).
        request: the request as JSON, compared by its SHA-256.
        run: does the work in ``session``; returns ``(status, body)``.

    Returns:
        ``(status, body, replayed)``.

    Raises:
        IdempotencyConflict: the key was used for another operation or request.
    """
    check_key(key)
    digest = request_sha256(request)
    query = select(BillingRequest).where(BillingRequest.scope == scope, BillingRequest.key == key)
    stored = session.scalars(query.execution_options(populate_existing=True)).first()
    if stored is not None:
        if (stored.operation, stored.request_sha256) != (operation, digest):
            raise IdempotencyConflict(
                f"Idempotency-Key {key[:40]!r} was used for another request"
                f" ({stored.operation}); use a new key for a new request"
            )
        body: dict[str, Any] = json.loads(stored.response)
        return stored.status_code, body, True
    status, answer = run()
    text = json.dumps(answer, separators=(",", ":"))
    session.add(
        BillingRequest(
            scope=scope, key=key, operation=operation, request_sha256=digest,
            status_code=status, response=text,
            created_at=utcnow(),
        )
    )  # fmt: skip
    session.flush()
    return status, json.loads(text), False  # what a replay returns, to the byte
