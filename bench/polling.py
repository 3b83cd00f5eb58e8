"""Counter polling throughput: device-polls per second per core, fast path against slow path.

Both paths poll the lab's two routers (``--routers N``: N, 2-8), each with 200 subscriber lines
(2 real subscribers and 198 extra lines on veth pairs), i.e. about 200 interfaces and 400
named line counters:

* vpop: the monitor's counters job for both routers (``monitor_task("counters", ["rc1",
  "rc2"])``, run in this process as a worker runs it): each router's lock taken, then
  ``vpop.monitoring.poll_counters_many`` -- one request to each warm router agent at once,
  which runs ``ip -s -j link`` and ``nft -j`` on the router and sends back only the figures; a kept
  Nornir of the routers; deltas and rates (common case without objects per series), one
  transaction for both: the samples in one multi-row INSERT per router, hot statements
  compiled once.
* one router per job: the same job for each router in turn (``monitor_task("counters",
  ["rc1"])``, the monitor's jobs before batches), to show what the batch saves.
* slow path: the same counters fetched the same way, turned into the text an IOS router
  prints for ``show interfaces``, parsed with ntc-templates' TextFSM template, and stored
  one row per commit -- what a text-scraping poller does.

"Per core" is polls divided by this process's CPU seconds (the routers' own work runs in
other processes); wall-clock rates are printed too. Both paths poll from one CPU, as the
worker process of ``vpop serve`` (which runs the polls) does (:mod:`vpop.core.affinity`;
``--no-pin``: from any CPU); the lab's routers run on any.

Run: flock /tmp/vpop-lab.lock .venv/bin/python bench/polling.py [--polls 400] [--slow-polls 10]
[--no-pin] [--routers 2]
It rebuilds the default lab (the lock keeps it from running beside the lab tests).
``--profile FILE`` writes a cProfile of the vpop polls (slower while profiling).
"""

from __future__ import annotations

import argparse
import atexit
import cProfile
import os
import shutil
import tempfile
import time
from pathlib import Path

WORK = Path(tempfile.mkdtemp(prefix="vpop-bench-poll-"))
atexit.register(shutil.rmtree, WORK, ignore_errors=True)  # nothing left behind
os.environ["VPOP_DATABASE_URL"] = f"sqlite:///{WORK / 'vpop.sqlite'}"
os.environ["VPOP_QUEUE_URL"] = f"sqlite:///{WORK / 'queue.sqlite'}"
os.environ["VPOP_POLL_COUNTERS_SECONDS"] = "1"  # the jobs' interval: a gap is 3 of them

from benchlines import add_lines, remove_lines  # noqa: E402

from tasks.collect import COUNTER_NAMES, collect_counters  # noqa: E402
from tasks.collect_ios import interfaces_from_ntc, parse_show_interfaces  # noqa: E402
from tasks.connection import close_pool  # noqa: E402
from vpop.catalogue.models import Line  # noqa: E402
from vpop.core import affinity  # noqa: E402
from vpop.core.db import session_scope  # noqa: E402
from vpop.core.time import utcnow  # noqa: E402
from vpop.jobs.queue import monitor_task  # noqa: E402
from vpop.lab.builder import Lab  # noqa: E402
from vpop.lab.registry import register_lab  # noqa: E402
from vpop.monitoring import poller as monitoring  # noqa: E402
from vpop.monitoring.models import CounterSample  # noqa: E402
from vpop.network.factory import open_nornir  # noqa: E402
from vpop.selection import engine  # noqa: E402

TARGET_RATE = 150.0  # device-polls per second per core (issue 13)
TARGET_RATIO = 3.0
ROUNDS = 2


def ios_text(counters: dict[str, dict[str, int]]) -> str:
    """The counters as IOS ``show interfaces`` prints them (the text a scraper receives)."""
    blocks = []
    for i, (name, c) in enumerate(sorted(counters.items())):
        blocks.append(
            f"GigabitEthernet0/{i} is up, line protocol is up \n"
            f"  Hardware is iGbE, address is 5254.0019.{i:04x} (bia 5254.0019.{i:04x})\n"
            f"  Description: {name}\n"
            "  MTU 1500 bytes, BW 1000000 Kbit/sec, DLY 10 usec, \n"
            "     reliability 255/255, txload 1/255, rxload 1/255\n"
            "  Encapsulation ARPA, loopback not set\n"
            "  Keepalive set (10 sec)\n"
            "  Full Duplex, 1Gbps, media type is RJ45\n"
            "  ARP type: ARPA, ARP Timeout 04:00:00\n"
            "  Last input 00:00:00, output 00:00:00, output hang never\n"
            '  Last clearing of "show interface" counters never\n'
            f"  Input queue: 0/75/{c['drops']}/0 (size/max/drops/flushes); Total output drops: 0\n"
            "  Queueing strategy: fifo\n"
            "  Output queue: 0/40 (size/max)\n"
            "  5 minute input rate 0 bits/sec, 0 packets/sec\n"
            "  5 minute output rate 0 bits/sec, 0 packets/sec\n"
            f"     {c['rx_packets']} packets input, {c['rx_bytes']} bytes, 0 no buffer\n"
            "     Received 0 broadcasts (0 IP multicasts)\n"
            "     0 runts, 0 giants, 0 throttles \n"
            f"     {c['errors']} input errors, 0 CRC, 0 frame, 0 overrun, 0 ignored\n"
            "     0 watchdog, 0 multicast, 0 pause input\n"
            f"     {c['tx_packets']} packets output, {c['tx_bytes']} bytes, 0 underruns\n"
            "     0 output errors, 0 collisions, 0 interface resets\n"
            "     0 unknown protocol drops\n"
            "     0 babbles, 0 late collision, 0 deferred\n"
            "     0 lost carrier, 0 no carrier, 0 pause output\n"
            "     0 output buffer failures, 0 output buffers swapped out\n"
        )
    return "".join(blocks)


