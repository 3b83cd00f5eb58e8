"""Lab up/down times: median of several runs, and the ratio of up to down.

Run: .venv/bin/python bench/lab.py [--runs 7] [--subscribers 4]
"""

from __future__ import annotations

import argparse
import statistics
import time

from vpop.lab import Lab


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--subscribers", type=int, default=4)
    args = parser.parse_args()
    lab = Lab()
    ups: list[float] = []
    downs: list[float] = []
    for _ in range(args.runs):
        started = time.perf_counter()
        lab.up(subscribers=args.subscribers)
        ups.append(time.perf_counter() - started)
        started = time.perf_counter()
        lab.down()
        downs.append(time.perf_counter() - started)
    up, down = statistics.median(ups), statistics.median(downs)
    print(f"lab up   median {up * 1000:7.1f} ms  (min {min(ups) * 1000:.1f}, max {max(ups) * 1000:.1f})")
    print(f"lab down median {down * 1000:7.1f} ms  (min {min(downs) * 1000:.1f}, max {max(downs) * 1000:.1f})")
    print(f"runs {args.runs}, subscribers {args.subscribers}; up/down ratio {up / down:.2f}; "
          f"up target 2000 ms -> {up / 2.0 * 100:.0f}% of budget")


if __name__ == "__main__":
    main()
