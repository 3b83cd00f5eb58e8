"""Fault drills in the lab: bursts of signed selections, processes killed with SIGKILL, checks.

A drill sends a burst of signed selections (with replays: the same ``webhook-id`` resent),
kills a process at a random point of it, starts it again, resends what got no answer (same
ids), and then checks what an operator would:

* every accepted order reaches a final state within :data:`FINAL_BOUND` seconds (else it is
  *stuck*), and every request that was answered 202 has its order (else it is *lost*);
* no request made two orders and no order was confirmed by two runs (*duplicated*);
* for every line, the last successful run's order is the line's confirmed selection, and
  the subscriber's real traffic (curl through its namespace) leaves through that ISP (else a
  *false success*); ``vpop reconcile --dry-run`` finds both routers in sync.
"""

from __future__ import annotations

import http.client
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.lab.helpers import FINAL, Server, curl

SUBSCRIBERS = [f"sub{i}" for i in range(1, 9)]
ISPS = ["isp-a", "isp-b", "isp-c"]
DEFAULT_ISP = "isp-a"  # the lab's routers send a line without a selection through isp-a

# the lease the drills run with (VPOP_LOCK_TTL_SECONDS): recovery within ~1.5 leases
LOCK_TTL = 3.0

# every accepted order is final this long after the restart (stated bound, asserted)
FINAL_BOUND = 30.0


@dataclass
class Outcome:
    """One trial's counts (each should be 0) and timings."""

    drill: str
    trial: int
    accepted: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    false_success: list[str] = field(default_factory=list)
    out_of_sync: list[str] = field(default_factory=list)
    killed_after: int = 0
    held_lock: bool = False  # the killed process held a router lock at that moment
    final_after: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)  # why orders failed (to explain a trial)

    def line(self) -> str:
        """One printable line for the trial."""
        if self.killed_after:
            when = (
                f"killed after {self.killed_after:2} answers "
                f"{'holding' if self.held_lock else 'not holding'} a router lock, all final "
                f"{self.final_after:5.2f}s after the kill"
            )
        else:
            when = f"all final {self.final_after:5.2f}s after the burst"
        return (
            f"{self.drill} trial {self.trial:2}: accepted {self.accepted:2}, {when}; "
            f"lost {len(self.lost)}, duplicated {len(self.duplicated)}, stuck {len(self.stuck)}, "
            f"false success {len(self.false_success)}, out of sync {len(self.out_of_sync)}; "
            f"{self.statuses}"
        )

    def problems(self) -> list[str]:
        """Everything that should not have happened."""
        return self.lost + self.duplicated + self.stuck + self.false_success + self.out_of_sync


def burst(rng: random.Random, size: int, replays: int) -> list[tuple[str, str, str]]:
    """``size`` requests ``(webhook-id, subscriber, isp)``, ``replays`` of them resent ids."""
    unique = [
        (f"drill-{uuid.uuid4().hex[:12]}", rng.choice(SUBSCRIBERS), rng.choice(ISPS))
        for _ in range(size - replays)
    ]
    requests = unique + [rng.choice(unique) for _ in range(replays)]
    rng.shuffle(requests)
    return requests


def send_all(
    server: Server,
    requests: list[tuple[str, str, str]],
    answers: dict[str, set[int]],
    on_answer: Any = None,
    threads: int = 8,
) -> None:
    """Send the requests from ``threads`` threads; record each 202's order per id (errors are
    skipped: the process may be dead)."""

    def send(req: tuple[str, str, str]) -> None:
        msg_id, sub, isp = req
        try:
            status, body = server.select({"subscriber": sub, "isp": isp}, msg_id=msg_id)
        except (OSError, ValueError, http.client.HTTPException):  # killed mid-request: no answer
            return
        if status == 202:
            answers.setdefault(msg_id, set()).add(int(body["order"]))
        if on_answer is not None:
            on_answer()

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(send, requests))


