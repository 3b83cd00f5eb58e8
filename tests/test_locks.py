"""Leased locks in the database (vpop/core/locks.py), on SQLite and on a real PostgreSQL.

What is proved here: two holders never hold a lock at once (threads, and two processes);
a holder killed with SIGKILL loses its lock within the lease plus one heartbeat (measured);
a late holder's fence fails once another took the lock; a non-holder's release does
nothing; the fencing token only grows; the engine's recovery closes what a dead holder left.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest

from tests.pg import postgres_cluster
from vpop.catalogue.models import Isp, Line, Plan, Subscriber
from vpop.core import locks
from vpop.core.db import session_scope
from vpop.core.migrate import upgrade
from vpop.core.time import utcnow
from vpop.selection.models import Order, OrderStatus, Run, RunStatus
from vpop.selection.service import recover_abandoned, router_lock

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster, migrated (tests/pg.py)."""
    with postgres_cluster("pg-locks") as url:
        upgrade(url)
        yield url


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('locks') / 'vpop.sqlite'}"
    upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """The same tests on each database."""
    url: str = request.getfixturevalue("pg_url" if request.param == "postgresql" else "sqlite_url")
    return url


@contextmanager
def held_by_another_thread(name: str, url: str | None = None) -> Iterator[None]:
    """For the block, another thread of this process holds ``name`` (with :func:`hold`)."""
    holding, done = threading.Event(), threading.Event()

    def hold_it() -> None:
        with locks.hold(name, url=url):
            holding.set()
            done.wait(30)

    thread = threading.Thread(target=hold_it)
    thread.start()
    try:
        assert holding.wait(30)
        yield
    finally:
        done.set()
        thread.join(30)


def _name() -> str:
    return f"test:{uuid.uuid4().hex[:8]}"


def test_token_grows_and_a_non_holder_cannot_release(db_url: str) -> None:
    name = _name()
    first = locks.try_acquire(name, "a", 5, db_url)
    assert first == 1
    assert locks.try_acquire(name, "b", 5, db_url) is None  # a live holder has it
    assert not locks.release(name, "b", 1, db_url)  # not the holder
    assert not locks.release(name, "a", 2, db_url)  # the holder, but not its token
    assert locks.live_locks(db_url, name) == {name}
    assert locks.release(name, "a", 1, db_url)
    second = locks.try_acquire(name, "b", 5, db_url)
    assert second == 2
    assert locks.release(name, "b", 2, db_url)
    assert locks.try_acquire(name, "c", 5, db_url) == 3
    assert not locks.renew(name, "a", 1, 5, db_url)  # an old holder cannot renew
    assert locks.renew(name, "c", 3, 5, db_url)


def test_a_late_holders_fence_fails_once_another_took_the_lock(db_url: str) -> None:
    name = _name()
    late = locks.acquire(name, ttl=0.3, url=db_url)  # no heartbeat: it stops renewing
    late.fence()  # still ours
    deadline = time.monotonic() + 10
    while (token := locks.try_acquire(name, "newcomer", 5, db_url)) is None:
        assert time.monotonic() < deadline, "the ended lease was never free"
        time.sleep(0.02)
    assert token > late.token
    with pytest.raises(locks.LockLost):
        late.fence()
    with session_scope(db_url) as session, pytest.raises(locks.LockLost):
        late.fence(session)
    assert not locks.release(name, late.holder, late.token, db_url)
    assert locks.live_locks(db_url, name) == {name}  # the newcomer still holds it


