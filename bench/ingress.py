"""Ingress: signed selections accepted per second, and ``GET /api/v1/isps``, against the lab.

(a) ``vpop serve`` as it runs for users: the API on gunicorn, a worker process and the
    scheduler (the worker really runs the accepted dry-run orders meanwhile);
(b) its peer, the same app in the previous model: ``vpop serve --single-process`` (Werkzeug's
    threaded server with the worker and scheduler threads in the same process).
For each: N signed ``POST /api/v1/selections`` (dry runs, spread over the lab's subscribers;
every request a new ``webhook-id``, signed before the clock starts) at concurrency 1, 8 and
32 over keep-alive connections, then ``GET /api/v1/isps`` at concurrency 32. Each line gives
requests per second, p50 and p99 latency and errors; the last lines the ratios (a)/(b) and
the issue's targets (>= 1,000 selections/s at concurrency 32 with p99 <= 50 ms and no errors;
``GET /api/v1/isps`` >= 2,000/s). At concurrency 32 it also prints the CPU time the server's
processes and the client spent per accepted order (from /proc): this machine's speed varies
by the hour, and the same code's cost per order with it. The client is one asyncio loop
writing pre-built requests, so that it costs the machine as little as possible (it shares
the cores with the server).

Run as root: ``flock /tmp/vpop-lab.lock .venv/bin/python bench/ingress.py [--scale 1]``
(it brings the default lab up if none is up, and leaves it as it found it).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import hashlib
import hmac
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vpop.core.db import dispose_engines  # noqa: E402
from vpop.lab.builder import Lab  # noqa: E402
from vpop.lab.registry import register_lab  # noqa: E402

HOST = "127.0.0.1"


def signed_post(port: int, path: str, body: bytes, key: bytes) -> bytes:
    """One Standard Webhooks-signed HTTP/1.1 POST, as bytes on the wire."""
    msg_id = "bench_" + secrets.token_hex(12)
    stamp = str(int(time.time()))
    mac = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nwebhook-id: {msg_id}\r\nwebhook-timestamp: {stamp}\r\n"
        f"webhook-signature: v1,{base64.b64encode(mac).decode()}\r\n\r\n"
    )
    return head.encode() + body


def plain_get(port: int, path: str) -> bytes:
    """One HTTP/1.1 GET, as bytes on the wire."""
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()


async def _connection(
    port: int,
    requests: list[bytes],
    queue: list[int],
    expect: int,
    latencies: list[float],
    errors: list[str],
) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while queue:
        index = queue.pop()
        started = time.perf_counter()
        try:
            if writer is None or reader is None:
                reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(requests[index])
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            lower = head.lower()
            at = lower.find(b"content-length:")
            length = int(lower[at + 15 : lower.index(b"\r\n", at)]) if at >= 0 else 0
            if length:
                await reader.readexactly(length)
            if b"connection: close" in lower or head.startswith(b"HTTP/1.0"):
                writer.close()
                reader = writer = None
            latencies.append(time.perf_counter() - started)
            if status != expect:
                errors.append(str(status))
        except (OSError, asyncio.IncompleteReadError, ValueError) as err:
            errors.append(type(err).__name__)
            if writer is not None:
                writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


def load(port: int, requests: list[bytes], concurrency: int, expect: int) -> dict[str, Any]:
    """Send ``requests`` over ``concurrency`` keep-alive connections; the figures."""
    latencies: list[float] = []
    errors: list[str] = []
    queue = list(range(len(requests)))[::-1]

    async def run() -> float:
        started = time.perf_counter()
        await asyncio.gather(
            *(
                _connection(port, requests, queue, expect, latencies, errors)
                for _ in range(concurrency)
            )
        )
        return time.perf_counter() - started

    elapsed = asyncio.run(run())
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    return {
        "n": len(requests),
        "rate": len(requests) / elapsed,
        "p50": pct(0.50),
        "p99": pct(0.99),
        "errors": len(errors),
        "kinds": sorted(set(errors))[:3],
        "latencies": latencies,  # seconds, sorted (bench/ingress_ab.py merges its chunks')
    }


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def start(env: dict[str, str], *options: str) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``vpop serve`` with ``options``; return it and its port once it answers."""
    port = _free_port()
    log = open(Path(env["VPOP_STATE_DIR"]) / f"serve-{port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "vpop.cli", "serve", "--port", str(port), "--no-portal"]
        + ["--no-shop", *options],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"vpop serve exited; see {log.name}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=1):
                return proc, port
        except OSError:
            time.sleep(0.05)  # a benchmark's start-up wait, bounded
    proc.kill()
    raise RuntimeError("vpop serve did not answer within 60 s")


def stop(proc: subprocess.Popen[bytes]) -> float:
    """SIGTERM; return the seconds until it exited."""
    started = time.perf_counter()
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return time.perf_counter() - started


def _stat(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name, or None once it ended."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _parts(root: int) -> dict[str, list[int]]:
    """The processes of ``vpop serve`` (``root``) by part: its children were started in the
    order API server, worker, scheduler (:mod:`vpop.cli.serve`); each part with its own
    children (gunicorn's workers). A server of one process is one part."""
    parents = {int(e): int(f[1]) for e in os.listdir("/proc") if e.isdigit() and (f := _stat(e))}

    def tree(top: int) -> list[int]:
        found = [top]
        for pid in found:  # grows as children are found; bounded by the processes listed
            found += [child for child, parent in parents.items() if parent == pid]
        return found

    children = sorted(child for child, parent in parents.items() if parent == root)
    names = ["API", "worker", "scheduler"] if len(children) == 3 else []
    parts = {"supervisor": [root]}
    for index, child in enumerate(children):
        parts[names[index] if names else f"child {child}"] = tree(child)
    return parts


def _cpu(pids: list[int]) -> float:
    """CPU seconds (user + system) the processes ``pids`` used so far."""
    ticks = sum(int(f[11]) + int(f[12]) for pid in pids if (f := _stat(pid)))
    return ticks / os.sysconf("SC_CLK_TCK")


def _idle() -> tuple[int, int]:
    """The machine's idle and total jiffies so far (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return values[3] + values[4], sum(values)


def _waiting(database: Path) -> int:
    """Orders not yet run to the end (RECEIVED or RUNNING), read from the server's database."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10) as db:
        row = db.execute(
            "SELECT count(*) FROM orders WHERE status IN ('RECEIVED', 'RUNNING')"
        ).fetchone()
    return int(row[0])


def drained(database: Path, limit: float = 120.0) -> float:
    """Wait until the worker has run every accepted order; the seconds it took."""
    started = time.perf_counter()
    while (waiting := _waiting(database)) and time.perf_counter() - started < limit:
        time.sleep(0.02)  # a benchmark's wait for the worker, bounded by ``limit``
    if waiting:
        raise RuntimeError(f"the worker did not catch up within {limit:.0f} s")
    return time.perf_counter() - started


def _per_order(cpu: dict[str, float], orders: int) -> str:
    """Server CPU seconds by part, as milliseconds per order."""
    split = ", ".join(f"{part} {seconds / orders * 1000:.2f}" for part, seconds in cpu.items())
    return f"server {sum(cpu.values()) / orders * 1000:.2f} ms (all its processes: {split})"


def signed_selections(port: int, key: bytes, subscribers: list[str], count: int) -> list[bytes]:
    """``count`` signed dry-run selections of isp-b, spread over ``subscribers``."""
    return [
        signed_post(
            port,
            "/api/v1/selections",
            json.dumps(
                {"subscriber": subscribers[i % len(subscribers)], "isp": "isp-b", "dry_run": True}
            ).encode(),
            key,
        )
        for i in range(count)
    ]


def lab_state(lab: Lab) -> tuple[dict[str, Any], bool]:
    """The lab's state, and whether it was brought up here (the default lab, 8 subscribers)."""
    state = lab.state()
    if state is None:
        return lab.up(subscribers=8), True
    return state, False


def fresh_env(state: dict[str, Any], key: bytes) -> dict[str, str]:
    """A server's environment on a new database and state directory (removed at exit): one
    server's leftover orders never load another; ``key`` signs the webhooks."""
    work = Path(tempfile.mkdtemp(prefix="vpop-bench-ingress-"))
    atexit.register(shutil.rmtree, work, ignore_errors=True)  # nothing left behind
    db_url = f"sqlite:///{work / 'vpop.sqlite'}"
    register_lab(state, db_url)
    dispose_engines()
    return {
        **os.environ,
        "VPOP_DATABASE_URL": db_url,
        "VPOP_QUEUE_URL": f"sqlite:///{work / 'queue.sqlite'}",
        "VPOP_STATE_DIR": str(work),
        "VPOP_WEBHOOK_SECRETS": "whsec_" + base64.b64encode(key).decode(),
    }


def measure(
    name: str,
    server: int,
    port: int,
    key: bytes,
    subscribers: list[str],
    scale: float,
    database: Path,
) -> dict[str, dict[str, Any]]:
    """The selection and catalogue figures of one server (``server``: its process id;
    ``database``: its SQLite file)."""
    figures: dict[str, dict[str, Any]] = {}

    def selections(count: int) -> list[bytes]:
        return signed_selections(port, key, subscribers, count)

    load(port, selections(200), 8, 202)  # warm-up: connections, caches, the first runs
    for concurrency, count in ((1, 400), (8, 2000), (32, 4000)):
        requests = selections(int(count * scale))
        if concurrency == 32:
            drained(database)  # the phase's CPU figures are of its own orders alone
        parts = _parts(server)
        by_part = {part: _cpu(pids) for part, pids in parts.items()}
        client_cpu, idle = time.process_time(), _idle()
        result = load(port, requests, concurrency, 202)
        figures[f"POST c{concurrency}"] = result
        _show(name, f"POST /selections c={concurrency:<2}", result)
        if concurrency == 32:  # what an order cost this machine: its speed varies by the hour
            client_cpu = time.process_time() - client_cpu
            idle_now = _idle()
            used = {part: _cpu(parts[part]) - before for part, before in by_part.items()}
            behind = drained(database)
            run = {part: _cpu(parts[part]) - before for part, before in by_part.items()}

            print(
                f"  {name:<28}   CPU per accepted order while accepting: "
                f"{_per_order(used, len(requests))}, "
                f"client {client_cpu / len(requests) * 1000:.2f} ms; the machine idle "
                f"{100 * (idle_now[0] - idle[0]) / max(1, idle_now[1] - idle[1]):.0f} %"
            )
            print(
                f"  {name:<28}   the worker ran the last of them {behind:.2f} s after the "
                f"last was accepted; CPU per order, accepted and run: "
                f"{_per_order(run, len(requests))}"
            )
    gets = [plain_get(port, "/api/v1/isps")] * int(8000 * scale)
    load(port, gets[:500], 32, 200)
    result = load(port, gets, 32, 200)
    figures["GET isps"] = result
    _show(name, "GET /isps        c=32", result)
    return figures


def _show(name: str, what: str, r: dict[str, Any]) -> None:
    print(
        f"  {name:<28} {what}: {r['rate']:7.0f}/s  p50 {r['p50']:6.1f} ms  "
        f"p99 {r['p99']:6.1f} ms  errors {r['errors']} {' '.join(r['kinds'])}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=1.0, help="Multiply request counts.")
    parser.add_argument("--http-workers", help="(a)'s API processes (default: vpop serve's)")
    parser.add_argument("--http-threads", help="their threads (default: vpop serve's)")
    parser.add_argument("--no-peer", action="store_true", help="Only (a) (for tuning runs).")
    parser.add_argument(
        "--no-pin", action="store_true", help="(a) without pinning its processes to CPUs."
    )
    args = parser.parse_args()
    lab = Lab()
    state, built = lab_state(lab)
    key = secrets.token_bytes(32)

    subscribers = [line["subscriber"] for line in state["lines"]]
    print(f"ingress: {len(subscribers)} subscribers on {len(state['uplinks']) // 3} routers")
    results = {}
    try:
        for name, options in (
            (
                "(a) vpop serve (gunicorn)",
                (("--http-workers", args.http_workers) if args.http_workers else ())
                + (("--http-threads", args.http_threads) if args.http_threads else ())
                + (("--no-pin",) if args.no_pin else ()),
            ),
            ("(b) --single-process", ("--single-process",)),
        ):
            if args.no_peer and "single" in name:
                continue
            env = fresh_env(state, key)
            proc, port = start(env, *options)
            try:
                database = Path(env["VPOP_STATE_DIR"]) / "vpop.sqlite"
                results[name] = measure(
                    name, proc.pid, port, key, subscribers, args.scale, database
                )
            finally:
                print(f"  {name:<28} stopped in {stop(proc):.2f} s (SIGTERM)")
                log = Path(env["VPOP_STATE_DIR"]) / f"serve-{port}.log"
                for line in log.read_text(errors="replace").splitlines():
                    # a killed child; how long each child took to stop; what the worker waited for
                    if any(
                        said in line
                        for said in ("did not stop within", "stopped in", "running at the stop")
                    ):
                        print(f"  {name:<28}   {line.strip()}")
        a = next(iter(results.values()))
        for b in list(results.values())[1:]:
            for what in a:
                print(f"  ratio (a)/(b) {what:<10}: {a[what]['rate'] / b[what]['rate']:5.1f}x")
        c32, isps = a["POST c32"], a["GET isps"]
        ok = c32["rate"] >= 1000 and c32["p99"] <= 50 and c32["errors"] == 0
        print(
            f"  target (a) POST c=32 >= 1000/s, p99 <= 50 ms, no errors: "
            f"{'met' if ok else 'NOT met'}; GET /isps >= 2000/s: "
            f"{'met' if isps['rate'] >= 2000 else 'NOT met'}"
        )
    finally:
        if built:
            lab.down()


if __name__ == "__main__":
    main()
