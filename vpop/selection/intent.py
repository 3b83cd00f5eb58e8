"""A router's intended state: a pure function of the database and the inventory.

The shape is documented in docs/selection.md; the templates render it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vpop.catalogue.service import Isp, Line, Selection
from vpop.core.errors import ConfigError

INSTANCE_PREFIX = "vpop-"


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
    isps = {isp.id: isp for isp in session.scalars(select(Isp))}
    check_uplinks(router, uplinks, overrides.values())
    isp_entries = [
        {
            "id": isp_id,
            "instance": INSTANCE_PREFIX + isp_id,
            "interface": up["interface"],
            "address": up["address"],
            "next_hop": up["next_hop"],
            "outbound_deny": sorted(isps[isp_id].outbound_deny or []),
        }
        for isp_id, up in sorted(uplinks.items())
        if isp_id in isps
    ]
    lines = []
    # each line with its confirmed selection's ISP (None without one), in one query
    rows = session.execute(
        select(Line, Selection.isp_id)
        .outerjoin(Selection, Selection.line_id == Line.id)
        .where(Line.router == router)
        .order_by(Line.interface)
    )
    for line, selected in rows:
        isp = overrides.get(line.id, selected)
        lines.append(
            {
                "subscriber": line.subscriber_id,
                "interface": line.interface,
                "policy": INSTANCE_PREFIX + line.interface,
                "prefix": line.prefix,
                "gateway": line.gateway,
                "isp": isp,
            }
        )
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
