"""Payments through the API, and settling a million captured payments, on SQLite and PostgreSQL.

(a) The API: ``POST /api/v1/payments`` (authorise) then ``POST /api/v1/payments/{id}/capture``
    with an ISP token, each with its own Idempotency-Key, against the Flask app served by the
    same threaded werkzeug server ``vpop serve`` uses, in a separate process on 127.0.0.1 (so
    the client's threads do not share the server's interpreter), at concurrency 1 and 8:
    requests/s and p50/p99 per call type. The peer, measured in the same run on the same
    server with the same token and concurrency: ``GET /api/v1/payments/{id}`` (the same
    authentication and a read of the same rows), and the ratio.
(b) Settlement: ``--payments`` (1,000,000) captured payments over 10,000 subscribers and 3
    payees (an ISP and two merchants) in one month, written with Core bulk inserts (chunks of
    executemany) in exactly the rows the payment code writes for an authorise and a full
    capture: the payment, its ``authorised`` and ``captured`` events, the hold and its post in
    the ledger with their postings, each subscriber's allowance (account, spending period and
    limit grant). The shapes are checked first: one payment made by the real
    ``authorise``/``capture`` in a scratch database and the generator's rows for the same
    payment must be equal column by column (ids and times aside). Then the final
    ``run_settlement`` for the month: seconds, settlement lines/s, each statement's size and
    SHA-256, and the peer: ``SELECT count(*), sum(amount_minor)`` over the same captured
    events (the least any settlement must read), and the ratio. The settlement's totals are
    checked against the peer's.

Run: .venv/bin/python bench/billing.py [--payments 1000000] [--pg] [--calls 400]
                                       [--no-api] [--no-settle]
``--pg`` adds PostgreSQL (a throwaway cluster, as ``tests/pg.py`` starts one).
"""

from __future__ import annotations

import argparse
import atexit
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.pg: the throwaway PostgreSQL cluster of the tests
WORK = Path(tempfile.mkdtemp(prefix="vpop-bench-billing-"))
atexit.register(shutil.rmtree, WORK, ignore_errors=True)  # nothing left behind
os.environ.setdefault("VPOP_STATE_DIR", str(WORK / "state"))

from billing_data import NOW, PERIOD, check_shapes, generate, settle_peer  # noqa: E402

from vpop.billing.service import (  # noqa: E402
    check_balances,
    in_transaction,
    run_settlement,
    unbalanced_entries,
)
from vpop.catalogue.service import Isp, Line, Subscriber  # noqa: E402
from vpop.core.db import dispose_engines, session_scope  # noqa: E402
from vpop.core.migrate import upgrade  # noqa: E402
from vpop.identity.service import create_token  # noqa: E402

STATEMENTS: dict[str, list[str]] = {}  # database -> its statements' SHA-256, by payee
SERVE = """
import logging
import sys
logging.getLogger("werkzeug").setLevel(logging.WARNING)
from werkzeug.serving import make_server
from webhooks import create_app
server = make_server("127.0.0.1", 0, create_app({"DATABASE_URL": sys.argv[1]}), threaded=True)
print(server.server_port, flush=True)
server.serve_forever()
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


# --- (a) the API ---------------------------------------------------------------------------


def api_database(url: str, subscribers: int) -> str:
    """Migrate ``url``; add isp-b, ``subscribers`` subscribers with a line and a high limit;
    return an isp-b token."""
    upgrade(url)
    with session_scope(url) as session:
        session.add(Isp(id="isp-b", name="Beta Fibre"))
        for k in range(1, subscribers + 1):
            session.add(
                Subscriber(id=f"s{k}", name=f"s{k}", profile={"spending_limit_minor": 10**12})
            )
        session.flush()
        for k in range(1, subscribers + 1):
            session.add(
                Line(
                    subscriber_id=f"s{k}", router="rc1", interface=f"s{k}",
                    prefix=f"2001:db8:{k >> 12:x}:{k & 0xFFF:x}::/64",
                )
            )  # fmt: skip
        token = create_token(session, "isp", "isp-b", name="bench", actor="bench")
    dispose_engines()
    return token


@contextmanager
def served(url: str) -> Iterator[int]:
    """The app served on 127.0.0.1 by a child process; yields its port."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", SERVE, url], stdout=subprocess.PIPE, cwd=ROOT, env=env, text=True
    )
    try:
        assert child.stdout is not None
        yield int(child.stdout.readline())
    finally:
        child.terminate()
        child.wait(timeout=10)


