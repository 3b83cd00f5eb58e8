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
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.engine.interfaces import Dialect

from vpop.catalogue.service import Isp, Line, Selection, Subscriber
from vpop.core.audit import audit, audit_on
from vpop.core.db import get_engine, session_scope
from vpop.core.errors import BadInput, NotFound, VpopError
from vpop.core.group_commit import group_for
from vpop.core.prepared import Prepared, raw_transaction
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


@dataclass(frozen=True)
class Accepted:
    """An order as :func:`submit_selection` answers it (read the rest with ``Order``)."""

    id: int
    status: str
    router: str
    line_id: int
    isp_id: str
    dry_run: bool
    consent_expires_at: datetime | None = None


_ORDER_COLUMNS = (
    "line_id",
    "isp_id",
    "router",
    "status",
    "dry_run",
    "requester",
    "callback_url",
    "losing_isp_id",
    "consent_expires_at",
    "created_at",
    "diff",
)
_INSERT_ORDER = Prepared.inserting(Order, _ORDER_COLUMNS, returning=Order.id)
_INSERT_KEY = Prepared.inserting(
    IdempotencyRecord, ("scope", "key", "body_hash", "order_id", "created_at")
)

_REPLAY = Prepared(
    select(
        IdempotencyRecord.body_hash,
        Order.id,
        Order.status,
        Order.router,
        Order.line_id,
        Order.isp_id,
        Order.dry_run,
        Order.consent_expires_at,
    )
    .join(Order, Order.id == IdempotencyRecord.order_id)
    .where(
        IdempotencyRecord.scope == bindparam("scope"), IdempotencyRecord.key == bindparam("key")
    ),
    {},
)
_REPLAY_TYPES = (Order.__table__.c.dry_run.type, Order.__table__.c.consent_expires_at.type)

# the line a request names, the ISP it uses now, and whether the wanted ISP exists
_LINE = select(
    Line.id,
    Line.router,
    Selection.isp_id,
    select(Isp.id).where(Isp.id == bindparam("isp")).scalar_subquery(),
).outerjoin(Selection, Selection.line_id == Line.id)
_LINE_BY = {
    "subscriber": Prepared(
        _LINE.where(Line.subscriber_id == bindparam("value")).order_by(Line.id).limit(1), {}
    ),
    "calling_number": Prepared(_LINE.where(Line.calling_number == bindparam("value")), {}),
    "circuit_id": Prepared(_LINE.where(Line.circuit_id == bindparam("value")), {}),
    "access_id": Prepared(_LINE.where(Line.access_id == bindparam("value")), {}),
}
_SUBSCRIBER = Prepared(select(Subscriber.id).where(Subscriber.id == bindparam("subscriber")), {})


def submit_selection(
    req: SelectionRequest, caller: Caller, idempotency_key: str | None, url: str | None = None
) -> tuple[Accepted, bool]:
    """Accept an order: the order row (which is also its queue entry: workers run RECEIVED
    orders, :mod:`vpop.jobs.dispatch`), its idempotency record and its audit entry are
    written in one short transaction, after the reads that decide it. With the other
    requests of this process accepted at the same moment, the reads and writes are made by
    one thread in one transaction under one hold of the write gate
    (:mod:`vpop.core.group_commit`).

    Returns:
        The order and whether it was created now (False for a replay).

    Raises:
        NotFound, Forbidden, IdempotencyConflict, BadInput.
    """
    engine = get_engine(url)
    accept = partial(_accept, req, caller, idempotency_key, req.body_hash())
    for _attempt in range(3):
        try:
            return group_for(engine).run(
                engine, accept, refusals=(VpopError,), after=_announce_accepted
            )
        except engine.dialect.dbapi.IntegrityError:  # type: ignore[union-attr]
            continue  # a concurrent request with the same key won: replay it
    busy = VpopError("could not record the order; retry", code="VPOP-503-BUSY")
    busy.status = 503
    raise busy


def _announce_accepted(accepted: list[tuple[Accepted, bool]]) -> None:
    """Announce the routers of new orders to run, once each (:data:`order_accepted`: the
    workers are woken), for the orders of one committed batch."""
    received = OrderStatus.RECEIVED.value
    routers = {order.router for order, new in accepted if new and order.status == received}
    for router in sorted(routers):
        emit(order_accepted, router)


def _accept(
    req: SelectionRequest,
    caller: Caller,
    idempotency_key: str | None,
    body_hash: str,
    cursor: Any,
    dialect: Dialect,
) -> tuple[Accepted, bool]:
    """Decide and write one order (or find the one its key made); the order and whether it
    is new. Refuses (NotFound, Forbidden, IdempotencyConflict, BadInput) before any write."""
    if idempotency_key is not None:
        existing = _replay(cursor, dialect, caller, idempotency_key, body_hash)
        if existing is not None:
            return existing, False
    line_id, router, current = _find_line(cursor, dialect, req)
    if caller.role == "isp" and caller.isp != req.isp:
        raise Forbidden(f"an ISP token for {caller.isp!r} cannot select {req.isp!r}")
    pending = needs_consent(caller.role, caller.isp, current, req.isp)
    now = utcnow()
    order = Accepted(
        id=0,
        status=(OrderStatus.PENDING_CONSENT if pending else OrderStatus.RECEIVED).value,
        router=router,
        line_id=line_id,
        isp_id=req.isp,
        dry_run=req.dry_run,
        consent_expires_at=now + CONSENT_TTL if pending else None,
    )
    order_id = _insert(cursor, dialect, order, req, caller, current, now)
    if idempotency_key is not None:
        _INSERT_KEY.run(
            cursor,
            dialect,
            {
                "scope": caller.name,
                "key": idempotency_key,
                "body_hash": body_hash,
                "order_id": order_id,
                "created_at": now,
            },
        )
    return replace(order, id=order_id), True


