"""Leased locks in the database: held across processes and hosts, lost when the holder dies.

A lock is a row per name (``router:rc1``, ``monitor:probes:rc1``). Taking it writes the
holder, a lease end (``expires_at``) and a new fencing token (one more than the last); the
holder renews the lease while it works and clears it when it is done. A holder that dies
stops renewing, so its lock is free again once the lease ends. The token only grows: a late
writer whose lease ended sees a newer token and must not act.

Every step is one conditional statement, atomic on SQLite (one writer at a time) and on
PostgreSQL (``UPDATE`` re-checks its ``WHERE`` on the row it locked): taking a lock is
``UPDATE locks SET holder=me, token=token+1 ... WHERE name=? AND (holder IS NULL OR
expires_at < now)``, or an ``INSERT`` for a name never used (a duplicate key there means
another holder won the race). Renewing, fencing and releasing match the holder *and* the
token. Times are Python's (:func:`vpop.core.time.utcnow`), never the database's clock, so
every comparison uses one clock per host; hosts must keep their clocks in sync (NTP) to
well under the lease (``VPOP_LOCK_TTL_SECONDS``, 15 s by default, at most 30).

:func:`hold` is the way to use a lock: it takes it (waiting up to a bound), has it renewed
every third of the lease, and releases it when the block ends. One heartbeat thread per
process renews every lease the process holds (:class:`_Keeper`): starting a thread per
lease cost 0.4 ms at the median and up to 4 ms beside a busy API, on every run. Within one
process it is re-entrant per thread, and other threads of the process queue on a thread lock
first, so they do not poll the database against each other. Before acting on a shared
resource (a push to a router, recording its success) the holder calls
:meth:`Lease.fence`, which extends the lease only if the token is still its own and raises
:class:`LockLost` otherwise.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, String, bindparam, or_, select, update
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from vpop.core.db import Base, UTCDateTime, gate_now, get_engine, session_scope
from vpop.core.errors import VpopError
from vpop.core.prepared import Prepared, gated_commit, raw_transaction
from vpop.core.settings import load_settings
from vpop.core.time import utcnow

log = logging.getLogger(__name__)

# how often a waiting taker looks again (it backs off from the first to the second)
_POLL_FIRST, _POLL_MAX = 0.02, 0.25


class Lock(Base):
    """One named lock: who holds it, until when, and its fencing token."""

    __tablename__ = "locks"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(200), default=None)
    token: Mapped[int] = mapped_column(BigInteger, default=0)
    acquired_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class LockError(VpopError):
    """A lock could not be taken or is no longer held."""

    code = "VPOP-409-LOCK"
    status = 409


class LockBusy(LockError):
    """Another live holder has the lock (and kept it for as long as we would wait)."""

    code = "VPOP-409-LOCK-BUSY"


class LockLost(LockError):
    """The lease ended or another holder took the lock: the late holder must not act."""

    code = "VPOP-409-LOCK-LOST"


@dataclass(frozen=True)
class LockState:
    """A lock row as read for health reports."""

    name: str
    holder: str | None
    token: int
    acquired_at: datetime | None
    expires_at: datetime | None

    def live(self, now: datetime) -> bool:
        """True when a holder has the lock and its lease has not ended."""
        return self.holder is not None and self.expires_at is not None and self.expires_at >= now

    def stuck(self, now: datetime) -> bool:
        """True when the row names a holder whose lease ended (it died or stopped renewing)."""
        return self.holder is not None and not self.live(now)


ROUTER_PREFIX = "router:"


def router_lock_name(router: str) -> str:
    """The name of a router's lock: every path that changes the router takes this one."""
    return ROUTER_PREFIX + router


def lock_ttl() -> float:
    """The lease in seconds (``VPOP_LOCK_TTL_SECONDS``)."""
    return float(load_settings().lock_ttl_seconds)


def new_holder_id() -> str:
    """A holder id unique across hosts, processes, threads and takes: ``host:pid:thread/uuid``."""
    return (
        f"{socket.gethostname()}:{os.getpid()}:{threading.current_thread().name}"
        f"/{uuid.uuid4().hex[:12]}"
    )[:200]