def slow_poll(router: str, lines: list[str]) -> int:
    """Fetch the same counters, parse them as text with TextFSM, commit row by row."""
    with open_nornir() as nr:
        result = nr.filter(name=router).run(task=collect_counters, lines=lines)[router]
    data = result[0].result
    series = {**data["interfaces"], **{f"line-{k}": v for k, v in data["lines"].items()}}
    counters = {name: dict(zip(COUNTER_NAMES, v, strict=True)) for name, v in series.items()}
    parsed = interfaces_from_ntc(parse_show_interfaces(ios_text(counters)))
    now = utcnow()
    for values in parsed.values():
        with session_scope() as session:  # one commit per row
            session.add(CounterSample(router=router, kind="interface", name="x", at=now, **values))
    return len(parsed)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--polls", type=int, default=400)
    parser.add_argument("--slow-polls", type=int, default=10)
    parser.add_argument("--subscribers", type=int, default=200, help="lines per router")
    parser.add_argument("--profile", type=Path, help="write a cProfile of the vpop polls here")
    parser.add_argument("--no-pin", action="store_true", help="poll on any CPU")
    parser.add_argument("--routers", type=int, default=2, help="lab routers, 2-8, all in one batch")
    args = parser.parse_args()
    lab = Lab()
    state = lab.up(subscribers=2 * args.routers, routers=args.routers)
    routers = tuple(n for n, v in state["nodes"].items() if v["kind"] == "router")
    if not args.no_pin:  # as the worker process of `vpop serve` runs, which polls: one CPU
        affinity.pin(affinity.worker_cpu(affinity.allowed_cpus()))
    try:
        register_lab(state)
        # 2 real subscribers per router + the rest
        add_lines(args.subscribers - 2, ipv6=True, routers=routers)
        for router in routers:
            assert engine.reconcile(router).status == "SUCCESS"
        settings = monitoring.MonitorSettings(counters_seconds=1.0)
        with session_scope() as session:
            lines = {
                r: [ln.interface for ln in session.query(Line).filter(Line.router == r)]
                for r in routers
            }
        assert len({len(found) for found in lines.values()}) == 1, "lines differ per router"
        for router in routers:  # warm: sessions, accounting counters, previous readings
            monitor_task.call_local("counters", list(routers))  # and what the jobs import
            monitor_task.call_local("counters", [router])
            slow_poll(router, lines[router])
        samples = monitoring.poll_counters("rc1", settings=settings)["samples"]

        # interleaved rounds: both paths see the same machine (other load comes and goes)
        profile = cProfile.Profile() if args.profile else None
        fast_cpu = fast_wall = single_cpu = single_wall = slow_cpu = slow_wall = 0.0
        rows = 0
        for round_ in range(ROUNDS):
            cpu, wall = time.process_time(), time.perf_counter()
            if profile:
                profile.enable()
            for _ in range(args.polls // ROUNDS // len(routers)):
                polled = monitor_task.call_local("counters", list(routers))
                assert all("error" not in summary for summary in polled.values()), polled
            if profile:
                profile.disable()
            fast_cpu += time.process_time() - cpu
            fast_wall += time.perf_counter() - wall
            cpu, wall = time.process_time(), time.perf_counter()
            for i in range(args.polls // ROUNDS):
                polled = monitor_task.call_local("counters", [routers[i % len(routers)]])
                assert all("error" not in summary for summary in polled.values()), polled
            single_cpu += time.process_time() - cpu
            single_wall += time.perf_counter() - wall
            cpu, wall = time.process_time(), time.perf_counter()
            for i in range(args.slow_polls // ROUNDS):
                router = routers[(i + round_) % len(routers)]
                rows = slow_poll(router, lines[router])
            slow_cpu += time.process_time() - cpu
            slow_wall += time.perf_counter() - wall
        if profile:
            profile.dump_stats(args.profile)
        polls = args.polls // ROUNDS // len(routers) * len(routers) * ROUNDS
        single_polls = args.polls // ROUNDS * ROUNDS
        slow_polls = args.slow_polls // ROUNDS * ROUNDS

        fast_rate, slow_rate = polls / fast_cpu, slow_polls / slow_cpu
        single_rate = single_polls / single_cpu
        ratio = fast_rate / slow_rate
        print(
            f"{len(routers)} routers in a batch, {len(lines['rc1'])} lines per router; "
            f"{samples} counter series per poll ({rows} rows in the slow path)"
        )
        print(
            f"  vpop (JSON, bulk insert)       {fast_rate:8.1f} polls/s/core   "
            f"{polls / fast_wall:8.1f} polls/s wall   n={polls}"
        )
        print(
            f"  vpop, one router per job       {single_rate:8.1f} polls/s/core   "
            f"{single_polls / single_wall:8.1f} polls/s wall   n={single_polls}   "
            f"(batch {fast_rate / single_rate:.2f}x)"
        )
        print(
            f"  slow (TextFSM, commit per row) {slow_rate:8.1f} polls/s/core   "
            f"{slow_polls / slow_wall:8.1f} polls/s wall   n={slow_polls}"
        )
        print(f"  ratio vpop/slow per core: {ratio:6.1f}x")
        met = fast_rate >= TARGET_RATE and ratio >= TARGET_RATIO
        print(
            f"  targets: >= {TARGET_RATE:.0f} polls/s/core, >= {TARGET_RATIO:.0f}x: "
            + ("met" if met else "NOT met")
        )
    finally:
        close_pool()
        lab.down()
        remove_lines()


if __name__ == "__main__":
    main()
