"""Business state: SQLAlchemy 2 models, the engine and sessions.

SQLite (WAL mode, busy timeout) by default, any URL in ``VPOP_DATABASE_URL`` otherwise
(PostgreSQL is supported: only portable SQL here). Money is integer minor units. Times are
timezone-aware UTC. The schema is created by Alembic (``vpop db upgrade``), never by
``create_all`` outside tests.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    sessionmaker,
)

from vpop.settings import load_settings


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, whatever the database.

    SQLite keeps no time zone: what it returns is naive, and is UTC by construction here.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base of every vpop model."""

    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON}


class OrderStatus(enum.StrEnum):
    """The life of an order (see docs/orders.md)."""

    RECEIVED = "RECEIVED"
    RUNNING = "RUNNING"
    DONE_SUCCESS = "DONE_SUCCESS"
    DONE_FAILED = "DONE_FAILED"
    UNKNOWN = "UNKNOWN"
    RECONCILED = "RECONCILED"


FINAL_STATUSES = {OrderStatus.DONE_SUCCESS, OrderStatus.DONE_FAILED, OrderStatus.RECONCILED}


class RunStatus(enum.StrEnum):
    """The outcome of one Nornir run against one router."""

    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    UNKNOWN = "UNKNOWN"


class Role(enum.StrEnum):
    """Roles of API tokens."""

    ADMIN = "admin"
    NOC = "noc"
    PORTAL = "portal"
    ISP = "isp"


class Isp(Base):
    """A provider reachable through the routing centre."""

    __tablename__ = "isps"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    callback_url: Mapped[str | None] = mapped_column(String(500), default=None)
    # destinations this ISP does not carry (its outbound filter list), canonical prefixes
    outbound_deny: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    plans: Mapped[list[Plan]] = relationship(back_populates="isp", order_by="Plan.id")


class Plan(Base):
    """An ISP's offer: speed and monthly price (integer minor units)."""

    __tablename__ = "plans"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    isp_id: Mapped[str] = mapped_column(ForeignKey("isps.id"))
    name: Mapped[str] = mapped_column(String(100))
    speed_mbps: Mapped[int] = mapped_column(Integer)
    monthly_price_minor: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3), default="EUR")
    isp: Mapped[Isp] = relationship(back_populates="plans")


class Subscriber(Base):
    """A person or site; reaches the routing centre through one or more lines."""

    __tablename__ = "subscribers"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    profile: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    lines: Mapped[list[Line]] = relationship(back_populates="subscriber", order_by="Line.id")


class Line(Base):
    """Where a subscriber attaches: router + interface + the subscriber's prefix."""

    __tablename__ = "lines"
    __table_args__ = (UniqueConstraint("router", "interface"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[str] = mapped_column(ForeignKey("subscribers.id"))
    router: Mapped[str] = mapped_column(String(64))
    interface: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(64))
    # router's address on the line, interface form (198.51.100.1/30); None when unnumbered
    gateway: Mapped[str | None] = mapped_column(String(64), default=None)
    calling_number: Mapped[str | None] = mapped_column(String(20), unique=True, default=None)
    circuit_id: Mapped[str | None] = mapped_column(String(100), unique=True, default=None)
    access_id: Mapped[str | None] = mapped_column(String(100), unique=True, default=None)
    subscriber: Mapped[Subscriber] = relationship(back_populates="lines")
    selection: Mapped[Selection | None] = relationship(back_populates="line")


class Selection(Base):
    """The ISP a line currently uses, as confirmed on the router."""

    __tablename__ = "selections"
    line_id: Mapped[int] = mapped_column(ForeignKey("lines.id"), primary_key=True)
    isp_id: Mapped[str] = mapped_column(ForeignKey("isps.id"))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), default=None)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    line: Mapped[Line] = relationship(back_populates="selection")


class Run(Base):
    """One Nornir execution against one router."""

    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    router: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # selection | reconcile | dry_run
    trigger: Mapped[str] = mapped_column(String(100))  # what started it: order ids, schedule
    requester: Mapped[str] = mapped_column(String(100))
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.RUNNING.value)
    diff: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # per host
    timings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class Order(Base):
    """One request to change a line's selection."""

    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("lines.id"), index=True)
    isp_id: Mapped[str] = mapped_column(ForeignKey("isps.id"))
    router: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), default=OrderStatus.RECEIVED.value, index=True)
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    requester: Mapped[str] = mapped_column(String(100))
    callback_url: Mapped[str | None] = mapped_column(String(500), default=None)
    callback_status: Mapped[str | None] = mapped_column(String(100), default=None)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"), default=None)
    diff: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    line: Mapped[Line] = relationship()
    run: Mapped[Run | None] = relationship()


