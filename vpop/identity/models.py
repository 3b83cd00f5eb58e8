"""Who may call vpop: API tokens (a role, an ISP for ``isp`` tokens, stored as a hash only) and
NOC users (a role and an scrypt password hash), and the roles both use; failed NOC sign-ins,
which every server process counts against the same limit.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    ForeignKey,
    Index,
    Integer,
    String,
)
from sqlalchemy.orm import (
    Mapped,
    mapped_column,
)

from vpop.core.db import Base, UTCDateTime
from vpop.core.time import utcnow


class Role(enum.StrEnum):
    """Roles of API tokens."""

    ADMIN = "admin"
    NOC = "noc"
    PORTAL = "portal"
    ISP = "isp"
    MERCHANT = "merchant"


class ApiToken(Base):
    """A bearer token, stored as a SHA-256 hash; the clear token is shown once."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    isp_id: Mapped[str | None] = mapped_column(ForeignKey("isps.id"), default=None)
    # a merchant token's payee (registered under ``isp_id``)
    merchant_id: Mapped[str | None] = mapped_column(ForeignKey("payees.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class User(Base):
    """A person who signs in to the NOC pages (roles ``noc`` or ``admin``)."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class LoginFailure(Base):
    """One failed NOC sign-in: the user name as typed (never the password) and the address.

    A row per failure, so that server processes recording at the same moment both count; rows
    older than the throttle window are deleted (``vpop/identity/throttle.py``).
    """

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_key_at", "username", "address", "at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
