"""Which CPU a process of ``vpop serve`` runs on.

A Python process runs its Python on one CPU at a time (the interpreter lock), but its
threads hand work and the lock to each other all the time: a request's thread and the
batch leader (:mod:`vpop.core.group_commit`), a worker thread and the SSH transport thread
that decrypts its router's answers. When the thread woken is on the other CPU, the wake-up
costs about three times what it costs on the same CPU on this kind of virtual machine
(two threads handing a lock back and forth: 36-40 us of CPU a round trip across CPUs,
13-14 us on one). So each API process and the worker process each run on one CPU, and
every thread they start stays there:

* the API processes (gunicorn's workers) one CPU each, in slot order (:func:`api_cpu`);
* the worker (router runs, polls, queued jobs) the last CPU (:func:`worker_cpu`), which it
  shares with an API process while there are fewer CPUs than processes; it is niced, so
  the API comes first there.

On a machine of one CPU nothing is pinned; with more API processes than CPUs, the API
processes are not (the worker still is). ``vpop serve --no-pin`` pins nothing; ``vpop worker``
and ``vpop scheduler`` started on their own are not pinned.
"""

from __future__ import annotations

import os
from collections.abc import Collection


def api_cpu(slot: int | None, processes: int, allowed: Collection[int]) -> int | None:
    """The CPU of the API process in ``slot`` (of ``processes``), or None (not pinned).

    Each process gets a CPU of its own among ``allowed`` (the CPUs the server may use)
    while there are at least as many as processes and more than one. A restarted process
    takes its predecessor's slot, so its CPU too.
    """
    cpus = sorted(allowed)
    if slot is None or len(cpus) < 2 or processes > len(cpus):
        return None
    return cpus[slot % len(cpus)]


def worker_cpu(allowed: Collection[int]) -> int | None:
    """The CPU of the worker process: the last of ``allowed``; None with only one."""
    cpus = sorted(allowed)
    return cpus[-1] if len(cpus) >= 2 else None


def allowed_cpus() -> set[int]:
    """The CPUs this process may run on."""
    return os.sched_getaffinity(0)


def pin(cpu: int | None) -> bool:
    """Run this process's calling thread, and every thread it starts from now on, on
    ``cpu`` alone (None: leave it as it is). Call it before the process starts threads.

    Returns:
        Whether it is pinned. Where the system refuses (a container's CPU set changed
        since, a seccomp policy), it runs unpinned, as with ``--no-pin``: pinning is
        an optimisation, never a reason not to serve.
    """
    if cpu is None:
        return False
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:
        return False
    return True
