"""The API served by gunicorn (a production WSGI server): ``python -m webhooks.wsgi``.

``vpop serve`` runs :func:`serve` in a child process with the listening sockets it bound
itself (the API's port and, in the lab, the portal address inside each router's
namespace); ``python -m webhooks.wsgi --fd N`` does the same with inherited descriptors.
gunicorn's master forks ``--workers`` processes of ``--threads`` threads each
(``gthread``: keep-alive connections wait in a poller, not in a thread, so long-polls of
``GET /api/v1/orders/{id}`` with ``Prefer: wait`` do not hold a process; new connections go
to the least loaded process, :mod:`webhooks.balance`; each process runs on a CPU of its
own while there are enough, :mod:`vpop.core.affinity`). The app is loaded
once in the master (``preload_app``) and every worker forgets the master's database
connections; each process ends with its parent (:mod:`vpop.core.children`).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication

from vpop.core import affinity
from vpop.core.children import die_with_parent
from vpop.core.db import dispose_engines
from webhooks.balance import BalancedWorker, assign_slot

#: Seconds gunicorn gives running requests when it is told to stop (the whole stop of
#: ``vpop serve`` must fit in 2 s).
GRACEFUL_SECONDS = 1

#: The API processes' interpreter switch interval, in seconds (Python's default is 0.005).
SWITCH_INTERVAL = 0.0005


def _post_fork_with(workers: int, pin: bool) -> Callable[[Any, Any], None]:
    """gunicorn's ``post_fork`` hook for ``workers`` API processes, pinning them if ``pin``."""

    def post_fork(server: Any, worker: Any) -> None:
        die_with_parent(parent=server.pid)
        if pin:  # before any thread starts (vpop.core.affinity)
            slot = getattr(worker, "slot", None)
            affinity.pin(affinity.api_cpu(slot, workers, affinity.allowed_cpus()))
        # threads hand the interpreter lock on sooner: a short request waits less behind others
        sys.setswitchinterval(SWITCH_INTERVAL)
        dispose_engines()  # never share a pooled connection with the master
        # what the app loaded stays for the process's life: kept out of the collector's full
        # passes, which otherwise walk every module, model and schema (a pause of tens of ms)
        gc.freeze()

    return post_fork


class Application(BaseApplication):  # type: ignore[misc]
    """gunicorn with vpop's options, serving :func:`webhooks.create_app`."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from vpop.jobs import wiring
        from webhooks import create_app

        wiring.connect()  # an accepted order is announced to the workers at once
        return create_app()


def options(fds: list[int], workers: int, threads: int, pin: bool = True) -> dict[str, Any]:
    """gunicorn's settings for the given sockets and sizes (``pin``: each process on a CPU
    of its own, :func:`vpop.core.affinity.api_cpu`)."""
    return {
        "bind": [f"fd://{fd}" for fd in fds],
        "workers": workers,
        "threads": threads,
        "worker_class": BalancedWorker,  # gthread, connections spread evenly
        "preload_app": True,
        "graceful_timeout": GRACEFUL_SECONDS,
        "timeout": 60,
        "keepalive": 5,
        "backlog": 2048,
        "pre_fork": assign_slot,
        "post_fork": _post_fork_with(workers, pin),
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "proc_name": "vpop-api",
    }


def serve(fds: list[int], workers: int, threads: int, pin: bool = True) -> int:
    """Serve the API on the listening sockets ``fds`` until SIGTERM (in a process of its
    own: gunicorn's master takes over the process's signals); return the exit status."""
    for fd in fds:
        os.set_inheritable(fd, True)
    try:
        Application(options(fds, workers, threads, pin)).run()
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else 1
    return 0


def main(argv: list[str] | None = None) -> None:
    """Serve the API on the inherited sockets until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m webhooks.wsgi")
    parser.add_argument("--fd", type=int, action="append", required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--parent", type=int, default=None)
    parser.add_argument(
        "--no-pin", dest="pin", action="store_false", help="Do not pin each process to a CPU."
    )
    args = parser.parse_args(argv)
    die_with_parent(parent=args.parent)
    raise SystemExit(serve(args.fd, args.workers, args.threads, args.pin))


if __name__ == "__main__":
    main()