class Killer:
    """SIGKILLs a process at the ``count``-th answer of a burst, preferably while it holds a
    router lock (it waits up to ``LOCK_WAIT`` seconds for one: a kill mid-run is the drill).
    """

    LOCK_WAIT = 2.0

    def __init__(self, proc: subprocess.Popen[bytes], db_url: str, count: int) -> None:
        """Arm it: :meth:`on_answer` counts answers; the kill runs in its own thread."""
        self.proc, self.db_url, self.count = proc, db_url, count
        self.answered = 0
        self.guard = threading.Lock()
        self.due = threading.Event()
        self.killed_at = 0.0
        self.held = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def on_answer(self) -> None:
        """Count one answer; at the chosen one, let the kill go."""
        with self.guard:
            self.answered += 1
            if self.answered == self.count:
                self.due.set()

    def finish(self) -> float:
        """Kill now if the burst ended first; return when the kill happened (monotonic)."""
        self.due.set()
        self.thread.join(30)
        return self.killed_at

    def _holds_a_router_lock(self) -> bool:
        from vpop.core.locks import read_locks
        from vpop.core.time import utcnow

        now = utcnow()
        markers = {f":{pid}:" for pid in process_family(self.proc.pid)}  # its worker child too
        return any(
            lock.live(now) and any(marker in (lock.holder or "") for marker in markers)
            for lock in read_locks(self.db_url, "router:")
        )

    def _run(self) -> None:
        self.due.wait(120)
        deadline = time.monotonic() + self.LOCK_WAIT
        while not (held := self._holds_a_router_lock()) and time.monotonic() < deadline:
            time.sleep(0.005)
        self.held = held
        kill(self.proc)
        self.killed_at = time.monotonic()


def process_family(pid: int) -> set[int]:
    """``pid`` and its child processes (`vpop serve` runs its worker as a child)."""
    family = {pid}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                family.add(int(entry.name))
    return family


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL one process by its PID and reap it."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def wait_answering(base: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Wait until the server answers /healthz at all (503 "degraded" counts: it is up)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"vpop serve exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=1):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"vpop serve did not answer in {timeout}s") from None
            time.sleep(0.05)


def launch_server(workdir: Path, lab_state: dict[str, Any], *args: str) -> Server:
    """Like ``helpers.start_server``, with extra `vpop serve` options (``--workers 1``)."""
    from tests.lab.helpers import SECRET, free_port
    from vpop.core.db import session_scope
    from vpop.identity.service import create_token
    from vpop.lab.service import register_lab

    db_url = f"sqlite:///{workdir / 'vpop.sqlite'}"
    register_lab(lab_state, db_url)
    with session_scope(db_url) as session:
        token = create_token(session, "noc", name="drills")
    env = {
        **os.environ,
        "VPOP_DATABASE_URL": db_url,
        "VPOP_QUEUE_URL": f"sqlite:///{workdir / 'queue.sqlite'}",
        "VPOP_WEBHOOK_SECRETS": SECRET,
        "VPOP_STATE_DIR": str(workdir / "state"),
        "VPOP_LOCK_TTL_SECONDS": str(LOCK_TTL),
    }
    port = free_port()
    log = workdir / "serve.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vpop.cli", "serve", "--port", str(port), "--no-portal", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(f"http://127.0.0.1:{port}", token, db_url, env, proc, log)
    try:
        wait_answering(server.base, proc, log, 30)
    except AssertionError:
        kill(proc)
        raise
    return server


def restart_server(server: Server) -> Server:
    """Start `vpop serve` again on the same port, database and queue (the lab stays
    registered: its confirmed selections are kept)."""
    port = server.base.rsplit(":", 1)[1]
    with server.log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vpop.cli", "serve", "--port", port, "--no-portal"],
            env=server.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    restarted = Server(server.base, server.token, server.db_url, server.env, proc, server.log)
    try:
        wait_answering(server.base, proc, server.log, 30)
    except AssertionError:
        kill(proc)
        raise
    return restarted