def _insert(
    cursor: Any,
    dialect: Dialect,
    order: Accepted,
    req: SelectionRequest,
    caller: Caller,
    current: str | None,
    now: datetime,
) -> int:
    """Insert the order and its audit entry; return the order's id."""
    params = {
        "line_id": order.line_id,
        "isp_id": order.isp_id,
        "router": order.router,
        "status": order.status,
        "dry_run": req.dry_run,
        "requester": caller.name,
        "callback_url": req.callback_url,
        "losing_isp_id": current if current != order.isp_id and not req.dry_run else None,
        "consent_expires_at": order.consent_expires_at,
        "created_at": now,
        "diff": "",
    }
    order_id = int(_INSERT_ORDER.run(cursor, dialect, params).fetchone()[0])
    pending = order.status == OrderStatus.PENDING_CONSENT
    audit_on(
        cursor,
        dialect,
        caller.name,
        "order.request" if pending else "order.create",
        f"order:{order_id}",
        {"line": order.line_id, "isp": order.isp_id, "dry_run": req.dry_run},
        at=now,
    )
    return order_id


def _find_line(cursor: Any, dialect: Dialect, req: SelectionRequest) -> tuple[int, str, str | None]:
    """The line a request names: (id, router, the ISP it uses now or None).

    Raises:
        NotFound: no such subscriber, line or ISP.
    """
    for field in ("subscriber", "calling_number", "circuit_id", "access_id"):
        value = getattr(req, field)
        if value is not None:
            break
    else:
        raise BadInput("name the line: subscriber, calling_number, circuit_id or access_id")
    row = _LINE_BY[field].run(cursor, dialect, {"value": value, "isp": req.isp}).fetchone()
    if row is None:
        if field == "subscriber":
            known = _SUBSCRIBER.run(cursor, dialect, {"subscriber": value}).fetchone()
            if known is None:
                raise NotFound(f"unknown subscriber {value!r}", code="VPOP-404-SUBSCRIBER")
        raise NotFound("no line matches the given identifier", code="VPOP-404-LINE")
    if row[3] is None:
        raise NotFound(f"unknown ISP {req.isp!r}", code="VPOP-404-ISP")
    return int(row[0]), str(row[1]), row[2]


def request_reconcile(router: str, actor: str, url: str | None = None) -> None:
    """NOC staff ask for a reconcile of ``router`` now: audited, then announced
    (:data:`~vpop.selection.signals.reconcile_requested`; the wiring queues it)."""
    with session_scope(url) as session:
        audit(session, actor, "reconcile.request", f"router:{router}")
    emit(reconcile_requested, router)


def _replay(
    cursor: Any, dialect: Dialect, caller: Caller, key: str, body_hash: str
) -> Accepted | None:
    row = _REPLAY.run(cursor, dialect, {"scope": caller.name, "key": key}).fetchone()
    if row is None:
        return None
    if row[0] != body_hash:
        raise IdempotencyConflict(
            f"idempotency key {key!r} was already used with a different request body"
        )
    as_bool, as_time = (
        t.dialect_impl(dialect).result_processor(dialect, None) for t in _REPLAY_TYPES
    )
    return Accepted(
        id=int(row[1]),
        status=str(row[2]),
        router=str(row[3]),
        line_id=int(row[4]),
        isp_id=str(row[5]),
        dry_run=bool(as_bool(row[6]) if as_bool else row[6]),
        consent_expires_at=as_time(row[7]) if as_time else row[7],
    )


_VIEWED = (
    "id",
    "line_id",
    "isp_id",
    "router",
    "status",
    "dry_run",
    "requester",
    "callback_status",
    "run_id",
    "diff",
    "error",
    "created_at",
    "started_at",
    "finished_at",
    "consent_expires_at",
    "consented_by",
    "coa_result",
)
_ORDER_WITH_LINE = Prepared(
    select(
        *(getattr(Order, name) for name in _VIEWED),
        Line.interface,
        Line.prefix,
        Line.subscriber_id,
    )
    .join(Line, Line.id == Order.line_id)
    .where(Order.id == bindparam("order")),
    {},
)


def read_order(order_id: int, url: str | None = None) -> Order | None:
    """The order with what :func:`order_view` shows of it and of its line, as a detached
    object (one plain read: a long-poll reads its order at least twice), or None.

    The object is for reading only: it belongs to no session, and changing it changes
    nothing in the database."""
    with raw_transaction(get_engine(url)) as (cursor, dialect):
        rows = _ORDER_WITH_LINE.rows(cursor, dialect, {"order": order_id})
    if not rows:
        return None
    row = rows[0]
    fields = dict(zip(_VIEWED, row, strict=False))
    interface, prefix, subscriber = row[len(_VIEWED) :]
    line = Line(id=fields["line_id"], interface=interface, prefix=prefix, subscriber_id=subscriber)
    return Order(**fields, line=line)


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
