"""The database: SQLAlchemy's declarative base, engines per URL and sessions.

SQLite by default (WAL, foreign keys on, a busy timeout), PostgreSQL where configured; every
timestamp is stored and read as UTC (:class:`UTCDateTime`). :func:`session_scope` commits on
success and rolls back on error, so a request or a job changes all or nothing.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Engine,
    TypeDecorator,
    create_engine,
    event,
)
from sqlalchemy.orm import (
    DeclarativeBase,
    Session,
    sessionmaker,
)

from vpop.core.settings import load_settings


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


class Base(DeclarativeBase):
    """Declarative base of every vpop model."""

    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON}


_engines: dict[str, Engine] = {}


_lock = threading.Lock()


#: Key in a connection's ``info`` of the function that takes the write gate (write_scope).
_LAZY_GATE = "vpop.lazy_gate"

_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


def _gate_at_first_write(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
    """Before a statement on SQLite: the first write of a :func:`write_scope` takes the gate."""
    if _LAZY_GATE in conn.info and statement.lstrip()[:7].upper().startswith(_WRITES):
        gate_now(conn)


def gate_now(connection: Any) -> None:
    """Take a :func:`write_scope`'s write gate now, if its first write has not: before a
    write made on the driver's cursor directly, which :func:`_gate_at_first_write` does not
    see."""
    take = connection.info.pop(_LAZY_GATE, None)
    if take is not None:
        take()


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
                event.listen(engine, "before_cursor_execute", _gate_at_first_write)
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
        _factories.clear()


_gates: dict[str, tuple[threading.Lock, int]] = {}
_factories: dict[Engine, sessionmaker[Session]] = {}  # the session factory of each engine


@contextmanager
def write_gate(engine: Engine) -> Iterator[None]:
    """Hold the database's write gate around a short write transaction (SQLite only).

    SQLite lets one writer in at a time and makes the others sleep and retry (1, 2, 5, 10 ms
    ...), which turns a busy moment into a long tail. Writers of the hot paths queue here
    instead: a thread lock within the process and an ``flock`` on ``<database>.gate``
    between processes, both woken the moment the holder lets go. Other writers still work
    without it (SQLite's own lock stays the rule). A no-op on other databases.
    """
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    key = f"{os.getpid()}:{database}"
    with _lock:
        gate = _gates.get(key)
        if gate is None:
            fd = os.open(f"{database}.gate", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            gate = _gates[key] = (threading.Lock(), fd)
    thread_lock, fd = gate
    with thread_lock:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """One transaction: committed when the block ends, rolled back on error."""
    with _factory(get_engine(url))() as session, session.begin():
        yield session


def _factory(engine: Engine) -> sessionmaker[Session]:
    """The engine's session factory (building one costs ~0.1 ms; sessions open all the time)."""
    factory = _factories.get(engine)
    if factory is None:
        factory = _factories.setdefault(engine, sessionmaker(engine, expire_on_commit=False))
    return factory


@contextmanager
def write_scope(url: str | None = None) -> Iterator[Session]:
    """:func:`session_scope` for a short write transaction of a hot path, queued on the
    database's :func:`write_gate` (on SQLite the other gated writers wait for it there, woken
    when it ends, instead of sleeping in SQLite's busy handler). Never nest one in another.

    The connection is taken from the pool before the gate, and the commit made before the
    gate is let go, as the API's writers do: a thread waiting at the gate may hold a pooled
    connection, but never the gate while it waits for a connection.

    On SQLite the gate is taken by the block's first write statement, not at its start: the
    reads before it (loading the objects to change, building the ORM's unit of work) run
    without it, as SQLite itself runs them outside the write transaction, which its driver
    begins at the first write too. Measured at 1,000 accepted orders/s (issue 13), the
    worker's claim and dry-run closing transactions held the gate 7-9 ms at the median and
    took 37 % of its time when they held it from the start.
    """
    engine = get_engine(url)
    take = None
    with _factory(engine)() as session, ExitStack() as gate:
        # from the pool now (no lock is taken yet); its info stays with the pooled connection
        info = session.connection().info
        if engine.dialect.name != "sqlite":
            gate.enter_context(write_gate(engine))  # a no-op there
        else:  # the gate is taken by the first write (_gate_at_first_write)
            info[_LAZY_GATE] = take = lambda: gate.enter_context(write_gate(engine))
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            # the connection went back to the pool with the commit: another write_scope
            # may have it already, with its own taker
            if info.get(_LAZY_GATE) is take:
                info.pop(_LAZY_GATE, None)