def _statements() -> dict[str, Prepared]:
    c = Lock.__table__.c
    when, name, holder, token = c.expires_at.type, c.name.type, c.holder.type, c.token.type
    # the row is this holder's, with this token
    mine = (
        Lock.name == bindparam("n"),
        Lock.holder == bindparam("h"),
        Lock.token == bindparam("tok"),
    )
    return {
        "take": Prepared(
            update(Lock)
            .where(
                Lock.name == bindparam("n"),
                or_(Lock.holder.is_(None), Lock.expires_at < bindparam("at")),
            )
            .values(
                holder=bindparam("h"),
                token=Lock.token + 1,
                acquired_at=bindparam("at"),
                expires_at=bindparam("until"),
            )
            .returning(Lock.token),
            {"n": name, "at": when, "h": holder, "until": when},
        ),
        "extend": Prepared(
            update(Lock)
            .where(*mine, Lock.expires_at >= bindparam("at"))
            .values(expires_at=bindparam("until")),
            {"n": name, "h": holder, "tok": token, "at": when, "until": when},
        ),
        "release": Prepared(
            update(Lock).where(*mine).values(holder=None, expires_at=None),
            {"n": name, "h": holder, "tok": token},
        ),
        # whether the lock has a row (one not taken by "take": a live holder has it)
        "exists": Prepared(select(Lock.name).where(Lock.name == bindparam("n")), {"n": name}),
    }


#: The statements of the hot lock operations (taken, renewed and let go on every run),
#: compiled once per dialect and run on the driver's cursor (:mod:`vpop.core.prepared`).
_SQL = _statements()


@contextmanager
def _gated(url: str | None) -> Iterator[tuple[Any, Dialect]]:
    """A lock statement's transaction, queued on the database's write gate."""
    engine = get_engine(url)
    # the connection first, then the gate, and the commit inside it (as the API's writers)
    with raw_transaction(engine) as (cursor, dialect), gated_commit(engine, cursor):
        yield cursor, dialect


def try_acquire(name: str, holder: str, ttl: float, url: str | None = None) -> int | None:
    """Take the lock if it is free or its lease ended; one attempt, no waiting.

    Args:
        name: The lock's name.
        holder: Who takes it (:func:`new_holder_id`).
        ttl: The lease in seconds.
        url: The database (default: the configured one).

    Returns:
        The new fencing token, or None when a live holder has the lock.
    """
    now = utcnow()
    expires = now + timedelta(seconds=ttl)
    with _gated(url) as (cursor, dialect):
        row = (
            _SQL["take"]
            .run(cursor, dialect, {"n": name, "at": now, "h": holder, "until": expires})
            .fetchone()
        )
        if row is not None:
            return int(row[0])
    with session_scope(url) as session:
        if session.scalar(select(Lock.name).where(Lock.name == name)) is not None:
            return None  # a live holder has it
    try:
        with session_scope(url) as session:
            session.add(
                Lock(name=name, holder=holder, token=1, acquired_at=now, expires_at=expires)
            )
    except IntegrityError:
        return None  # another taker inserted the row first: it won
    return 1


def renew(name: str, holder: str, token: int, ttl: float, url: str | None = None) -> bool:
    """Extend the lease if ``holder`` still has the lock with ``token`` and it has not ended.

    Returns:
        False when the lease ended or another holder took the lock (it is lost).
    """
    with _gated(url) as (cursor, dialect):
        return _extend_on(cursor, dialect, name, holder, token, ttl)


def _extend(session: Session, name: str, holder: str, token: int, ttl: float) -> bool:
    """:func:`renew` inside the session's transaction (on its driver connection)."""
    connection = session.connection()
    gate_now(connection)  # a write the session does not see: a write_scope's gate first
    cursor = connection.connection.cursor()
    try:
        return _extend_on(cursor, connection.dialect, name, holder, token, ttl)
    finally:
        cursor.close()


def _extend_on(
    cursor: Any, dialect: Dialect, name: str, holder: str, token: int, ttl: float
) -> bool:
    now = utcnow()
    params = {"n": name, "h": holder, "tok": token, "at": now}
    done = _SQL["extend"].run(cursor, dialect, params | {"until": now + timedelta(seconds=ttl)})
    return bool(done.rowcount == 1)


