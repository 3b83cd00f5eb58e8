"""Leased locks in the database: held across processes and hosts, lost when the holder dies.

A lock is a row per name (``router:rc1``, ``monitor:probes:rc1``). Taking it writes the
holder, a lease end (``expires_at``) and a new fencing token (one more than the last); the
holder renews the lease while it works and clears it when it is done. A holder that dies
stops renewing, so its lock is free again once the lease ends. The token only grows: a late
writer whose lease ended sees a newer token and must not act.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from vpop.core.db import Base, UTCDateTime


class Lock(Base):
    """One named lock: who holds it, until when, and its fencing token."""

    __tablename__ = "locks"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(200), default=None)
    token: Mapped[int] = mapped_column(BigInteger, default=0)
    acquired_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
