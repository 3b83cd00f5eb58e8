"""A router's intended state: a pure function of the database and the inventory.

The shape is documented in docs/selection.md; the templates render it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from vpop.catalogue.service import Isp, Line, Selection
from vpop.core.errors import ConfigError
from vpop.core.prepared import Prepared, session_cursor

INSTANCE_PREFIX = "vpop-"

# the two reads of an intent, as plain statements (every run builds one: through the ORM's
# loading they took most of a millisecond)
_ISPS = Prepared(select(Isp.id, Isp.outbound_deny), {})
# each line of the router with its confirmed selection's ISP (None without one)
_LINES = Prepared(
    select(
        Line.id,
        Line.subscriber_id,
        Line.interface,
        Line.prefix,
        Line.gateway,
        Selection.isp_id,
    )
    .outerjoin(Selection, Selection.line_id == Line.id)
    .where(Line.router == bindparam("router"))
    .order_by(Line.interface),
    {},
)


def build_intent(
    session: Session,
    router: str,
    platform: str,
    uplinks: Mapping[str, Mapping[str, str]],
    overrides: Mapping[int, str] | None = None,
) -> dict[str, Any]:
    """The intended state of ``router``.

    Args:
        session: database session (read only).
        router: inventory name of the router.
        platform: ``frr``, ``ios`` or ``junos``.
        uplinks: the router's inventory ``uplinks`` (ISP id -> interface, address, next_hop).
        overrides: line id -> ISP id for the orders being applied in this run (their lines
            use that ISP instead of their confirmed selection).
    """
    overrides = overrides or {}
    with session_cursor(session, writes=False) as (cursor, dialect):
        denied = dict(_ISPS.rows(cursor, dialect, {}))
        rows = _LINES.rows(cursor, dialect, {"router": router})
    check_uplinks(router, uplinks, overrides.values())
    isp_entries = [
        {
            "id": isp_id,
            "instance": INSTANCE_PREFIX + isp_id,
            "interface": up["interface"],
            "address": up["address"],
            "next_hop": up["next_hop"],
            "outbound_deny": sorted(denied[isp_id] or []),
        }
        for isp_id, up in sorted(uplinks.items())
        if isp_id in denied
    ]
    lines = [
        {
            "subscriber": subscriber,
            "interface": interface,
            "policy": INSTANCE_PREFIX + interface,
            "prefix": prefix,
            "gateway": gateway,
            "isp": overrides.get(line_id, selected),
        }
        for line_id, subscriber, interface, prefix, gateway, selected in rows
    ]
    return {"router": router, "platform": platform, "isps": isp_entries, "lines": lines}


def check_uplinks(router: str, uplinks: Mapping[str, Any], isps: Iterable[str]) -> None:
    """Refuse ISPs the router has no uplink to (a line cannot be routed through them).

    Raises:
        ConfigError: naming the router and the ISPs.
    """
    unknown = set(isps) - set(uplinks)
    if unknown:
        raise ConfigError(f"{router} has no uplink to {sorted(unknown)}")


def with_line_isp(intent: dict[str, Any], interface: str, isp_id: str) -> dict[str, Any]:
    """``intent`` with the line on ``interface`` routed through ``isp_id`` (what
    :func:`build_intent`'s ``overrides`` do, on an intent already built)."""
    lines = [
        {**line, "isp": isp_id} if line["interface"] == interface else line
        for line in intent["lines"]
    ]
    return {**intent, "lines": lines}
