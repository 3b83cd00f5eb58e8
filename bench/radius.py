"""Access-Request -> Access-Accept through FreeRADIUS + vpop, against FreeRADIUS alone.

Two FreeRADIUS servers run side by side on 127.0.0.1, started from the same rendered
configuration (vpop's, ``vpop/aaa/freeradius.py``):

* vpop: rlm_rest hands every request to vpop's policy endpoint (the app on a threaded HTTP
  server, as ``vpop serve`` runs it), which resolves the line by its Calling-Station-Id,
  chooses the ISP, stores the decision and answers with the ISP, ``Class`` and
  ``Acct-Interim-Interval``;
* ceiling: the same server answering from its own ``files`` module (one DEFAULT entry with the
  same reply attributes), i.e. what FreeRADIUS costs with no policy behind it.

A pyrad client per thread sends Access-Requests for random subscribers (500 lines) at each
concurrency, the two targets interleaved; requests/s, p50 and p99 are printed per target and
the ratio vpop/ceiling beside them.

Run: .venv/bin/python bench/radius.py [--requests 2000] [--concurrency 1 8 32]
Needs Debian's freeradius packages (scripts/install.sh installs them).
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

WORK = Path(tempfile.mkdtemp(prefix="vpop-bench-radius-"))
atexit.register(shutil.rmtree, WORK, ignore_errors=True)  # nothing left behind
SECRET = "bench-secret-1"
LINES = 500


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


AUTH_PORT, ACCT_PORT = _free_udp_port(), _free_udp_port()
CEILING_AUTH, CEILING_ACCT = _free_udp_port(), _free_udp_port()
os.environ.update(
    {
        "VPOP_DATABASE_URL": f"sqlite:///{WORK / 'vpop.sqlite'}",
        "VPOP_QUEUE_URL": f"sqlite:///{WORK / 'queue.sqlite'}",
        "VPOP_STATE_DIR": str(WORK / "state"),
        "VPOP_RADIUS_SECRET": SECRET,
        "VPOP_RADIUS_AUTH_PORT": str(AUTH_PORT),
        "VPOP_RADIUS_ACCT_PORT": str(ACCT_PORT),
        "VPOP_RADIUS_DEFAULT_ISP": "isp-c",
    }
)

from pyrad.client import Client  # noqa: E402
from pyrad.dictionary import Dictionary  # noqa: E402
from pyrad.packet import AccessAccept, AccessRequest  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from vpop.aaa.service import RadiusPaths, prepare, start_radius, stop_radius  # noqa: E402
from vpop.catalogue.models import Isp, Line, Selection, Subscriber  # noqa: E402
from vpop.core.db import dispose_engines, session_scope  # noqa: E402
from vpop.core.migrate import upgrade  # noqa: E402
from webhooks import create_app  # noqa: E402

DICTIONARY = """\
ATTRIBUTE	User-Name		1	string
ATTRIBUTE	NAS-IP-Address		4	ipaddr
ATTRIBUTE	Filter-Id		11	string
ATTRIBUTE	Reply-Message		18	string
ATTRIBUTE	Class			25	octets
ATTRIBUTE	Calling-Station-Id	31	string
ATTRIBUTE	NAS-Identifier		32	string
ATTRIBUTE	Acct-Interim-Interval	85	integer
"""


def seed() -> None:
    """A migrated database: isp-a, isp-c; LINES subscribers whose lines already use isp-c
    (so an Access-Accept needs no order: the figure is the policy, not a router change)."""
    url = os.environ["VPOP_DATABASE_URL"]
    upgrade(url)
    with session_scope(url) as session:
        session.add_all([Isp(id="isp-a", name="Alpha"), Isp(id="isp-c", name="Gamma")])
        session.flush()
        for k in range(1, LINES + 1):
            session.add(Subscriber(id=f"sub{k}", name=f"Subscriber {k}"))
            session.flush()
            line = Line(
                subscriber_id=f"sub{k}",
                router="rc1",
                interface=f"sub{k}",
                prefix=f"192.0.2.{k % 250 + 2}/32" if k <= 250 else f"198.51.100.{k - 248}/32",
                calling_number=f"+312055{k:05d}",
            )
            session.add(line)
            session.flush()
            session.add(Selection(line_id=line.id, isp_id="isp-c"))


@contextmanager
def served_app() -> Iterator[str]:
    """vpop's app on a threaded HTTP server at 127.0.0.1 (as `vpop serve` runs it)."""
    http = make_server("127.0.0.1", 0, create_app(), threaded=True)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{http.server_port}"
    finally:
        http.shutdown()
        thread.join(10)
        http.server_close()


