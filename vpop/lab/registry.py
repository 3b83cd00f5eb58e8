"""Register the lab's ISPs, subscribers and lines in the database.

A fresh lab has fresh routers with no selections, so the lab's lines lose theirs: the
database then says what the routers say (every subscriber on the default ISP), and their open
service sessions end (``line-removed``): the service they recorded stopped with the old lab.

A lab of another router count puts a subscriber on another router (``sub3`` is on ``rc1`` with
2 routers, on ``rc3`` with 4): its lab line (interface named after the subscriber, on a router
``rcN``) moves with it, keeping its id and history, instead of a second line being made.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import delete, select

from vpop.accounting.service import end_line
from vpop.catalogue.service import Isp, Line, Plan, Selection, Subscriber
from vpop.core.audit import audit
from vpop.core.db import session_scope
from vpop.core.migrate import upgrade
from vpop.core.time import utcnow

LAB_ROUTER = re.compile(r"rc\d+")
LAB_ISPS = {
    "isp-a": ("ISP A", [("Basic 100", 100, 2900)]),
    "isp-b": ("ISP B", [("Fibre 500", 500, 4500), ("Fibre 1000", 1000, 6500)]),
    "isp-c": ("ISP C", [("Value 50", 50, 1900)]),
}


def register_lab(state: dict[str, Any], url: str | None = None) -> None:
    """Upsert the lab's ISPs, plans, subscribers and lines; clear the lab lines' selections."""
    upgrade(url)
    with session_scope(url) as session:
        for isp_id, (name, plans) in LAB_ISPS.items():
            isp = session.get(Isp, isp_id)
            if isp is None:
                isp = Isp(id=isp_id, name=name, outbound_deny=[])
                session.add(isp)
                session.flush()
                for plan, speed, price in plans:
                    session.add(
                        Plan(isp_id=isp_id, name=plan, speed_mbps=speed, monthly_price_minor=price)
                    )
        # every router of the lab (2..8), also one that has no subscriber line
        routers = {line["router"] for line in state["lines"]} | {
            name for name, node in state.get("nodes", {}).items() if node.get("kind") == "router"
        }
        # the lab subscribers' own lines, wherever an earlier lab put them
        subscribers = {entry["subscriber"] for entry in state["lines"]}
        movable = {
            line.subscriber_id: line
            for line in session.scalars(
                select(Line).where(
                    Line.subscriber_id.in_(subscribers), Line.interface == Line.subscriber_id
                )
            )
            if LAB_ROUTER.fullmatch(line.router)
        }
        lab_lines = sorted(
            {*session.scalars(select(Line.id).where(Line.router.in_(routers)))}
            | {line.id for line in movable.values()}
        )
        session.execute(delete(Selection).where(Selection.line_id.in_(lab_lines)))
        now = utcnow()
        for line_id in lab_lines:
            end_line(session, line_id=line_id, at=now, reason="line-removed")
        for entry in state["lines"]:
            sub = session.get(Subscriber, entry["subscriber"])
            if sub is None:
                session.add(
                    Subscriber(id=entry["subscriber"], name=entry["subscriber"], profile={})
                )
                session.flush()
            line = session.scalars(
                select(Line).where(
                    Line.router == entry["router"], Line.interface == entry["interface"]
                )
            ).first()
            if line is None:
                line = movable.get(entry["subscriber"])
            if line is None:
                line = Line(router=entry["router"], interface=entry["interface"])
                session.add(line)
            line.router = entry["router"]
            line.interface = entry["interface"]
            line.subscriber_id = entry["subscriber"]
            line.prefix = entry["prefix"]
            line.gateway = entry["gateway"]
            line.calling_number = entry["calling_number"]
            line.circuit_id = entry["circuit_id"]
        audit(session, "lab", "lab.register", "lab", lines=len(state["lines"]))
