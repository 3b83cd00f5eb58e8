"""Small databases the tests share: written once, so their fixtures cannot drift apart."""

from __future__ import annotations

from vpop.catalogue.models import Isp, Line, Plan, Subscriber
from vpop.core.db import session_scope
from vpop.core.migrate import upgrade


def migrated_with_sub1(url: str) -> str:
    """Migrate ``url`` and add isp-a (one plan) and sub1's line on rc1; return ``url``."""
    upgrade(url)
    with session_scope(url) as session:
        session.add(Isp(id="isp-a", name="ISP A", outbound_deny=[]))
        session.add(Subscriber(id="sub1", name="sub1", profile={}))
        session.flush()
        session.add(Plan(isp_id="isp-a", name="F", speed_mbps=5, monthly_price_minor=1))
        session.add(
            Line(
                subscriber_id="sub1",
                router="rc1",
                interface="sub1",
                prefix="192.0.2.2/32",
                gateway="192.0.2.1/30",
                calling_number="+31205550001",
            )
        )
    return url
