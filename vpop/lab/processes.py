"""The lab's processes: running commands, recording and killing PIDs, waiting for readiness.

A PID is recorded with its start time, so that a recycled PID is never killed; waits fail
fast when a process they wait for has exited. ``VPOP_LAB_CRASH_AT`` (a setting, for tests)
kills ``lab up`` at a named step, to prove that ``down`` cleans up after a crash.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vpop.core.errors import LabError
from vpop.core.settings import load_settings

READY_TIMEOUT = 10.0


def run_command(args: Sequence[str], *, stdin: str | None = None) -> str:
    proc = subprocess.run(list(args), input=stdin, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        cmd = " ".join(args)
        raise LabError(f"`{cmd}` failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def children_of(pid: int) -> list[int]:
    """The PIDs of ``pid``'s child processes (of all its threads), from ``/proc``."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(child) for child in task.read_text().split()]
    return found


def kill_pid(pid: int, start: str | None) -> None:
    if start is not None and start_time(pid) != start:
        return  # gone, or the PID now belongs to someone else
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if start_time(pid) is None or _is_zombie(pid):
            return
        time.sleep(0.01)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def alive(pid: int, start: str | None) -> bool:
    """True when ``pid`` runs and is the process recorded with ``start`` (not a recycled PID,
    not a zombie waiting for its parent)."""
    now = start_time(pid)
    return now is not None and (start is None or now == start) and not _is_zombie(pid)


def ssh_answers(port: int, timeout: float = 1.0) -> bool:
    """True when an SSH server on ``127.0.0.1:port`` sends its identification line."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def checkpoint(step: str) -> None:
    """Fault injection for tests: ``VPOP_LAB_CRASH_AT=<step>`` kills ``up`` right here."""
    if load_settings().lab_crash_at == step:
        os.kill(os.getpid(), signal.SIGKILL)


def _check_alive(procs: list[tuple[str, int]]) -> None:
    for what, pid in procs:
        with contextlib.suppress(ChildProcessError):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                raise LabError(f"lab process {what} exited on start (status {status})")


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_until(
    condition: Callable[[], bool],
    what: str,
    procs: list[tuple[str, int]] | None = None,
    interval: float = 0.005,
) -> None:
    """Poll ``condition`` until it holds, at most READY_TIMEOUT seconds; fail fast when one
    of ``procs`` has exited.

    Raises:
        LabError: naming ``what`` was awaited.
    """
    deadline = time.monotonic() + READY_TIMEOUT
    while not condition():
        _check_alive(procs or [])
        if time.monotonic() > deadline:
            raise LabError(f"lab not ready after {READY_TIMEOUT}s: waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def keypair() -> tuple[bytes, bytes]:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return private, public
