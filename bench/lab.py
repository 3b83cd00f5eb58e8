"""Lab up/down times: median of several runs, and the ratio of up to down.

Run: .venv/bin/python bench/lab.py [--runs 7] [--subscribers 4] [--routers 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

from vpop.lab.builder import Lab


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--subscribers", type=int, default=4)
    parser.add_argument("--routers", type=int, default=2, help="2..8")
    args = parser.parse_args()
    lab = Lab()
    ups: list[float] = []
    downs: list[float] = []
    for _ in range(args.runs):
        started = time.perf_counter()
        lab.up(subscribers=args.subscribers, routers=args.routers)
        ups.append(time.perf_counter() - started)
        started = time.perf_counter()
        lab.down()
        downs.append(time.perf_counter() - started)
    up, down = statistics.median(ups), statistics.median(downs)
    for name, values, median in (("up", ups, up), ("down", downs, down)):
        low, high = min(values) * 1000, max(values) * 1000
        print(f"lab {name:4} median {median * 1000:7.1f} ms  (min {low:.1f}, max {high:.1f})")
    print(
        f"runs {args.runs}, subscribers {args.subscribers}, routers {args.routers}; "
        f"up/down ratio {up / down:.2f}; "
        f"up is {up / 2.0 * 100:.0f}% of the 2000 ms budget"
    )


if __name__ == "__main__":
    main()
