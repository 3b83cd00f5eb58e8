"""A process that runs the worker or the scheduler settles its heap before its parts start:
Nornir's plugins loaded (not by the first selection) and everything alive then kept out of the
garbage collector's full passes (a pass over the worker's start-up objects took 270-290 ms).

Each case runs in a fresh interpreter: freezing this test process's heap would keep every
earlier test's garbage for the rest of the run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# a part that reports what it finds when it starts, then stops the process like SIGTERM
PROGRAM = """
import gc, os, signal, sys
from vpop.jobs.runner import run_until_signal

class Probe:
    def start(self):
        print("frozen", gc.get_freeze_count())
        print("netmiko", "netmiko" in sys.modules, "napalm", "napalm" in sys.modules)
        # a collection now walks only what was made since: far fewer objects
        print("young", len(gc.get_objects()))
        os.kill(os.getpid(), signal.SIGTERM)

    def stop(self, timeout):
        print("stopped")

print("before", "netmiko" in sys.modules, gc.get_freeze_count())
run_until_signal([Probe()])
"""


def test_parts_start_with_the_plugins_loaded_and_the_heap_frozen() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = {line.partition(" ")[0]: line.partition(" ")[2] for line in done.stdout.splitlines()}
    assert lines["before"] == "False 0", done.stdout  # nothing loaded or frozen yet
    assert lines["netmiko"] == "True napalm True", done.stdout
    frozen = int(lines["frozen"])
    assert frozen > 100_000, done.stdout  # the interpreter's, vpop's and the plugins' objects
    assert int(lines["young"]) < frozen // 10, done.stdout
    assert "stopped" in lines, done.stdout
