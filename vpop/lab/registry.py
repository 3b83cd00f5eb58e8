"""Register the lab's ISPs, subscribers and lines in the database.

A fresh lab has fresh routers with no selections, so the lab's lines lose theirs: the
database then says what the routers say (every subscriber on the default ISP), and their open
service sessions end (``line-removed``): the service they recorded stopped with the old lab.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select

from vpop.accounting.service import end_line
from vpop.catalogue.service import Isp, Line, Plan, Selection, Subscriber
from vpop.core.audit import audit
from vpop.core.db import session_scope
from vpop.core.migrate import upgrade
from vpop.core.time import utcnow

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
        routers = {line["router"] for line in state["lines"]}
        lab_lines = session.scalars(select(Line.id).where(Line.router.in_(routers))).all()
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
                line = Line(router=entry["router"], interface=entry["interface"])
                session.add(line)
            line.subscriber_id = entry["subscriber"]
            line.prefix = entry["prefix"]
            line.gateway = entry["gateway"]
            line.calling_number = entry["calling_number"]
            line.circuit_id = entry["circuit_id"]
        audit(session, "lab", "lab.register", "lab", lines=len(state["lines"]))
