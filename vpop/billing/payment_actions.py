"""The committing payment calls the API and the lab shop use: one transaction each (the
idempotency record, the payment's change and its ledger entries), then
:data:`~vpop.billing.signals.payment_changed` for every new event, after the commit.

Each returns ``(http_status, body, replayed)``: 201 (authorise) or 200 with
:func:`~vpop.billing.payment_views.payment_view`, and whether the answer is the stored one
of an earlier call with the same key (:mod:`vpop.billing.idempotency`, scope
``caller.name``). Refusals (:class:`~vpop.core.errors.VpopError`) are raised, not stored.

Concurrency: on SQLite the transaction starts with the write lock; on PostgreSQL the
payment's row is locked before the key is looked up, so a second call with the same key
waits and then replays the first's answer. Two first calls of ``authorise_in`` with one key
race to insert the record: the loser's insert fails and it runs once more, replaying.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vpop.billing.idempotency import check_key, replay_or_run
from vpop.billing.ledger import in_transaction
from vpop.billing.payment_models import Payment, PaymentEvent
from vpop.billing.payment_views import payment_view
from vpop.billing.payments import (
    authorise,
    capture,
    dispute,
    events_of,
    expire_payments,
    lock_payment,
    refund,
    void,
    write_lock,
)
from vpop.billing.schemas import CaptureBody, PaymentBody, RefundBody
from vpop.billing.signals import payment_changed
from vpop.core.signals import emit
from vpop.selection.service import Caller

Answer = tuple[int, dict[str, Any], bool]
_Work = Callable[[Session], Payment]


def _committed(
    url: str | None,
    caller: Caller,
    *,
    key: str,
    operation: str,
    request: Mapping[str, Any],
    payment_id: int | None,
    status: int,
    work: _Work,
) -> Answer:
    """Run ``work`` once per key in one transaction; announce its new events after commit."""
    check_key(key)

    def transaction(session: Session) -> tuple[Answer, list[tuple[int, int]]]:
        write_lock(session)
        before = 0
        if payment_id is not None:
            lock_payment(session, payment_id)
            last = session.scalar(
                select(func.max(PaymentEvent.id)).where(PaymentEvent.payment_id == payment_id)
            )
            before = int(last or 0)
        changes: list[tuple[int, int]] = []

        def run() -> tuple[int, dict[str, Any]]:
            payment = work(session)
            events = events_of(session, payment.id)
            changes.extend((payment.id, event.id) for event in events if event.id > before)
            return status, payment_view(payment, events)

        answer = replay_or_run(
            session, scope=caller.name, key=key, operation=operation, request=request, run=run
        )
        return answer, changes

    try:
        answer, changes = in_transaction(url, transaction)
    except IntegrityError:
        # the same key committed by a concurrent call: this run replays its answer
        answer, changes = in_transaction(url, transaction)
    _announce(changes)
    return answer


def authorise_in(
    url: str | None, caller: Caller, body: PaymentBody, *, key: str, now: datetime | None = None
) -> Answer:
    """:func:`~vpop.billing.payments.authorise`, committed: 201 and the payment
    (AUTHORISED or DECLINED; a decline is replayed like any answer)."""
    return _committed(
        url, caller, key=key, operation="authorise", request=body.model_dump(),
        payment_id=None, status=201,
        work=lambda session: authorise(session, caller, body, now=now),
    )  # fmt: skip


def capture_in(
    url: str | None,
    caller: Caller,
    payment_id: int,
    body: CaptureBody,
    *,
    key: str,
    now: datetime | None = None,
) -> Answer:
    """:func:`~vpop.billing.payments.capture`, committed: 200 and the payment."""
    return _committed(
        url, caller, key=key, operation=f"capture:{payment_id}", request=body.model_dump(),
        payment_id=payment_id, status=200,
        work=lambda session: capture(session, caller, payment_id, body.amount_minor, now=now),
    )  # fmt: skip


def void_in(
    url: str | None, caller: Caller, payment_id: int, *, key: str, now: datetime | None = None
) -> Answer:
    """:func:`~vpop.billing.payments.void`, committed: 200 and the payment."""
    return _committed(
        url, caller, key=key, operation=f"void:{payment_id}", request={},
        payment_id=payment_id, status=200,
        work=lambda session: void(session, caller, payment_id, now=now),
    )  # fmt: skip


def refund_in(
    url: str | None,
    caller: Caller,
    payment_id: int,
    body: RefundBody,
    *,
    key: str,
    now: datetime | None = None,
) -> Answer:
    """:func:`~vpop.billing.payments.refund`, committed: 200 and the payment."""
    return _committed(
        url, caller, key=key, operation=f"refund:{payment_id}", request=body.model_dump(),
        payment_id=payment_id, status=200,
        work=lambda session: refund(
            session, caller, payment_id, body.amount_minor, reason=body.reason or "", now=now
        ),
    )  # fmt: skip


def _announce(changes: list[tuple[int, int]]) -> None:
    for change in changes:
        emit(payment_changed, change)


def _last_events(session: Session, payment_ids: list[int]) -> list[tuple[int, int]]:
    """``(payment id, id of its latest event)`` for each payment."""
    if not payment_ids:
        return []
    rows = session.execute(
        select(PaymentEvent.payment_id, func.max(PaymentEvent.id))
        .where(PaymentEvent.payment_id.in_(payment_ids))
        .group_by(PaymentEvent.payment_id)
        .order_by(PaymentEvent.payment_id)
    ).all()
    return [(payment, event) for payment, event in rows]


def expire_in(url: str | None = None, *, now: datetime | None = None) -> list[int]:
    """:func:`~vpop.billing.payments.expire_payments`, committed; each ``expired`` event
    announced. Returns the expired payments' ids."""

    def transaction(session: Session) -> tuple[list[int], list[tuple[int, int]]]:
        expired = expire_payments(session, now=now)
        return expired, _last_events(session, expired)

    expired, changes = in_transaction(url, transaction)
    _announce(changes)
    return expired


def dispute_in(
    url: str | None,
    subscriber_id: str,
    payment_id: int,
    reason: str,
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """:func:`~vpop.billing.payments.dispute`, committed and announced: the payment's view."""

    def transaction(session: Session) -> tuple[dict[str, Any], list[tuple[int, int]]]:
        write_lock(session)
        payment = dispute(session, subscriber_id, payment_id, reason, now=now)
        events = events_of(session, payment.id)
        return payment_view(payment, events), [(payment.id, events[-1].id)]

    view, changes = in_transaction(url, transaction)
    _announce(changes)
    return view