def release(name: str, holder: str, token: int, url: str | None = None) -> bool:
    """Free the lock if ``holder`` still has it with ``token``; a non-holder changes nothing.

    The token stays, so the next taker's token is higher still.

    Returns:
        True when this call freed the lock.
    """
    with _gated(url) as (cursor, dialect):
        done = _SQL["release"].run(cursor, dialect, {"n": name, "h": holder, "tok": token})
        return bool(done.rowcount == 1)


def read_locks(url: str | None = None, prefix: str = "") -> list[LockState]:
    """Every lock row (whose name starts with ``prefix``), for health reports and recovery."""
    with session_scope(url) as session:
        rows = session.scalars(
            select(Lock).where(Lock.name.startswith(prefix, autoescape=True)).order_by(Lock.name)
        )
        return [
            LockState(r.name, r.holder, int(r.token), r.acquired_at, r.expires_at) for r in rows
        ]


def live_locks(url: str | None = None, prefix: str = "") -> set[str]:
    """The names of the locks a live holder has now."""
    now = utcnow()
    return {state.name for state in read_locks(url, prefix) if state.live(now)}


def clear_expired(url: str | None = None) -> list[str]:
    """Forget holders whose lease ended (they died); their tokens stay. Returns the names.

    Only tidies the table for health reports: a taker treats an ended lease as free anyway.
    """
    now = utcnow()
    with session_scope(url) as session:
        names = list(
            session.scalars(
                select(Lock.name).where(Lock.holder.is_not(None), Lock.expires_at < now)
            )
        )
        if names:
            session.execute(
                update(Lock)
                .where(Lock.name.in_(names), Lock.expires_at < now)
                .values(holder=None, expires_at=None)
                .execution_options(synchronize_session=False)
            )
    return names


class Lease:
    """A lock this process holds: its holder id, token, lease and heartbeat.

    Built by :func:`hold`; the process's heartbeat (:class:`_Keeper`) renews it every
    ``ttl / 3`` seconds and marks it lost when a renewal finds the lease ended or the token
    taken.
    """

    def __init__(self, name: str, holder: str, token: int, ttl: float, url: str | None) -> None:
        """Remember a lock just taken.

        Args:
            name: The lock's name.
            holder: The holder id it was taken with.
            token: The fencing token it got.
            ttl: The lease in seconds.
            url: The database it lives in.
        """
        self.name = name
        self.holder = holder
        self.token = token
        self.ttl = ttl
        self.url = url
        self.thread = threading.get_ident()  # the thread that took it (re-entrancy)
        self.lost = threading.Event()

    def check(self) -> None:
        """Raise :class:`LockLost` if the heartbeat already found the lock lost (no query)."""
        if self.lost.is_set():
            raise LockLost(f"lock {self.name} (token {self.token}) was lost")

    def fence(self, session: Session | None = None) -> None:
        """Prove the lock is still ours, and extend the lease, before acting on what it guards.

        With ``session``, the check runs in the caller's transaction, so the row stays locked
        until that transaction commits: what it records is recorded only while we hold the
        lock (on SQLite the transaction holds the database's write lock).

        Raises:
            LockLost: the lease ended or another holder took the lock.
        """
        self.check()
        if session is None:
            ok = renew(self.name, self.holder, self.token, self.ttl, self.url)
        else:
            ok = _extend(session, self.name, self.holder, self.token, self.ttl)
        self._fenced(ok)

    def fence_on(self, cursor: Any, dialect: Dialect) -> None:
        """:meth:`fence` inside the transaction of a driver ``cursor`` (a
        :func:`~vpop.core.prepared.raw_transaction` that holds the write gate already)."""
        self.check()
        self._fenced(_extend_on(cursor, dialect, self.name, self.holder, self.token, self.ttl))

    def _fenced(self, ok: bool) -> None:
        if not ok:
            self.lost.set()
            raise LockLost(
                f"lock {self.name} (token {self.token}) is no longer ours: its lease ended or "
                "another holder took it"
            )

    def start_heartbeat(self) -> None:
        """Have the process's heartbeat renew the lease every third of the TTL until
        :meth:`stop_heartbeat`."""
        _keeper.add(self)

    def stop_heartbeat(self) -> None:
        """Stop renewing (a renewal in flight may still land; a released lock stays free:
        renewing matches the holder and the token)."""
        _keeper.discard(self)

    def renew_due(self) -> None:
        """One heartbeat: extend the lease, or mark it lost when it ended or was taken (and
        it is still held here: a lease let go meanwhile is not lost, only released)."""
        try:
            renewed = renew(self.name, self.holder, self.token, self.ttl, self.url)
        except Exception:  # the database is unreachable: try again; the lease may end
            log.exception("could not renew lock %s", self.name)
            return
        if not renewed and _keeper.discard(self):
            log.warning("lock %s (token %s) was lost", self.name, self.token)
            self.lost.set()