class IdempotencyRecord(Base):
    """A request key, scoped to its caller, and the order it created."""

    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("scope", "key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[str] = mapped_column(String(100))
    key: Mapped[str] = mapped_column(String(200))
    body_hash: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ApiToken(Base):
    """A bearer token, stored as a SHA-256 hash; the clear token is shown once."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    isp_id: Mapped[str | None] = mapped_column(ForeignKey("isps.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class AuditEntry(Base):
    """Who changed what, when."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(50))
    object: Mapped[str] = mapped_column(String(100))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Lease(Base):
    """Infrastructure leased to an ISP: an uplink port on a router at a committed rate.

    The uplink is shaped to ``committed_mbps * peak_pct / 100`` (a burstable lease), so use
    above the committed rate is possible, measurable and reported as over-utilisation.
    """

    __tablename__ = "leases"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    isp_id: Mapped[str] = mapped_column(ForeignKey("isps.id"), index=True)
    router: Mapped[str] = mapped_column(String(64))
    uplink: Mapped[str] = mapped_column(String(64))
    committed_mbps: Mapped[int] = mapped_column(Integer)
    peak_pct: Mapped[int] = mapped_column(Integer, default=125)
    price_minor: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3), default="EUR")
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # event rules: below under_pct (or above over_pct) for event_seconds opens an event;
    # it closes after event_seconds back inside the band by hysteresis_pct
    under_pct: Mapped[int] = mapped_column(Integer, default=10)
    over_pct: Mapped[int] = mapped_column(Integer, default=100)
    hysteresis_pct: Mapped[int] = mapped_column(Integer, default=5)
    event_seconds: Mapped[int] = mapped_column(Integer, default=60)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class CounterSample(Base):
    """One poll of one counter series (an interface, or a line's nftables counters): the raw
    counters as read, and the rates since the previous poll (wraps, resets and gaps handled;
    no rates on the first poll or a duplicate)."""

    __tablename__ = "counter_samples"
    # time only: a poll appends ~400 rows of different series, and a (series, time) index
    # turned each into a random B-tree insert (most of a poll's cost); series are read by
    # time window first (recent state, reports, retention)
    __table_args__ = (Index("ix_counter_at", "at"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    router: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # interface | line
    name: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    rx_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    tx_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    rx_packets: Mapped[int] = mapped_column(BigInteger, default=0)
    tx_packets: Mapped[int] = mapped_column(BigInteger, default=0)
    errors: Mapped[int] = mapped_column(BigInteger, default=0)
    drops: Mapped[int] = mapped_column(BigInteger, default=0)
    seconds: Mapped[float | None] = mapped_column(Float, default=None)
    rx_bps: Mapped[float | None] = mapped_column(Float, default=None)
    tx_bps: Mapped[float | None] = mapped_column(Float, default=None)
    rx_pps: Mapped[float | None] = mapped_column(Float, default=None)
    tx_pps: Mapped[float | None] = mapped_column(Float, default=None)
    new_errors: Mapped[int | None] = mapped_column(BigInteger, default=None)
    new_drops: Mapped[int | None] = mapped_column(BigInteger, default=None)
    note: Mapped[str | None] = mapped_column(String(16), default=None)  # wrap|reset|gap|...


class QosSample(Base):
    """An ISP's measured quality through its routing instance on one router."""

    __tablename__ = "qos_samples"
    __table_args__ = (Index("ix_qos_isp_at", "isp_id", "at"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    isp_id: Mapped[str] = mapped_column(ForeignKey("isps.id"))
    router: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    latency_ms: Mapped[float | None] = mapped_column(Float, default=None)
    jitter_ms: Mapped[float | None] = mapped_column(Float, default=None)
    loss_pct: Mapped[float | None] = mapped_column(Float, default=None)
    throughput_mbps: Mapped[float | None] = mapped_column(Float, default=None)
    sent: Mapped[int] = mapped_column(Integer, default=0)
    received: Mapped[int] = mapped_column(Integer, default=0)


class UtilisationSample(Base):
    """A lease's rate over its committed rate at one poll."""

    __tablename__ = "utilisation_samples"
    __table_args__ = (Index("ix_util_lease_at", "lease_id", "at"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    lease_id: Mapped[int] = mapped_column(ForeignKey("leases.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    rate_mbps: Mapped[float] = mapped_column(Float)
    utilisation_pct: Mapped[float] = mapped_column(Float)


class UtilisationEvent(Base):
    """An under- or over-utilisation episode of a lease."""

    __tablename__ = "utilisation_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    lease_id: Mapped[int] = mapped_column(ForeignKey("leases.id"), index=True)
    isp_id: Mapped[str] = mapped_column(ForeignKey("isps.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8))  # under | over
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    extreme_pct: Mapped[float] = mapped_column(Float)  # peak (over) or lowest (under)
    callback_status: Mapped[str | None] = mapped_column(String(100), default=None)


class Rollup(Base):
    """A 5-minute aggregate of a series, kept longer than raw samples."""

    __tablename__ = "rollups"
    __table_args__ = (UniqueConstraint("series", "bucket"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    series: Mapped[str] = mapped_column(String(120))
    bucket: Mapped[datetime] = mapped_column(UTCDateTime())
    count: Mapped[int] = mapped_column(Integer)
    total: Mapped[float] = mapped_column(Float)
    minimum: Mapped[float] = mapped_column(Float)
    maximum: Mapped[float] = mapped_column(Float)


class PollLog(Base):
    """One monitoring job's poll of one router: how long, and whether it worked."""

    __tablename__ = "poll_log"
    __table_args__ = (Index("ix_poll_job_at", "job", "at"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job: Mapped[str] = mapped_column(String(32))
    router: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    seconds: Mapped[float] = mapped_column(Float)
    ok: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(Text, default=None)


class User(Base):
    """A person who signs in to the NOC pages (roles ``noc`` or ``admin``)."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


def audit(session: Session, actor: str, action: str, obj: str, **details: Any) -> None:
    """Add an audit entry to the session's transaction."""
    session.add(AuditEntry(actor=actor, action=action, object=obj, details=details))


_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def get_engine(url: str | None = None) -> Engine:
    """One engine per URL for the process (SQLite gets WAL and a busy timeout)."""
    url = url or load_settings().database_url
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            if url.startswith("sqlite:///"):
                Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
                engine = create_engine(url, connect_args={"timeout": 30})
                event.listen(engine, "connect", _sqlite_pragmas)
            else:
                engine = create_engine(url, pool_pre_ping=True)
            _engines[url] = engine
        return engine


def dispose_engines() -> None:
    """Close every pooled connection (tests, forks)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """One transaction: committed when the block ends, rolled back on error."""
    factory = sessionmaker(get_engine(url), expire_on_commit=False)
    with factory() as session, session.begin():
        yield session
