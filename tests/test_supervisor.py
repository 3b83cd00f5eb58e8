"""``vpop serve``'s supervisor stops every child on SIGTERM, and says which one it had to kill.

The supervisor runs in a process of its own (it takes the process's signals), with two
children: one that stops on SIGTERM as vpop's parts do, and one that ignores it.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vpop.jobs.supervisor import STOP_SECONDS

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, time
    from vpop.jobs.supervisor import Child, Supervisor

    def child(ignore_term, linger=0.0):
        def main():
            if ignore_term:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            elif linger:  # stops, but takes its time (a run finishing, say)
                def later(*_):
                    time.sleep(linger)
                    os._exit(0)
                signal.signal(signal.SIGTERM, later)
            # one write, so atomic: two children share the pipe, and print() may write a
            # line in pieces that the other child's line lands between
            os.write(1, f"ready {os.getpid()}\\n".encode())
            for _ in range(600):  # bounded: a minute at most
                time.sleep(0.1)
            return 0
        return main

    supervisor = Supervisor(
        [
            Child("calm", child(False)),
            Child("stubborn", child(True)),
            Child("slow", child(False, linger=0.5)),
        ],
        say=lambda line: print(line, flush=True),
    )
    sys.exit(supervisor.run())
    """
)


class Output:
    """``proc``'s output read line by line as it comes (the descriptor itself, no buffer
    that ``select`` cannot see)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.fd = proc.stdout.fileno()
        self.pending = b""

    def until(self, text: str, deadline: float) -> list[str]:
        """Lines up to the first that contains ``text``, or all that came by ``deadline``."""
        lines: list[str] = []
        while True:
            while b"\n" in self.pending:
                line, _, self.pending = self.pending.partition(b"\n")
                lines.append(line.decode().strip())
                if text in lines[-1]:
                    return lines
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.fd], [], [], remaining)[0]:
                return lines
            chunk = os.read(self.fd, 4096)
            if not chunk:
                return lines
            self.pending += chunk


@pytest.fixture
def supervisor() -> Iterator[tuple[subprocess.Popen[bytes], dict[int, int]]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    pids: dict[int, int] = {}
    try:
        yield proc, pids
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()
        for pid in pids.values():  # by PID, should the supervisor not have
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_a_child_that_ignores_sigterm_is_killed_at_the_deadline_and_named(
    supervisor: tuple[subprocess.Popen[bytes], dict[int, int]],
) -> None:
    proc, pids = supervisor
    out = Output(proc)
    deadline = time.monotonic() + 30
    started: list[str] = []
    for _ in range(3):
        started += [line for line in out.until("ready", deadline) if line.startswith("ready")]
    assert len(started) == 3, started  # noqa: PLR2004 (three children)
    children = [int(line.split()[1]) for line in started]
    pids.update(enumerate(children))
    proc.send_signal(signal.SIGTERM)
    output = out.until("stopped in", time.monotonic() + 10)
    assert proc.wait(10) == 0
    killed = [line for line in output if "did not stop" in line]
    assert len(killed) == 1, output
    assert killed[0].startswith("vpop serve: stubborn (pid ")
    assert f"did not stop within {STOP_SECONDS} s of SIGTERM; killed" in killed[0]
    assert int(killed[0].split("(pid ")[1].split(")")[0]) in children
    for pid in children:  # all gone: by SIGTERM, and the stubborn one by SIGKILL
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    # the stop's last line: how long each child took, so a slow stop says who was slow
    summary = output[-1]
    assert summary.startswith("vpop serve: stopped in "), output
    took = dict(re.findall(r"(\w+) (killed|[\d.]+) ?s?", summary.split("(", 1)[1]))
    assert took["stubborn"] == "killed"
    calm, slow = float(took["calm"]), float(took["slow"])
    assert calm < 0.5 <= slow < STOP_SECONDS  # noqa: PLR2004 (the slow child's linger)