def ceiling_config(vpop_dir: Path) -> Path:
    """FreeRADIUS's own `files` answering with the same reply, from vpop's rendered config:
    the same global settings, clients and dictionary; its own directory, ports and pid."""
    target = WORK / "ceiling"
    shutil.copytree(vpop_dir, target)
    text = (target / "radiusd.conf").read_text().replace(str(vpop_dir), str(target))
    text = re.sub(r"pidfile = .*", f"pidfile = {target / 'radiusd.pid'}", text)
    text = re.sub(r"(\n\s*file = ).*", rf"\g<1>{target / 'radiusd.log'}", text, count=1)
    head = text[: text.index("\nmodules {")]
    (target / "users").write_text(
        'DEFAULT Auth-Type := Accept\n\tFilter-Id = "vpop-isp-c",\n'
        "\tClass = 0x76706f702d6365696c696e67,\n\tAcct-Interim-Interval = 300\n"
    )
    (target / "radiusd.conf").write_text(
        head
        + f"""
modules {{
	files {{
		filename = ${{confdir}}/users
	}}
}}

server ceiling {{
	listen {{
		type = auth
		ipaddr = 127.0.0.1
		port = {CEILING_AUTH}
	}}
	listen {{
		type = acct
		ipaddr = 127.0.0.1
		port = {CEILING_ACCT}
	}}
	authorize {{
		files
	}}
	authenticate {{
	}}
	post-auth {{
	}}
}}
"""
    )
    return target


@contextmanager
def running_ceiling(config_dir: Path) -> Iterator[None]:
    """FreeRADIUS with the ceiling configuration, until the block ends (stopped by PID)."""
    binary = shutil.which("freeradius") or "/usr/sbin/freeradius"
    log = config_dir / "stdout.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [binary, "-f", "-d", str(config_dir), "-l", "stdout"], stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 20
        while "Ready to process requests" not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the ceiling FreeRADIUS did not start:\n{log.read_text()}")
            time.sleep(0.02)
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def load(
    port: int, requests: int, concurrency: int, rng: random.Random
) -> tuple[float, list[float]]:
    """Send ``requests`` Access-Requests from ``concurrency`` threads (one pyrad client
    each); return the wall seconds and each request's latency in ms. Refuses any answer but
    Access-Accept: a benchmark of rejects would measure the wrong path."""
    dictionary = Dictionary(str(WORK / "dictionary.pyrad"))
    numbers = [f"+312055{rng.randint(1, LINES):05d}" for _ in range(requests)]
    local = threading.local()

    def one(number: str) -> float:
        client = getattr(local, "client", None)
        if client is None:
            client = Client(
                server="127.0.0.1", authport=port, secret=SECRET.encode(), dict=dictionary
            )
            client.timeout, client.retries = 5, 1
            local.client = client
        packet = client.CreateAuthPacket(code=AccessRequest)
        packet["User-Name"] = number
        packet["Calling-Station-Id"] = number
        packet["NAS-Identifier"] = "bench"
        started = time.perf_counter()
        reply = client.SendPacket(packet)
        elapsed = (time.perf_counter() - started) * 1000
        if reply.code != AccessAccept:
            raise SystemExit(f"{number}: answer code {reply.code}, not Access-Accept")
        return elapsed

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        latencies = list(pool.map(one, numbers))
    return time.perf_counter() - started, latencies


def percentile(values: list[float], pct: float) -> float:
    """The ``pct`` percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))]


def main() -> None:
    """Start both servers, run the interleaved loads, print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    (WORK / "dictionary.pyrad").write_text(DICTIONARY)
    seed()
    paths = RadiusPaths.from_settings()
    rng = random.Random(1)
    try:
        with served_app() as base:
            with session_scope() as session:
                config_dir = prepare(session, vpop_url=base, paths=paths)
            start_radius(config_dir, paths=paths)
            with running_ceiling(ceiling_config(config_dir)):
                targets: dict[str, int] = {"vpop": AUTH_PORT, "ceiling": CEILING_AUTH}
                for port in targets.values():
                    load(port, 50, 4, rng)  # warm: connections, caches, rlm_rest's pool
                print(f"Access-Request -> Access-Accept, {args.requests} requests per cell")
                for concurrency in args.concurrency:
                    rates: dict[str, float] = {}
                    for name, port in targets.items():
                        seconds, latencies = load(port, args.requests, concurrency, rng)
                        rates[name] = args.requests / seconds
                        print(
                            f"  c={concurrency:<3} {name:<8} {rates[name]:8.0f} req/s"
                            f"   p50 {statistics.median(latencies):7.2f} ms"
                            f"   p99 {percentile(latencies, 99):7.2f} ms"
                        )
                    print(
                        f"  c={concurrency:<3} ratio vpop/ceiling (req/s): "
                        f"{rates['vpop'] / rates['ceiling']:.2f}"
                    )
    finally:
        stop_radius(paths)
        dispose_engines()
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