def start_worker(server: Server, log: Path) -> subprocess.Popen[bytes]:
    """A separate `vpop worker` on the server's database and queue."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "vpop.cli", "worker", "--workers", "4"],
            env=server.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_final(
    server: Server, order_ids: set[int], bound: float, since: float | None = None
) -> tuple[float, list[str]]:
    """Seconds until every order is final (read from the database), counted from ``since``
    (a monotonic time, default now), and the orders that were not final within ``bound``."""
    from sqlalchemy import select

    from vpop.core.db import session_scope
    from vpop.selection.service import Order

    started = time.monotonic() if since is None else since
    pending = set(order_ids)
    while pending:
        with session_scope(server.db_url) as session:
            rows = session.execute(
                select(Order.id, Order.status).where(Order.id.in_(pending))
            ).all()
        pending -= {oid for oid, status in rows if status in FINAL}
        if not pending:
            break
        if time.monotonic() - started > bound:
            return bound, [f"order {oid} not final after {bound}s" for oid in sorted(pending)]
        time.sleep(0.1)
    return time.monotonic() - started, []


def check(
    server: Server,
    outcome: Outcome,
    answers: dict[str, set[int]],
    sent: set[str],
    others: set[int] | None = None,
) -> None:
    """Fill the outcome's lost, duplicated, false-success and out-of-sync lists.

    ``answers`` maps each webhook-id answered 202 to its order ids, ``sent`` is every id
    sent, ``others`` are orders made without an id (the CLI's).
    """
    from sqlalchemy import select

    from vpop.catalogue.models import Line, Selection
    from vpop.core.db import session_scope
    from vpop.selection.service import IdempotencyRecord, Order, Run

    outcome.lost += [f"{msg_id}: never answered 202" for msg_id in sorted(sent - set(answers))]
    outcome.duplicated += [
        f"{msg_id}: orders {sorted(ids)}" for msg_id, ids in answers.items() if len(ids) > 1
    ]
    with session_scope(server.db_url) as session:
        keys = {
            key: order_id
            for key, order_id in session.execute(
                select(IdempotencyRecord.key, IdempotencyRecord.order_id)
            )
        }
        for msg_id, ids in answers.items():
            if keys.get(msg_id) not in ids:
                outcome.lost.append(f"{msg_id}: the database has order {keys.get(msg_id)}")
        confirmed: dict[int, list[int]] = {}
        for run in session.scalars(
            select(Run).where(Run.kind == "selection", Run.status == "SUCCESS")
        ):
            for oid in run.trigger.removeprefix("orders ").split(","):
                confirmed.setdefault(int(oid), []).append(run.id)
        outcome.duplicated += [
            f"order {oid} confirmed by runs {runs}"
            for oid, runs in confirmed.items()
            if len(runs) > 1
        ]
        statuses: dict[str, int] = {}
        ours = {oid for ids in answers.values() for oid in ids} | (others or set())
        for order in session.scalars(select(Order).where(Order.id.in_(ours))):
            statuses[order.status] = statuses.get(order.status, 0) + 1
            if order.status == "DONE_FAILED":
                outcome.failures.append(f"order {order.id}: {order.error}")
        outcome.statuses = dict(sorted(statuses.items()))
        expected: dict[str, str] = {}
        for line in session.scalars(select(Line).where(Line.subscriber_id.in_(SUBSCRIBERS))):
            selection = session.get(Selection, line.id)
            expected[line.subscriber_id] = selection.isp_id if selection else DEFAULT_ISP
            last = session.scalars(
                select(Order)
                .where(
                    Order.line_id == line.id,
                    Order.status == "DONE_SUCCESS",
                    Order.dry_run.is_(False),
                )
                .order_by(Order.run_id.desc())
                .limit(1)
            ).first()
            if last is not None and (selection is None or selection.order_id != last.id):
                outcome.false_success.append(
                    f"{line.subscriber_id}: order {last.id} DONE_SUCCESS ({last.isp_id}) but the "
                    f"confirmed selection is {selection.order_id if selection else None}"
                )
    with ThreadPoolExecutor(max_workers=8) as pool:
        seen = dict(zip(SUBSCRIBERS, pool.map(curl, SUBSCRIBERS), strict=True))
    outcome.false_success += [
        f"{sub}: curl says {seen[sub]}, the database {isp}"
        for sub, isp in expected.items()
        if seen[sub] != isp
    ]
    drift = server.cli("reconcile", "--dry-run")
    if drift.returncode != 0 or any(f"{r}: in sync" not in drift.stdout for r in ("rc1", "rc2")):
        outcome.out_of_sync.append(
            f"reconcile --dry-run exit {drift.returncode}: "
            f"{drift.stdout[-3000:]} {drift.stderr[-1000:]}"
        )