def test_threads_never_hold_at_once(db_url: str) -> None:
    name = _name()
    inside: list[str] = []
    overlaps: list[tuple[str, ...]] = []
    guard = threading.Lock()
    tokens: list[int] = []
    errors: list[BaseException] = []

    def worker(me: str) -> None:
        try:
            for _ in range(15):
                lease = locks.acquire(name, wait=30, ttl=5, url=db_url)
                with guard:
                    inside.append(me)
                    if len(inside) > 1:
                        overlaps.append(tuple(inside))
                    tokens.append(lease.token)
                lease.fence()
                with guard:
                    inside.remove(me)
                assert locks.release(name, lease.holder, lease.token, db_url)
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(f"t{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    assert not overlaps
    assert len(tokens) == 60
    assert tokens == sorted(tokens) and len(set(tokens)) == 60  # each take, a new token


CHILD = textwrap.dedent(
    """
    import os, sys
    from vpop.core import locks

    url, name, log, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    me = str(os.getpid())
    for _ in range(rounds):
        lease = locks.acquire(name, wait=60, ttl=5, url=url)
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, f"enter {me} {lease.token}\\n".encode())
        lease.fence()
        os.write(fd, f"exit {me} {lease.token}\\n".encode())
        os.close(fd)
        locks.release(name, lease.holder, lease.token, url)
    """
)


def _python(code: str, *args: str, **kwargs: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-c", code, *args], cwd=ROOT, **kwargs
    )


def test_two_processes_never_hold_at_once(db_url: str, tmp_path: Path) -> None:
    name, log = _name(), tmp_path / "log"
    children = [_python(CHILD, db_url, name, str(log), "25") for _ in range(2)]
    try:
        for child in children:
            assert child.wait(timeout=120) == 0
    finally:
        for child in children:
            if child.poll() is None:
                os.kill(child.pid, signal.SIGKILL)
                child.wait(10)
    lines = log.read_text().split()
    events = list(zip(lines[0::3], lines[1::3], lines[2::3], strict=True))
    assert len(events) == 100
    holder = None
    tokens = []
    for kind, pid, token in events:
        if kind == "enter":
            assert holder is None, f"{pid} entered while {holder} held the lock"
            holder = (pid, token)
            tokens.append(int(token))
        else:
            assert holder == (pid, token)
            holder = None
    assert tokens == sorted(tokens) and len(set(tokens)) == 50


HOLDER = textwrap.dedent(
    """
    import sys, threading
    from vpop.core import locks

    url, name, ttl = sys.argv[1], sys.argv[2], float(sys.argv[3])
    with locks.hold(name, ttl=ttl, url=url) as lease:
        print(lease.token, flush=True)
        threading.Event().wait()  # hold (and renew) until killed
    """
)


def test_a_killed_holder_loses_its_lock_within_the_lease(db_url: str) -> None:
    ttl = 1.5
    name = _name()
    child = _python(HOLDER, db_url, name, str(ttl), stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        ready, _, _ = select.select([child.stdout], [], [], 30)
        assert ready, "the child did not take the lock in 30 s"
        token = int(child.stdout.readline())
        # it renews: the lock stays taken for well past one lease
        held_until = time.monotonic() + 2.5 * ttl
        while time.monotonic() < held_until:
            assert locks.try_acquire(name, "rival", ttl, db_url) is None
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        killed = time.monotonic()
        child.wait(10)
        deadline = killed + 10 * ttl
        while (won := locks.try_acquire(name, "rival", ttl, db_url)) is None:
            assert time.monotonic() < deadline, "the dead holder's lock never ended"
            time.sleep(0.01)
        lost_after = time.monotonic() - killed
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(10)
        if child.stdout is not None:
            child.stdout.close()
    print(f"lock lost {lost_after:.2f}s after SIGKILL (ttl {ttl}s, heartbeat {ttl / 3:.2f}s)")
    assert won == token + 1
    assert lost_after <= ttl + ttl / 3


def test_hold_is_reentrant_in_a_thread_and_exclusive_across_threads(sqlite_url: str) -> None:
    name = _name()
    seen: list[str] = []
    with locks.hold(name, url=sqlite_url) as outer:
        with locks.hold(name, url=sqlite_url) as inner:
            assert inner is outer

        def other() -> None:
            try:
                with locks.hold(name, url=sqlite_url):
                    seen.append("held")
            except locks.LockBusy:
                seen.append("busy")

        thread = threading.Thread(target=other)
        thread.start()
        thread.join(30)
        assert seen == ["busy"]
        assert locks.current_lease(name) is outer
    assert locks.live_locks(sqlite_url, name) == set()  # released at the end


def test_the_heartbeat_keeps_a_lease_alive_and_release_frees_it(sqlite_url: str) -> None:
    name = _name()
    with locks.hold(name, ttl=0.6, url=sqlite_url) as lease:
        until = time.monotonic() + 2.0
        while time.monotonic() < until:  # three leases long: renewed, never free
            assert locks.try_acquire(name, "rival", 1, sqlite_url) is None
            time.sleep(0.05)
        lease.fence()
        assert not lease.lost.is_set()
    assert locks.try_acquire(name, "rival", 1, sqlite_url) == lease.token + 1


def test_one_heartbeat_thread_renews_every_lease_the_process_holds(sqlite_url: str) -> None:
    first, second = _name(), _name()
    with (
        locks.hold(first, ttl=0.6, url=sqlite_url) as one,
        locks.hold(second, ttl=0.9, url=sqlite_url) as two,
    ):
        until = time.monotonic() + 2.0
        while time.monotonic() < until:  # more than two leases long: both renewed
            assert locks.try_acquire(first, "rival", 1, sqlite_url) is None
            assert locks.try_acquire(second, "rival", 1, sqlite_url) is None
            time.sleep(0.05)
        beating = [t for t in threading.enumerate() if t.name == "lock-heartbeat"]
        assert len(beating) == 1
    assert not one.lost.is_set() and not two.lost.is_set()
    assert locks.live_locks(sqlite_url, first) == locks.live_locks(sqlite_url, second) == set()


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_hold_free_holds_the_free_locks_and_leaves_the_others(
    db: str, request: pytest.FixtureRequest
) -> None:
    """What a counters job holds: every router's lock that nobody else has (a lock never
    taken before too), without the one another process has or another thread of this one
    has; a name this thread holds already stays held after the block; all others are free
    again at its end."""
    url: str = request.getfixturevalue("pg_url" if db == "postgresql" else "sqlite_url")
    free, fresh, elsewhere, threaded, mine = (_name() for _ in range(5))
    locks.release(free, "setup", locks.try_acquire(free, "setup", 5, url) or 0, url)  # a row
    assert locks.try_acquire(elsewhere, "another process", 30, url) == 1
    with held_by_another_thread(threaded, url), locks.hold(mine, url=url) as outer:
        names = [free, elsewhere, fresh, threaded, mine, free]
        with locks.hold_free(names, url=url) as held:
            assert held == [free, fresh, mine]
            assert locks.live_locks(url, "test:") >= {free, fresh, elsewhere, threaded, mine}
            assert locks.try_acquire(free, "rival", 5, url) is None
            assert locks.try_acquire(fresh, "rival", 5, url) is None
            assert locks.current_lease(mine) is outer
        assert locks.current_lease(mine) is outer  # still this thread's
        assert locks.live_locks(url, mine) == {mine}
    assert locks.try_acquire(free, "rival", 5, url) == 3  # freed: setup's 1, ours 2
    assert locks.try_acquire(fresh, "rival", 5, url) == 2
    assert locks.live_locks(url, elsewhere) == {elsewhere}  # never touched


def test_hold_free_keeps_its_leases_alive_and_frees_them_after_an_error(sqlite_url: str) -> None:
    first, second = _name(), _name()
    with (
        pytest.raises(RuntimeError, match="the poll broke"),
        locks.hold_free([first, second], ttl=0.6, url=sqlite_url) as held,
    ):
        assert held == [first, second]
        until = time.monotonic() + 2.0
        while time.monotonic() < until:  # three leases long: renewed, never free
            assert locks.try_acquire(first, "rival", 1, sqlite_url) is None
            assert locks.try_acquire(second, "rival", 1, sqlite_url) is None
            time.sleep(0.05)
        raise RuntimeError("the poll broke")
    assert locks.live_locks(sqlite_url, first) == locks.live_locks(sqlite_url, second) == set()
    assert locks.current_lease(first) is None and locks.current_lease(second) is None


def test_the_heartbeat_marks_a_lease_lost_once_another_holder_took_it(sqlite_url: str) -> None:
    name = _name()
    with locks.hold(name, ttl=0.6, url=sqlite_url) as lease:
        with session_scope(sqlite_url) as session:  # taken over, as after a stall
            row = session.get(locks.Lock, name)
            assert row is not None
            row.holder, row.token = "rival", row.token + 1
        assert lease.lost.wait(5), "the heartbeat never noticed"
        with pytest.raises(locks.LockLost):
            lease.check()
    # leaving the block freed nothing of the rival's
    assert locks.read_locks(sqlite_url, name)[0].holder == "rival"


def _order(url: str, status: OrderStatus, router: str, started_ago: float) -> int:
    with session_scope(url) as session:
        if session.get(Isp, "isp-l") is None:
            session.add(Isp(id="isp-l", name="ISP L", outbound_deny=[]))
            session.add(Subscriber(id="sub-l", name="sub-l", profile={}))
            session.flush()
            session.add(Plan(isp_id="isp-l", name="F", speed_mbps=5, monthly_price_minor=1))
            session.add(
                Line(
                    subscriber_id="sub-l",
                    router=router,
                    interface="sub-l",
                    prefix="192.0.2.66/32",
                    gateway="192.0.2.65/30",
                    calling_number="+31205559999",
                )
            )
            session.flush()
        line = session.query(Line).filter_by(subscriber_id="sub-l").one()
        order = Order(
            line_id=line.id,
            router=router,
            isp_id="isp-l",
            requester="test",
            status=status.value,
            started_at=utcnow() - timedelta(seconds=started_ago),
        )
        session.add(order)
        session.flush()
        return order.id


def test_recovery_closes_what_a_dead_holder_left_and_spares_a_live_one(db_url: str) -> None:
    dead_router, live_router = f"rd{uuid.uuid4().hex[:4]}", f"rl{uuid.uuid4().hex[:4]}"
    dead_order = _order(db_url, OrderStatus.RUNNING, dead_router, 1)
    live_order = _order(db_url, OrderStatus.RUNNING, live_router, 1)
    with session_scope(db_url) as session:
        dead_run = Run(router=dead_router, kind="selection", trigger="t", requester="test")
        session.add(dead_run)
        session.flush()
        dead_run.started_at = utcnow() - timedelta(seconds=1)
        dead_run_id = dead_run.id
    # the dead holder's lease ended; the live one renews
    assert locks.try_acquire(f"router:{dead_router}", "dead", 0.01, db_url) is not None
    assert locks.try_acquire(f"router:{live_router}", "live", 30, db_url) is not None
    deadline = time.monotonic() + 5
    while f"router:{dead_router}" in locks.live_locks(db_url, "router:"):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    recovered = recover_abandoned(db_url)
    assert dead_router in recovered and live_router not in recovered
    with session_scope(db_url) as session:
        assert session.get(Order, dead_order).status == OrderStatus.UNKNOWN.value  # type: ignore[union-attr]
        assert session.get(Order, live_order).status == OrderStatus.RUNNING.value  # type: ignore[union-attr]
        run = session.get(Run, dead_run_id)
        assert run is not None and run.status == RunStatus.FAILED.value
        assert run.finished_at is not None and "stopped" in (run.error or "")
    stuck = {s.name for s in locks.read_locks(db_url, "router:") if s.stuck(utcnow())}
    assert f"router:{dead_router}" in stuck
    assert f"router:{dead_router}" in locks.clear_expired(db_url)
    assert f"router:{live_router}" in locks.live_locks(db_url, "router:")


def test_the_engine_fence_fails_for_a_router_lock_whose_lease_ended(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vpop.selection.locking import fence_router

    monkeypatch.setenv("VPOP_LOCK_TTL_SECONDS", "1")
    router = f"rf{uuid.uuid4().hex[:4]}"
    with pytest.raises(locks.LockLost):
        fence_router(router)  # this thread does not hold it
    with router_lock(router, url=sqlite_url):
        fence_router(router)  # ours: extends the lease
        lease = locks.current_lease(f"router:{router}")
        assert lease is not None
        lease.stop_heartbeat()  # a holder that stalls: its lease runs out
        deadline = time.monotonic() + lease.ttl + 5
        while locks.try_acquire(f"router:{router}", "rival", 30, sqlite_url) is None:
            assert time.monotonic() < deadline, "the stalled lease never ended"
            time.sleep(0.05)
        with session_scope(sqlite_url) as session, pytest.raises(locks.LockLost):
            fence_router(router, session)  # the late holder may not record anything
        with pytest.raises(locks.LockLost):
            fence_router(router)  # nor push
    # leaving the block released nothing of the rival's
    assert locks.live_locks(sqlite_url, f"router:{router}") == {f"router:{router}"}


def _gate_free(sqlite_url: str) -> bool:
    """Whether another process could take the database's write gate now (``flock -n``)."""
    gate = sqlite_url.removeprefix("sqlite:///") + ".gate"
    return subprocess.run(["flock", "-n", gate, "true"], timeout=30).returncode == 0


def test_hot_writes_hold_the_write_gate_from_their_first_write_and_let_it_go(
    sqlite_url: str,
) -> None:
    from sqlalchemy import select as sql_select

    from vpop.core.db import write_scope

    name = _name()
    token = locks.try_acquire(name, "a", 30, sqlite_url)
    assert token is not None
    assert _gate_free(sqlite_url)  # the lock statements let the gate go with their commit
    isp = f"gate-{uuid.uuid4().hex[:8]}"
    with write_scope(sqlite_url) as session:
        session.scalars(sql_select(Isp)).all()
        assert _gate_free(sqlite_url)  # reads do not take it
        session.add(Isp(id=isp, name="Gate"))
        session.flush()
        assert not _gate_free(sqlite_url)  # the first write did: other gated writers wait
    assert _gate_free(sqlite_url)
    with write_scope(sqlite_url) as session:  # a write on the driver's cursor (a fence)
        assert locks._extend(session, name, "a", token, 30)
        assert not _gate_free(sqlite_url)
    assert _gate_free(sqlite_url)
    with pytest.raises(RuntimeError), write_scope(sqlite_url) as session:
        session.add(Isp(id=isp + "-x", name="Rolled back"))
        session.flush()
        raise RuntimeError("a failed transaction")
    assert _gate_free(sqlite_url)  # and after a rollback
    with session_scope(sqlite_url) as session:
        assert session.get(Isp, isp) is not None and session.get(Isp, isp + "-x") is None


def test_write_scope_on_postgresql_is_a_plain_transaction(pg_url: str) -> None:
    from vpop.core.db import write_scope

    isp = f"gate-{uuid.uuid4().hex[:8]}"
    with write_scope(pg_url) as session:
        session.add(Isp(id=isp, name="Gate"))
    with session_scope(pg_url) as session:
        assert session.get(Isp, isp) is not None


def test_gated_writers_never_wait_for_a_connection_while_holding_the_gate(
    tmp_path: Path,
) -> None:
    """More writers than the pool has connections, in one process (``vpop serve
    --single-process``): the API's way (a pooled connection, then the gate) beside the
    engine's (``write_scope``) and the lock statements. If any of them held the gate while
    waiting for a connection, the pool would run dry and everything would stall until the
    pool's 30 s timeout; taken in one order, all of it ends."""
    from sqlalchemy import func
    from sqlalchemy import select as sql_select

    from vpop.core.db import get_engine, write_gate, write_scope
    from vpop.core.prepared import raw_transaction

    url = f"sqlite:///{tmp_path / 'vpop.sqlite'}"
    upgrade(url)
    engine = get_engine(url)
    pool = engine.pool.size() + engine.pool._max_overflow  # type: ignore[attr-defined]
    errors: list[BaseException] = []
    start = threading.Barrier(pool + 6)

    def api_writer(n: int) -> None:
        try:
            start.wait()
            for i in range(20):
                with raw_transaction(engine) as (cursor, _dialect), write_gate(engine):
                    cursor.execute(
                        "INSERT INTO isps (id, name, outbound_deny, created_at) "
                        "VALUES (?, 'x', '[]', '2026-01-01')",
                        (f"api-{n}-{i}",),
                    )
                    cursor.connection.commit()
        except BaseException as err:  # noqa: BLE001 (reported below)
            errors.append(err)

    def engine_writer(n: int) -> None:
        try:
            start.wait()
            for i in range(20):
                with write_scope(url) as session:
                    session.add(Isp(id=f"eng-{n}-{i}", name="x"))
                name = f"gate-{n}-{i}"
                token = locks.try_acquire(name, "me", 30, url)
                assert token is not None and locks.renew(name, "me", token, 30, url)
                assert locks.release(name, "me", token, url)
        except BaseException as err:  # noqa: BLE001 (reported below)
            errors.append(err)

    threads = [threading.Thread(target=api_writer, args=(n,)) for n in range(pool)]
    threads += [threading.Thread(target=engine_writer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(25)  # a stall shows as a thread still waiting (the pool waits 30 s)
    assert not [t for t in threads if t.is_alive()], "writers stalled"
    assert errors == []
    with session_scope(url) as session:
        assert session.scalar(sql_select(func.count()).select_from(Isp)) == (pool + 6) * 20
