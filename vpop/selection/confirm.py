"""A confirmed selection: the line's selection row and its service session, cut at the
counters read right after the push (so accounting splits a moved line's traffic where the
router moved it, not in proportion to time)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy.orm import Session

from tasks.collect import counter_names
from vpop.accounting.service import switch_line
from vpop.catalogue.service import Selection
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


def confirm_selection(
    session: Session,
    order: Order,
    cut: Cut | None = None,
) -> None:
    """Record the line's selection as the router now has it, and its service session (cut
    at the counters read after the push, when they were)."""
    now = utcnow()
    counters = cut[1].get(order.line.interface) if cut is not None else None
    line_cut = (cut[0], counters) if cut is not None and counters is not None else None
    selection = session.get(Selection, order.line_id)
    if selection is None:
        session.add(Selection(line_id=order.line_id, isp_id=order.isp_id, order_id=order.id))
    else:
        selection.isp_id = order.isp_id
        selection.order_id = order.id
        selection.updated_at = now
    switch_line(
        session,
        line_id=order.line_id,
        isp_id=order.isp_id,
        at=now,
        order_id=order.id,
        cut=line_cut,
    )