class Client:
    """One connection per request, as a payee's plain HTTP client would open."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = dict(self.headers)
        if method == "POST":
            headers["idempotency-key"] = uuid.uuid4().hex
        try:
            conn.request(method, path, None if body is None else json.dumps(body), headers)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        if response.status >= 300:
            raise SystemExit(f"{method} {path}: {response.status} {data[:300]!r}")
        return json.loads(data)


def in_threads(count: int, work: Callable[[int], None]) -> float:
    """Run ``work(i)`` in ``count`` threads; the wall time."""
    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def api_round(
    client: Client, calls: int, threads: int, subscribers: int, *, show: bool = True
) -> None:
    """``calls`` authorise + capture pairs, then as many reads (the peer), in ``threads``."""
    times: dict[str, list[float]] = {"authorise": [], "capture": [], "read (peer)": []}
    ids: list[int] = []
    lock = threading.Lock()
    per_thread = calls // threads

    def pay(i: int) -> None:
        for n in range(per_thread):
            body = {
                "subscriber": f"s{(i * per_thread + n) % subscribers + 1}",
                "amount_minor": 199, "currency": "EUR", "item": "bench item",
                "merchant_reference": f"bench-{i}-{n}",
            }  # fmt: skip
            started = time.perf_counter()
            payment = client.call("POST", "/api/v1/payments", body)
            authorised = time.perf_counter()
            assert payment["status"] == "AUTHORISED", payment
            captured = client.call("POST", f"/api/v1/payments/{payment['id']}/capture", {})
            done = time.perf_counter()
            assert captured["status"] == "CAPTURED", captured
            with lock:
                times["authorise"].append(authorised - started)
                times["capture"].append(done - authorised)
                ids.append(payment["id"])

    def read(i: int) -> None:
        for payment_id in ids[i::threads]:
            started = time.perf_counter()
            client.call("GET", f"/api/v1/payments/{payment_id}")
            with lock:
                times["read (peer)"].append(time.perf_counter() - started)

    paying = in_threads(threads, pay)
    reading = in_threads(threads, read)
    pairs = len(ids)
    if not show:
        return
    print(f"  concurrency {threads}: {pairs} authorise+capture pairs, then {pairs} reads")
    for name, values in times.items():
        wall = reading if name.startswith("read") else paying
        rate = len(values) / wall if name.startswith("read") else 2 * pairs / wall
        print(
            f"    {name:12} p50 {statistics.median(values) * 1000:7.1f} ms  "
            f"p99 {pct(values, 0.99) * 1000:7.1f} ms"
            + (f"  {rate:7.1f} req/s" if name != "capture" else "  (with authorise above)")
        )
    print(
        f"    payments: {pairs / paying:7.1f} authorise+capture pairs/s "
        f"({2 * pairs / paying:.1f} req/s); peer {pairs / reading:.1f} req/s; "
        f"ratio peer/payments (req/s) {(pairs / reading) / (2 * pairs / paying):.2f}x, "
        f"p50 authorise/read {statistics.median(times['authorise']) / statistics.median(times['read (peer)']):.2f}x"  # noqa: E501
    )


def bench_api(calls: int) -> None:
    path = WORK / "api.sqlite"
    url = f"sqlite:///{path}"
    subscribers = 200
    token = api_database(url, subscribers)
    print(f"(a) the API on SQLite ({path.name}), werkzeug threaded server in a child process")
    with served(url) as port:
        client = Client(port, token)
        api_round(client, 20, 1, subscribers, show=False)  # warm-up: imports, first connections
        for threads in (1, 8):
            api_round(client, calls, threads, subscribers)


# --- (b) settlement ------------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def bench_settle(label: str, url: str, payments: int, subscribers: int) -> None:
    """Generate, check the ledger, settle the month (final), compare with the peer."""
    upgrade(url)
    seconds, rows = timed(lambda: generate(url, payments=payments, subscribers=subscribers))
    print(
        f"  {label}: generated {payments:,} captured payments over {subscribers:,} subscribers"
        f" and 3 payees in {seconds:.1f} s ({rows:,} rows, {rows / seconds:,.0f} rows/s)"
    )
    with session_scope(url) as session:
        if unbalanced_entries(session) or check_balances(session):
            raise SystemExit("the generated ledger does not balance")
    print("    generated ledger: every entry balanced, every account's sums = its postings")
    peer, (count, total) = timed(lambda: settle_peer(url))
    settling, settlements = timed(
        lambda: in_transaction(url, run_settlement, PERIOD, now=NOW, actor="bench")
    )
    peer_again, _ = timed(lambda: settle_peer(url))
    peer = min(peer, peer_again)
    rerun, again = timed(lambda: in_transaction(url, run_settlement, PERIOD, now=NOW, actor="b"))
    lines = sum(s.lines_count for s in settlements)
    print(
        f"    run_settlement (final {PERIOD}): {settling:8.2f} s {lines / settling:12,.0f} "
        f"lines/s ({lines:,} lines, {len(settlements)} settlements)"
    )
    print(
        f"    peer SELECT count(*), sum(amount_minor) of the captured events: {peer:7.3f} s "
        f"({count:,} events, {total:,} minor units); ratio run/peer {settling / peer:6.1f}x"
    )
    print(f"    a second final run: {rerun:6.3f} s, returns the stored settlements: "
          f"{[s.id for s in again] == [s.id for s in settlements]}")  # fmt: skip
    for s in settlements:
        print(
            f"    {s.payee_id:7} captured {s.captured_minor:>12,} fees {s.fees_minor:>10,} "
            f"net {s.net_minor:>12,}  statement {len(s.statement_json.encode()):>11,} bytes"
            f"  sha256 {s.statement_sha256}"
        )
    if sum(s.captured_minor for s in settlements) != total or lines < count:
        raise SystemExit(f"the settlements do not add up to the {count} captured events")
    print("    the settlements' captures = the events' sum: yes")
    STATEMENTS[label] = [s.statement_sha256 for s in settlements]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--payments", type=int, default=1_000_000)
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=400, help="API pairs per concurrency")
    parser.add_argument("--pg", action="store_true", help="also on PostgreSQL")
    parser.add_argument("--no-api", action="store_true")
    parser.add_argument("--no-settle", action="store_true")
    args = parser.parse_args()
    try:
        run(args)
    finally:
        dispose_engines()
        shutil.rmtree(WORK, ignore_errors=True)


def run(args: argparse.Namespace) -> None:
    if not args.no_api:
        bench_api(args.calls)
    if not args.no_settle:
        check_shapes(f"sqlite:///{WORK / 'shapes.sqlite'}")
        print("(b) settlement (the generator's rows = the payment code's rows: checked)")
        path = WORK / "settle.sqlite"
        bench_settle("sqlite", f"sqlite:///{path}", args.payments, args.subscribers)
        dispose_engines()
        for leftover in WORK.glob("settle.sqlite*"):
            leftover.unlink()
        if args.pg:
            from tests.pg import postgres_cluster

            with postgres_cluster("bench-billing") as url:
                bench_settle("postgresql", url, args.payments, args.subscribers)
            same = STATEMENTS["sqlite"] == STATEMENTS["postgresql"]
            print(f"  the statements are the same bytes on SQLite and PostgreSQL: {same}")


if __name__ == "__main__":
    main()
