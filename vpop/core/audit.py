"""The audit log: who changed what, when. One row per action (``actor``, ``action``, the object
and its details as JSON), written in the same transaction as the change it records, so the log
never claims a change that was rolled back nor misses one that was committed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Integer,
    String,
)
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.orm import (
    Mapped,
    Session,
    mapped_column,
)

from vpop.core.db import Base, UTCDateTime
from vpop.core.prepared import Prepared
from vpop.core.time import utcnow


class AuditEntry(Base):
    """Who changed what, when."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(50))
    object: Mapped[str] = mapped_column(String(100))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


def audit(session: Session, actor: str, action: str, obj: str, **details: Any) -> None:
    """Add an audit entry to the session's transaction."""
    session.add(AuditEntry(actor=actor, action=action, object=obj, details=details))


_INSERT_AUDIT = Prepared.inserting(AuditEntry, ("at", "actor", "action", "object", "details"))


def audit_on(
    cursor: Any,
    dialect: Dialect,
    actor: str,
    action: str,
    obj: str,
    details: dict[str, Any],
    at: datetime | None = None,
) -> None:
    """:func:`audit` as a plain statement on a driver ``cursor``, inside the caller's write
    transaction (the hot paths' transactions, :mod:`vpop.core.prepared`)."""
    row = {
        "at": at or utcnow(),
        "actor": actor,
        "action": action,
        "object": obj,
        "details": details,
    }
    _INSERT_AUDIT.run(cursor, dialect, row)
