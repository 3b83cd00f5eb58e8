"""Shared by the AAA tests: a migrated SQLite database with ISPs, subscribers, lines and NAS
clients (no tests here)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import select

from vpop.aaa.models import RadiusClient
from vpop.catalogue.models import Isp, Line, Subscriber
from vpop.core.audit import AuditEntry
from vpop.core.db import dispose_engines, session_scope
from vpop.core.migrate import upgrade

#: NAS client name -> family
CLIENTS = {
    "bng-accel": "accel-ppp",
    "bng-cisco": "cisco",
    "bng-juniper": "juniper",
    "lab": "generic",
}


def seed(url: str) -> None:
    """isp-a..c; sub1..sub3, each with one line on rc1/rc2 and every RADIUS identifier."""
    upgrade(url)
    with session_scope(url) as session:
        session.add_all(
            [
                Isp(id="isp-a", name="Alpha Net"),
                Isp(id="isp-b", name="Beta Fibre"),
                Isp(id="isp-c", name="Gamma Air"),
            ]
        )
        session.add_all(
            RadiusClient(name=n, address="127.0.0.1", family=f) for n, f in CLIENTS.items()
        )
        session.flush()
        for k, (sub, router) in enumerate([("sub1", "rc1"), ("sub2", "rc2"), ("sub3", "rc1")], 1):
            session.add(Subscriber(id=sub, name=f"Subscriber {k}"))
            session.flush()
            session.add(
                Line(
                    subscriber_id=sub,
                    router=router,
                    interface=sub,
                    prefix=f"192.0.2.{4 * k}/30",
                    calling_number=f"+3120555{k:04d}",
                    circuit_id=f"{router}:{sub}",
                    remote_id=f"remote-{sub}",
                    access_id=f"acc-{sub}",
                    user_name=f"{sub}@isp.example",
                    nas_port_id=f"eth0.{100 + k}",
                )
            )


def seeded_database(tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated, seeded SQLite file under ``tmp_path`` (the body of a fixture)."""
    database = f"sqlite:///{tmp_path}/aaa.sqlite"
    seed(database)
    try:
        yield database
    finally:
        dispose_engines()


def audit_rows(url: str, action: str) -> list[AuditEntry]:
    """The audit entries of ``action``, oldest first."""
    with session_scope(url) as session:
        return list(
            session.scalars(
                select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)
            )
        )


def hexed(text: str) -> str:
    """``text`` as rlm_rest sends an octets attribute: ``0x`` and hex."""
    return "0x" + text.encode().hex()
