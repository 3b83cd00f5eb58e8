"""The burst of bench/selection.py at 2, 4 and 8 routers: how the drain scales with routers.

For each router count, a fresh lab with that many routers and the same subscribers (48 by
default, round-robin over the routers); N orders (random subscriber, random ISP) are recorded,
then one worker thread per router drains them (``engine.process_router``), timed from start to
the last order final:
  vpop   coalesced runs (every RECEIVED order of a router in one run, as the worker does);
  peer   one run per order (the same engine with coalescing off), measured in the same sitting.
Printed per count: orders, routers, drain seconds, orders/s, the ratio against the 2-router
figure and against the one-run-per-order peer. Every order must end DONE_SUCCESS. Both drain
on one CPU, as the worker process of ``vpop serve`` runs (:mod:`vpop.core.affinity`;
``--no-pin``: on any CPU), while the lab's routers run on any.

Run (root): .venv/bin/python bench/burst.py [--orders 1000] [--subscribers 48]
            [--routers 2 4 8] [--no-pin]
It builds its own lab (VPOP_LAB_DIR=/run/vpop-burst, prefix vpop-burst-), so the default lab
is left alone; run it under `flock /tmp/vpop-lab.lock` all the same (CPU, sshd ports).
"""

from __future__ import annotations

import argparse
import os
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path

os.environ["VPOP_LAB_DIR"] = "/run/vpop-burst"
os.environ["VPOP_LAB_PREFIX"] = "vpop-burst-"
os.environ.pop("VPOP_INVENTORY_HOSTS", None)

# bench/selection.py: its database and queue (a fresh temporary directory) and its helpers
import selection  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from tasks.connection import close_pool  # noqa: E402
from vpop.core import affinity  # noqa: E402
from vpop.core.db import session_scope  # noqa: E402
from vpop.lab.builder import Lab  # noqa: E402
from vpop.lab.registry import register_lab  # noqa: E402
from vpop.selection import engine  # noqa: E402
from vpop.selection.models import Order  # noqa: E402
from vpop.selection.service import Caller, SelectionRequest, submit_selection  # noqa: E402

ISPS = ("isp-a", "isp-b", "isp-c")


@dataclass(frozen=True)
class Drain:
    """One timed drain."""

    orders: int
    routers: int
    seconds: float
    runs: int

    @property
    def rate(self) -> float:
        """Orders made final per second."""
        return self.orders / self.seconds


def drain(
    routers: tuple[str, ...], subs: list[str], count: int, coalesce: bool, rng: random.Random
) -> Drain:
    """``selection.burst`` over any routers: record ``count`` orders, then time one thread per
    router draining them; every order must end DONE_SUCCESS."""
    engine.COALESCE = coalesce
    caller = Caller("bench", "admin")
    ids = [
        submit_selection(
            SelectionRequest(isp=rng.choice(ISPS), subscriber=rng.choice(subs)), caller, None
        )[0].id
        for _ in range(count)
    ]
    runs: list[int] = []
    lock = threading.Lock()

    def work(router: str) -> None:
        made = engine.process_router(router)
        with lock:
            runs.extend(made)

    threads = [threading.Thread(target=work, args=(r,)) for r in routers]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    engine.COALESCE = True
    with session_scope() as session:
        statuses = dict(
            session.execute(
                select(Order.status, func.count()).where(Order.id.in_(ids)).group_by(Order.status)
            ).all()
        )
    if statuses != {"DONE_SUCCESS": count}:
        raise SystemExit(f"{len(routers)} routers, coalesce={coalesce}: statuses {statuses}")
    return Drain(count, len(routers), elapsed, len(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--subscribers", type=int, default=48)
    parser.add_argument("--routers", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--no-pin", action="store_true", help="Drain on any CPU.")
    args = parser.parse_args()
    everywhere = affinity.allowed_cpus()
    rng = random.Random(13)
    lab = Lab(Path(os.environ["VPOP_LAB_DIR"]), prefix=os.environ["VPOP_LAB_PREFIX"])
    results: list[tuple[Drain, Drain]] = []
    print(
        f"burst: {args.orders} orders over {args.subscribers} subscribers, "
        f"drained by one worker thread per router (database {selection.WORK})"
    )
    try:
        for count in args.routers:
            os.sched_setaffinity(0, everywhere)  # the lab's daemons may run on any CPU
            state = lab.up(subscribers=args.subscribers, routers=count)
            if not args.no_pin:  # as the worker process of `vpop serve` runs: on one CPU
                affinity.pin(affinity.worker_cpu(everywhere))
            register_lab(state)
            routers = tuple(n for n, v in state["nodes"].items() if v["kind"] == "router")
            subs = [line["subscriber"] for line in state["lines"]]
            # warm: sessions, agents, templates; and every router at vpop's base config
            for router in routers:
                engine.reconcile(router)
            vpop = drain(routers, subs, args.orders, True, rng)
            peer = drain(routers, subs, args.orders, False, rng)
            results.append((vpop, peer))
            print(
                f"  {count} routers: vpop {vpop.seconds:6.2f} s ({vpop.runs} runs), "
                f"peer {peer.seconds:6.2f} s ({peer.runs} runs)"
            )
            close_pool()
    finally:
        close_pool()
        lab.down()
    base = results[0][0]
    print(
        f"{'orders':>7} {'routers':>7} {'drain s':>8} {'orders/s':>9} "
        f"{'vs ' + str(base.routers) + ' routers':>13} {'peer s':>8} {'peer/s':>8} "
        f"{'vs peer':>8}"
    )
    for vpop, peer in results:
        print(
            f"{vpop.orders:7d} {vpop.routers:7d} {vpop.seconds:8.2f} {vpop.rate:9.1f} "
            f"{vpop.rate / base.rate:12.2f}x {peer.seconds:8.2f} {peer.rate:8.1f} "
            f"{peer.seconds / vpop.seconds:7.1f}x"
        )
    print(
        "vs N routers: orders/s against the first count's; vs peer: the one-run-per-order "
        "peer's drain time over vpop's, same lab, same sitting"
    )


if __name__ == "__main__":
    main()
