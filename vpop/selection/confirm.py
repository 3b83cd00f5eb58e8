"""A confirmed selection: the line's selection row and its service session, cut at the
counters read right after the push (so accounting splits a moved line's traffic where the
router moved it, not in proportion to time)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, update
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.orm import Session

from tasks.collect import counter_names
from vpop.accounting.service import LineSwitch, switch_lines_on
from vpop.catalogue.service import Selection
from vpop.core.prepared import Prepared, session_cursor
from vpop.core.time import utcnow
from vpop.selection.models import Order

log = logging.getLogger(__name__)

#: When the lines' counters were read, and per interface their raw values (bytes in,
#: bytes out, packets in, packets out).
Cut = tuple[datetime, dict[str, tuple[int, int, int, int]]]


def cut_at(
    at: datetime, named: dict[str, list[int]] | None, router: str, interfaces: Iterable[str]
) -> Cut | None:
    """The router's line counters as the push's read-back found them (``named``: the
    accounting table's named counters, read in the same round trip that verified the push,
    :func:`tasks.deploy.deploy_config`): where accounting cuts a moved line's traffic between
    its old and its new session. None when they could not be read (the move is then shared
    out by time at the next poll); never fails the run."""
    if named is None:
        log.warning("%s: counters not read after the push", router)
        return None
    counted: dict[str, tuple[int, int, int, int]] = {}
    for interface in interfaces:  # the router's lines, as the run's intent listed them
        up, down = (named.get(n) for n in counter_names(interface))
        if up is not None and down is not None:
            counted[interface] = (up[1], down[1], up[0], down[0])
    return at, counted


@dataclass(frozen=True)
class Confirmed:
    """A done order's line, as the closing transaction confirms it (:func:`confirm_on`)."""

    order_id: int
    line_id: int
    isp_id: str
    subscriber_id: str
    router: str
    interface: str


_SELECTION = Selection.__table__.c
_UPDATE_SELECTION = Prepared(
    update(Selection)
    .where(Selection.line_id == bindparam("line_id"))
    .values(isp_id=bindparam("isp_id"), order_id=bindparam("order_id"), updated_at=bindparam("at")),
    {"at": _SELECTION.updated_at.type},
)
_INSERT_SELECTION = Prepared(
    insert(Selection).values(
        line_id=bindparam("line_id"),
        isp_id=bindparam("isp_id"),
        order_id=bindparam("order_id"),
        updated_at=bindparam("at"),
    ),
    {"at": _SELECTION.updated_at.type},
)


def confirm_on(
    cursor: Any, dialect: Dialect, confirmed: Sequence[Confirmed], cut: Cut | None
) -> None:
    """Record each line's selection as the router now has it, and its service session (cut at
    the counters read after the push, when they were), on a driver ``cursor`` inside the
    caller's write transaction."""
    now = utcnow()
    switches: list[LineSwitch] = []
    for done in confirmed:
        params = {
            "line_id": done.line_id,
            "isp_id": done.isp_id,
            "order_id": done.order_id,
            "at": now,
        }
        if _UPDATE_SELECTION.run(cursor, dialect, params).rowcount == 0:
            _INSERT_SELECTION.run(cursor, dialect, params)
        counters = cut[1].get(done.interface) if cut is not None else None
        line_cut = (cut[0], counters) if cut is not None and counters is not None else None
        switches.append(
            LineSwitch(
                done.line_id,
                done.subscriber_id,
                done.router,
                done.interface,
                done.isp_id,
                done.order_id,
                line_cut,
            )
        )
    switch_lines_on(cursor, dialect, switches, now)


def confirm_selection(session: Session, order: Order, cut: Cut | None = None) -> None:
    """:func:`confirm_on` for one order, inside an ORM session's transaction."""
    line = order.line
    done = Confirmed(
        order.id, order.line_id, order.isp_id, line.subscriber_id, line.router, line.interface
    )
    with session_cursor(session, writes=True) as (cursor, dialect):
        confirm_on(cursor, dialect, [done], cut)
    session.expire_all()  # the selection and the line's sessions changed under the session