class _Keeper:
    """The process's heartbeat: one daemon thread renews every lease held here, each every
    third of its TTL. Started on the first lease (again in a forked child, whose copy of
    the thread does not run)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: dict[Lease, float] = {}  # lease -> when its next renewal is due (monotonic)
        self._thread: threading.Thread | None = None

    def add(self, lease: Lease) -> None:
        with self._cond:
            self._due[lease] = time.monotonic() + lease.ttl / 3
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="lock-heartbeat", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def discard(self, lease: Lease) -> bool:
        """Stop renewing ``lease``; whether it was still being renewed."""
        with self._cond:
            return self._due.pop(lease, None) is not None

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._due:
                    self._cond.wait()
                    continue
                lease, due = min(self._due.items(), key=lambda item: item[1])
                delay = due - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)  # or until a lease comes or goes
                    continue
                self._due[lease] = time.monotonic() + lease.ttl / 3
            lease.renew_due()  # outside the condition: a renewal is a database write


_keeper = _Keeper()


def acquire(
    name: str, *, wait: float = 0.0, ttl: float | None = None, url: str | None = None
) -> Lease:
    """Take the lock, waiting up to ``wait`` seconds for a live holder to let go.

    The returned lease has no heartbeat; :func:`hold` adds one and releases the lock.

    Raises:
        LockBusy: a live holder kept it for the whole wait.
    """
    ttl = lock_ttl() if ttl is None else ttl
    holder = new_holder_id()
    deadline = time.monotonic() + wait
    pause = _POLL_FIRST
    while True:
        token = try_acquire(name, holder, ttl, url)
        if token is not None:
            return Lease(name, holder, token, ttl, url)
        left = deadline - time.monotonic()
        if left <= 0:
            raise LockBusy(f"lock {name} is held by another worker; try again later")
        time.sleep(min(pause, left))
        pause = min(pause * 2, _POLL_MAX)


# this process's leases, for re-entrancy: name -> (thread lock, lease, depth)
_local_guard = threading.Lock()
_local_locks: dict[str, threading.RLock] = {}
_held: dict[str, tuple[Lease, int]] = {}


def current_lease(name: str) -> Lease | None:
    """The lease the calling thread holds on ``name`` through :func:`hold`, if any."""
    entry = _held.get(name)
    if entry is None or entry[0].thread != threading.get_ident():
        return None
    return entry[0]


@contextmanager
def hold(
    name: str, *, wait: float = 0.0, ttl: float | None = None, url: str | None = None
) -> Iterator[Lease]:
    """Hold the lock for the block: take it, renew it from a heartbeat, release it at the end.

    Re-entrant per thread: a nested ``hold`` of the same name yields the same lease. Other
    threads of this process wait on a thread lock first (up to ``wait``).

    Args:
        name: The lock's name.
        wait: Seconds to wait for another holder to let go.
        ttl: The lease (default ``VPOP_LOCK_TTL_SECONDS``).
        url: The database (default: the configured one).

    Raises:
        LockBusy: another holder kept the lock for the whole wait.
    """
    with _local_guard:
        local = _local_locks.setdefault(name, threading.RLock())
    started = time.monotonic()
    got = local.acquire(timeout=wait) if wait > 0 else local.acquire(blocking=False)
    if not got:
        raise LockBusy(f"lock {name} is held by another thread of this process")
    try:
        entry = _held.get(name)
        if entry is not None:  # this thread holds it already (the RLock let us in)
            _held[name] = (entry[0], entry[1] + 1)
            try:
                yield entry[0]
            finally:
                lease, depth = _held[name]
                _held[name] = (lease, depth - 1)
            return
        lease = acquire(name, wait=max(0.0, wait - (time.monotonic() - started)), ttl=ttl, url=url)
        _held[name] = (lease, 1)
        lease.start_heartbeat()
        try:
            yield lease
        finally:
            del _held[name]
            lease.stop_heartbeat()
            try:
                release(lease.name, lease.holder, lease.token, lease.url)
            except Exception:  # the lease ends by itself within the TTL
                log.exception("could not release lock %s", name)
    finally:
        local.release()


@contextmanager
def hold_free(
    names: Sequence[str], *, ttl: float | None = None, url: str | None = None
) -> Iterator[list[str]]:
    """Hold, for the block, each lock of ``names`` that is free now: :func:`hold` of each
    without waiting, but taken in one transaction and let go in one (a counters job holds a
    lock per router it polls: two transactions per router cost about as much as the poll's
    own transaction).

    Yields the names held, in the order given; a name another holder has (another process,
    or another thread of this one) is left out. A name this thread holds already is held
    again, as :func:`hold` nests. Each lease taken has the heartbeat :func:`hold` gives.
    """
    ttl = lock_ttl() if ttl is None else ttl
    taken: list[threading.RLock] = []  # the thread locks this call took
    nested: list[str] = []  # names this thread held already
    wanted: list[str] = []
    leases: list[Lease] = []
    try:
        for name in dict.fromkeys(names):
            with _local_guard:
                local = _local_locks.setdefault(name, threading.RLock())
            if not local.acquire(blocking=False):
                continue  # another thread of this process holds it
            taken.append(local)
            entry = _held.get(name)
            if entry is not None:
                _held[name] = (entry[0], entry[1] + 1)
                nested.append(name)
            else:
                wanted.append(name)
        leases = _take_free(wanted, new_holder_id(), ttl, url)
        for lease in leases:
            _held[lease.name] = (lease, 1)
            lease.start_heartbeat()
        held = {lease.name for lease in leases} | set(nested)
        yield [name for name in dict.fromkeys(names) if name in held]
    finally:
        for name in nested:
            lease, depth = _held[name]
            _held[name] = (lease, depth - 1)
        for lease in leases:
            del _held[lease.name]
            lease.stop_heartbeat()
        try:
            if leases:
                with _gated(leases[0].url) as (cursor, dialect):
                    for lease in leases:
                        params = {"n": lease.name, "h": lease.holder, "tok": lease.token}
                        _SQL["release"].run(cursor, dialect, params)
        except Exception:  # the leases end by themselves within the TTL
            log.exception("could not release locks %s", ", ".join(lease.name for lease in leases))
        for local in taken:
            local.release()


def _take_free(names: list[str], holder: str, ttl: float, url: str | None) -> list[Lease]:
    """Take each lock of ``names`` that is free or whose lease ended: the existing rows in
    one transaction (a lock a live holder has is left there, found by one read), a lock
    never taken before (no row yet) as :func:`try_acquire` does."""
    if not names:
        return []
    now = utcnow()
    until = now + timedelta(seconds=ttl)
    tokens: dict[str, int] = {}
    unused: list[str] = []  # no row yet
    with _gated(url) as (cursor, dialect):
        for name in names:
            params = {"n": name, "at": now, "h": holder, "until": until}
            row = _SQL["take"].run(cursor, dialect, params).fetchone()
            if row is not None:
                tokens[name] = int(row[0])
            elif _SQL["exists"].run(cursor, dialect, {"n": name}).fetchone() is None:
                unused.append(name)
    for name in unused:  # inserted as try_acquire does (a race with another taker included)
        token = try_acquire(name, holder, ttl, url)
        if token is not None:
            tokens[name] = token
    return [Lease(name, holder, tokens[name], ttl, url) for name in names if name in tokens]
