"""``vpop serve``'s supervisor: starts the API server, the worker and the scheduler as child
processes, restarts one that dies (and says so), and stops them all on SIGTERM or SIGINT.

Each child ends with the supervisor (:func:`vpop.core.children.die_with_parent`), so a
supervisor killed with SIGKILL leaves nothing running. A child that dies within
:data:`EARLY_SECONDS` of its start :data:`MAX_EARLY_DEATHS` times in a row is not started
again: the supervisor stops the others and exits 1 (a configuration to fix, not a crash to
repeat). A stop sends SIGTERM to every child and SIGKILL to any still running after
:data:`STOP_SECONDS`: accepted orders are rows in the database, so none is lost either way.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from vpop.core.children import die_with_parent

#: The whole stop ends within this many seconds.
STOP_SECONDS = 1.6

#: A child that dies this soon after its start died "early".
EARLY_SECONDS = 3.0

#: Early deaths in a row after which a child is given up.
MAX_EARLY_DEATHS = 5


def drain(fd: int) -> None:
    """Read the non-blocking pipe end ``fd`` empty (a signal wake-up pipe: what was written
    only says that a signal came)."""
    with contextlib.suppress(BlockingIOError):
        while os.read(fd, 4096):
            pass


class SignalWakeup:
    """Python's signal wake-up pipe (``signal.set_wakeup_fd``) for a ``with`` block in the
    main thread: :meth:`wait` returns once a signal arrived or the timeout passed.

    The kernel may hand a signal sent to the process to any of its threads, and Python runs
    the handler only when the main thread runs: a main thread blocked on an event or a lock
    sleeps on through a SIGTERM another thread took. Whichever thread takes it, the C handler
    writes to this pipe, which wakes :meth:`wait`; the handler has run when the main thread
    next runs Python code."""

    def __init__(self) -> None:
        self.fds: tuple[int, ...] = ()
        self._previous = -1

    def __enter__(self) -> SignalWakeup:
        read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.fds = (read_end, write_end)
        self._previous = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        return self

    def wait(self, timeout: float | None) -> None:
        """Until a signal arrives or ``timeout`` seconds pass; the pipe drained."""
        select.select([self.fds[0]], [], [], timeout)
        drain(self.fds[0])

    def __exit__(self, *_: object) -> None:
        signal.set_wakeup_fd(self._previous)
        for fd in self.fds:
            os.close(fd)


@dataclass
class Child:
    """One supervised process: its name and what it runs (``main`` returns the exit status).

    Children are forked from the supervisor, which has imported everything they need once:
    a child (or its restart) starts in milliseconds instead of importing vpop again.
    """

    name: str
    main: Callable[[], int]
    pid: int | None = None
    status: int | None = None
    started: float = 0.0
    early_deaths: int = 0
    restarts: int = 0
    restart_at: float | None = field(default=None)


class Supervisor:
    """Runs :class:`Child` processes until told to stop; reports through ``say``."""

    def __init__(
        self,
        children: Sequence[Child],
        say: Callable[[str], None],
        before_fork: Callable[[], None] | None = None,
    ) -> None:
        """Run ``children``; report through ``say``; call ``before_fork`` before each fork
        (to close what a child must not share: pooled database connections)."""
        self.children = list(children)
        self.say = say
        self.before_fork = before_fork
        self.stopping = False
        self.failed: str | None = None
        self._pipe: tuple[int, ...] = ()

    def _start(self, child: Child) -> None:
        parent = os.getpid()
        if self.before_fork is not None:
            self.before_fork()
        pid = os.fork()
        if pid == 0:  # the child: the supervisor's signal plumbing is not its own
            status = 70
            try:
                signal.set_wakeup_fd(-1)
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
                    signal.signal(sig, signal.SIG_DFL)
                for fd in self._pipe:
                    os.close(fd)
                die_with_parent(parent=parent)
                status = child.main()
            except SystemExit as done:
                status = done.code if isinstance(done.code, int) else 1
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)
        child.pid = pid
        child.status = None
        child.started = time.monotonic()
        child.restart_at = None

    def run(self) -> int:
        """Start every child and supervise until SIGTERM/SIGINT; return the exit status
        (0 after a requested stop, 1 when a child had to be given up)."""
        with SignalWakeup() as wakeup:
            self._pipe = wakeup.fds
            handlers = {
                sig: signal.signal(sig, self._on_signal)
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)
            }
            try:
                for child in self.children:
                    self._start(child)
                while not self.stopping:
                    wakeup.wait(self._next_timeout())
                    self._reap_and_restart()
            finally:
                self._stop_all()
                for sig, handler in handlers.items():
                    signal.signal(sig, handler)
        if self.failed:
            self.say(f"error: VPOP-SERVE: {self.failed}")
            return 1
        return 0

    def _on_signal(self, signum: int, _frame: object) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.stopping = True

    def _next_timeout(self) -> float | None:
        due = [c.restart_at for c in self.children if c.restart_at is not None]
        return max(0.0, min(due) - time.monotonic()) if due else None

    def _reap_and_restart(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at and not self.stopping:
                    self._restart(child)
                continue
            if child.pid is None or not self._exited(child):
                continue
            lived = now - child.started
            self.say(
                f"vpop serve: {child.name} (pid {child.pid}) exited with status "
                f"{child.status} after {lived:.1f} s"
            )
            child.early_deaths = child.early_deaths + 1 if lived < EARLY_SECONDS else 0
            if child.early_deaths >= MAX_EARLY_DEATHS:
                self.failed = (
                    f"the {child.name} died {child.early_deaths} times within "
                    f"{EARLY_SECONDS:.0f} s of its start (last status {child.status}); "
                    "see its messages above"
                )
                self.stopping = True
                return
            # at once the first time; then back off, so a crash loop does not spin
            child.restart_at = now + min(2.0, 0.1 * (2**child.early_deaths - 1))
            if child.restart_at <= now:
                self._restart(child)

    def _restart(self, child: Child) -> None:
        self._start(child)
        child.restarts += 1
        self.say(f"vpop serve: {child.name} restarted as pid {child.pid}")

    @staticmethod
    def _exited(child: Child) -> bool:
        """Whether ``child`` has exited (reaped now, its status kept)."""
        assert child.pid is not None
        try:
            pid, status = os.waitpid(child.pid, os.WNOHANG)
        except ChildProcessError:
            child.status = child.status if child.status is not None else -1
            return True
        if pid == 0:
            return False
        child.status = os.waitstatus_to_exitcode(status)
        return True

    def _stop_all(self) -> None:
        """SIGTERM to every running child, SIGKILL to those still running at the deadline;
        then one line of how long each took (a stop slower than usual says which child)."""
        started = time.monotonic()
        deadline = started + STOP_SECONDS
        pending = [c for c in self.children if c.pid is not None and not self._exited(c)]
        for child in pending:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGTERM)  # type: ignore[arg-type]
        took: list[str] = []
        while pending:  # bounded by the deadline
            for child in [c for c in pending if self._exited(c)]:
                took.append(f"{child.name} {time.monotonic() - started:.2f} s")
                pending.remove(child)
            if pending and time.monotonic() >= deadline:
                for child in pending:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(child.pid, 0)  # type: ignore[arg-type]
                    self.say(
                        f"vpop serve: {child.name} (pid {child.pid}) did not stop within "
                        f"{STOP_SECONDS} s of SIGTERM; killed (what it left running is "
                        "recovered at the next start)"
                    )
                    took.append(f"{child.name} killed")
                break
            if pending:
                time.sleep(0.01)
        self.say(f"vpop serve: stopped in {time.monotonic() - started:.2f} s ({', '.join(took)})")
