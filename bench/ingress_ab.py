"""Ingress A/B: two ``vpop serve`` set-ups side by side, in alternating chunks of signed selections.

This machine's speed swings by up to 1.6x within minutes, so two runs of ``bench/ingress.py``
one after the other compare the minutes as much as the set-ups. Here both servers are up at
once and take the load in turns: N chunks of signed dry-run ``POST /api/v1/selections`` at
concurrency 32, A then B, then B then A, and so on; before every chunk both servers' workers
have run every order accepted so far, so neither chunk shares the machine with the other's
backlog. It prints, for each, the rate and the p50/p99 latency over all its chunks, the API
processes' CPU per accepted order, and how many chunk pairs each won; then the ratios B/A.

A set-up is ``vpop serve`` options (``--a "--http-threads 8" --b "--http-threads 16"``) and,
optionally, another source tree for B (``--b-source /path/to/worktree``: B's server imports
vpop from there, to compare a change against the code before it).

Run as root: ``flock /tmp/vpop-lab.lock .venv/bin/python bench/ingress_ab.py --a "..." --b "..."
[--chunks 12] [--per-chunk 2000]`` (it brings the default lab up if none is up, and leaves it
as it found it).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import ingress  # noqa: E402

from vpop.lab.builder import Lab  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Side:
    """One set-up under test: its server and what it measured."""

    label: str
    options: list[str]
    source: Path
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    database: Path = Path()
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    orders: int = 0
    api_cpu: float = 0.0
    errors: int = 0
    chunk_rates: list[float] = field(default_factory=list)


def start(side: Side, state: dict[str, Any], key: bytes) -> None:
    """Start ``side``'s server on a fresh database and state directory."""
    env = ingress.fresh_env(state, key)
    env["PYTHONPATH"] = str(side.source)  # its vpop before the installed one
    here = Path.cwd()
    os.chdir(side.source)  # `python -m vpop.cli` looks in the working directory first
    try:
        side.proc, side.port = ingress.start(env, *side.options)
    finally:
        os.chdir(here)
    side.database = Path(env["VPOP_STATE_DIR"]) / "vpop.sqlite"


def chunk(side: Side, sides: list[Side], requests: list[bytes]) -> None:
    """One chunk at concurrency 32 against ``side``, once every server has drained."""
    for each in sides:
        ingress.drained(each.database)
    assert side.proc is not None
    api = ingress._parts(side.proc.pid).get("API", [])
    before = ingress._cpu(api)
    result = ingress.load(side.port, requests, 32, 202)
    side.api_cpu += ingress._cpu(api) - before
    side.latencies += result["latencies"]
    side.seconds += len(requests) / result["rate"]
    side.orders += len(requests)
    side.errors += result["errors"]
    side.chunk_rates.append(result["rate"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--a", default="", help="vpop serve options of A")
    parser.add_argument("--b", default="", help="vpop serve options of B")
    parser.add_argument("--b-source", type=Path, default=ROOT, help="B's source tree")
    parser.add_argument("--chunks", type=int, default=12, help="chunks per side (1-100)")
    parser.add_argument("--per-chunk", type=int, default=2000, help="selections per chunk")
    args = parser.parse_args()
    if not 1 <= args.chunks <= 100 or not 100 <= args.per_chunk <= 100_000:
        parser.error("--chunks must be 1-100 and --per-chunk 100-100000")
    lab = Lab()
    state, built = ingress.lab_state(lab)
    key = secrets.token_bytes(32)
    subscribers = [line["subscriber"] for line in state["lines"]]
    sides = [
        Side("A", shlex.split(args.a), ROOT),
        Side("B", shlex.split(args.b), args.b_source.resolve()),
    ]

    def selections(side: Side, count: int) -> list[bytes]:
        return ingress.signed_selections(side.port, key, subscribers, count)

    try:
        for side in sides:
            start(side, state, key)
            print(f"{side.label}: vpop serve {' '.join(side.options)} (source {side.source})")
        for side in sides:  # warm-up: connections, caches, the first runs
            ingress.load(side.port, selections(side, 400), 32, 202)
        for number in range(args.chunks):  # A first in even chunks, B first in odd ones
            for side in sides if number % 2 == 0 else sides[::-1]:
                chunk(side, sides, selections(side, args.per_chunk))
        report(sides)
    finally:
        for side in sides:
            if side.proc is not None:
                ingress.stop(side.proc)
        if built:
            lab.down()


def report(sides: list[Side]) -> None:
    """Each side's figures over all its chunks, and the ratios B/A."""
    figures = {}
    for side in sides:
        side.latencies.sort()
        n = len(side.latencies)
        figures[side.label] = {
            "rate": side.orders / side.seconds,
            "p50": side.latencies[n // 2] * 1000,
            "p99": side.latencies[min(n - 1, int(0.99 * n))] * 1000,
            "cpu": side.api_cpu / side.orders * 1000,
        }
        f = figures[side.label]
        print(
            f"  {side.label}  POST /selections c=32: {f['rate']:7.0f}/s  p50 {f['p50']:5.1f} ms  "
            f"p99 {f['p99']:5.1f} ms  errors {side.errors}  API CPU {f['cpu']:.3f} ms/order  "
            f"({len(side.chunk_rates)} chunks of {side.orders // len(side.chunk_rates)})"
        )
    a, b = sides
    won = sum(rb > ra for ra, rb in zip(a.chunk_rates, b.chunk_rates, strict=True))
    fa, fb = figures["A"], figures["B"]
    print(
        f"  B/A: rate {fb['rate'] / fa['rate']:.2f}x, p99 {fb['p99'] / fa['p99']:.2f}x, "
        f"API CPU per order {fb['cpu'] / fa['cpu']:.2f}x; B faster in {won} of "
        f"{len(a.chunk_rates)} chunk pairs"
    )


if __name__ == "__main__":
    main()
