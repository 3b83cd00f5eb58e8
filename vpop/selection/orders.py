"""Orders: identity (which line?), policy (which ISP?), idempotency, the state machine.

An order and its idempotency record are written in one transaction, before the caller is
answered. The same key with the same body returns the same order; the same key with another
body is refused; two concurrent requests with one key create one order (the unique
constraint decides, the loser reads the winner's order).

An ISP token asking for a line that does not use that ISP now gets a ``PENDING_CONSENT``
order that waits for the subscriber (:mod:`vpop.selection.consent`); every order records
the ISP the line used when it was accepted (``losing_isp_id``), told when the switch is done.

:func:`order_view` is what everyone but operators reads of an order: its diff is only the
order's own line's part of the run's diff (:mod:`vpop.selection.diffs`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vpop.catalogue.service import Isp, Line, Subscriber
from vpop.core.audit import audit
from vpop.core.db import get_engine, session_scope
from vpop.core.errors import BadInput, NotFound, VpopError
from vpop.core.signals import emit
from vpop.core.time import iso, utcnow
from vpop.selection.consent import CONSENT_TTL, needs_consent
from vpop.selection.diffs import line_diff, line_names
from vpop.selection.models import FINAL_STATUSES, IdempotencyRecord, Order, OrderStatus
from vpop.selection.signals import order_accepted, reconcile_requested


class IdempotencyConflict(VpopError):
    """The idempotency key was used before with a different request body."""

    code = "VPOP-409-IDEMPOTENCY"
    status = 422


class Forbidden(VpopError):
    """The caller may not act on this object."""

    code = "VPOP-403"
    status = 403


@dataclass(frozen=True)
class SelectionRequest:
    """A validated request to move a line to an ISP.

    Exactly one of ``subscriber``, ``calling_number``, ``circuit_id`` or ``access_id`` names
    the line; values are already canonical (see :mod:`vpop.validate`).
    """

    isp: str
    subscriber: str | None = None
    calling_number: str | None = None
    circuit_id: str | None = None
    access_id: str | None = None
    dry_run: bool = False
    callback_url: str | None = None

    def body_hash(self) -> str:
        """A stable hash of the request, for idempotency comparisons."""
        blob = json.dumps(self.__dict__, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class Caller:
    """Who is asking: used for idempotency scope, audit and ISP scoping."""

    name: str  # e.g. "token:3" or "webhook"
    role: str  # admin | noc | portal | isp | merchant | webhook
    isp: str | None = None
    merchant: str | None = None  # a merchant token's payee id (its ISP is ``isp``)


def resolve_line(session: Session, req: SelectionRequest) -> Line:
    """Identity: find the line a request names (subscriber's first line, or an identifier).

    Raises:
        NotFound: no such subscriber or line.
    """
    stmt = select(Line)
    if req.subscriber is not None:
        if session.get(Subscriber, req.subscriber) is None:
            raise NotFound(f"unknown subscriber {req.subscriber!r}", code="VPOP-404-SUBSCRIBER")
        stmt = stmt.where(Line.subscriber_id == req.subscriber).order_by(Line.id)
    elif req.calling_number is not None:
        stmt = stmt.where(Line.calling_number == req.calling_number)
    elif req.circuit_id is not None:
        stmt = stmt.where(Line.circuit_id == req.circuit_id)
    elif req.access_id is not None:
        stmt = stmt.where(Line.access_id == req.access_id)
    else:
        raise BadInput("name the line: subscriber, calling_number, circuit_id or access_id")
    line = session.scalars(stmt.limit(1)).first()
    if line is None:
        raise NotFound("no line matches the given identifier", code="VPOP-404-LINE")
    return line


def resolve_isp(session: Session, isp_id: str, caller: Caller) -> Isp:
    """Policy: the ISP must exist, and an ISP's token may only choose itself."""
    isp = session.get(Isp, isp_id)
    if isp is None:
        raise NotFound(f"unknown ISP {isp_id!r}", code="VPOP-404-ISP")
    if caller.role == "isp" and caller.isp != isp_id:
        raise Forbidden(f"an ISP token for {caller.isp!r} cannot select {isp_id!r}")
    return isp


def submit_selection(
    req: SelectionRequest, caller: Caller, idempotency_key: str | None, url: str | None = None
) -> tuple[Order, bool]:
    """Write the order (and its idempotency record) in one transaction.

    Returns:
        The order and whether it was created now (False for a replay).

    Raises:
        NotFound, Forbidden, IdempotencyConflict, BadInput.
    """
    from sqlalchemy.orm import sessionmaker

    factory = sessionmaker(get_engine(url), expire_on_commit=False)
    body_hash = req.body_hash()
    for _attempt in range(3):
        with factory() as session:
            if idempotency_key is not None:
                existing = _replay(session, caller, idempotency_key, body_hash)
                if existing is not None:
                    return existing, False
            line = resolve_line(session, req)
            isp = resolve_isp(session, req.isp, caller)
            current = line.selection.isp_id if line.selection is not None else None
            pending = needs_consent(caller.role, caller.isp, current, isp.id)
            order = Order(
                line_id=line.id,
                isp_id=isp.id,
                router=line.router,
                status=(OrderStatus.PENDING_CONSENT if pending else OrderStatus.RECEIVED).value,
                dry_run=req.dry_run,
                requester=caller.name,
                callback_url=req.callback_url,
                losing_isp_id=current if current != isp.id and not req.dry_run else None,
                consent_expires_at=utcnow() + CONSENT_TTL if pending else None,
            )
            session.add(order)
            session.flush()
            if idempotency_key is not None:
                session.add(
                    IdempotencyRecord(
                        scope=caller.name,
                        key=idempotency_key,
                        body_hash=body_hash,
                        order_id=order.id,
                    )
                )
            audit(
                session,
                caller.name,
                "order.request" if pending else "order.create",
                f"order:{order.id}",
                line=line.id,
                isp=isp.id,
                dry_run=req.dry_run,
            )
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                continue  # a concurrent request with the same key won: replay it
            if not pending:
                emit(order_accepted, order.router)
            return order, True
    busy = VpopError("could not record the order; retry", code="VPOP-503-BUSY")
    busy.status = 503
    raise busy


def request_reconcile(router: str, actor: str, url: str | None = None) -> None:
    """NOC staff ask for a reconcile of ``router`` now: audited, then announced
    (:data:`~vpop.selection.signals.reconcile_requested`; the wiring queues it)."""
    with session_scope(url) as session:
        audit(session, actor, "reconcile.request", f"router:{router}")
    emit(reconcile_requested, router)


def _replay(session: Session, caller: Caller, key: str, body_hash: str) -> Order | None:
    record = session.scalars(
        select(IdempotencyRecord).where(
            IdempotencyRecord.scope == caller.name, IdempotencyRecord.key == key
        )
    ).first()
    if record is None:
        return None
    if record.body_hash != body_hash:
        raise IdempotencyConflict(
            f"idempotency key {key!r} was already used with a different request body"
        )
    order = session.get(Order, record.order_id)
    assert order is not None
    return order


def order_view(order: Order, *, whole_diff: bool = False) -> dict[str, Any]:
    """The public JSON shape of an order (:class:`~vpop.selection.schemas.Order`).

    Args:
        order: The order, in an open session (its line is read for the diff).
        whole_diff: Show the run's whole diff (operators: roles admin and noc). Everyone
            else sees only the stanzas and config lines of the order's own line
            (:func:`~vpop.selection.diffs.line_diff`): coalesced orders share one run.
    """
    diff = order.diff
    if not whole_diff and diff:
        line = order.line
        diff = line_diff(diff, line_names(line.interface, line.prefix, line.subscriber_id))
    return {
        "order": order.id,
        "status": order.status,
        "line": order.line_id,
        "router": order.router,
        "isp": order.isp_id,
        "dry_run": order.dry_run,
        "requester": order.requester,
        "run": order.run_id,
        "diff": diff,
        "error": order.error,
        "callback": order.callback_status,
        "coa": order.coa_result,
        "created_at": order.created_at.isoformat() if order.created_at else None,
        "started_at": order.started_at.isoformat() if order.started_at else None,
        "finished_at": order.finished_at.isoformat() if order.finished_at else None,
        "final": order.status in FINAL_STATUSES,
        "consent_expires_at": iso(order.consent_expires_at),
        "consented_by": order.consented_by,
    }
