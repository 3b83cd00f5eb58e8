"""Wake-ups between the processes of one machine: no sleeping, no polling.

A process that waits for something (a worker for new orders, an API process for an order to
end) binds a Unix datagram socket in ``<state_dir>/wake/<channel>/``; a process that has
news sends one small datagram to every socket there. A datagram that cannot be delivered at
once (the listener's buffer is full: it has wake-ups to read already) is dropped, never
waited for, and a socket nobody reads any more (its process died) is removed by the next
sender. The news itself is always in the database: a wake-up only says "look now", so a lost
one costs the time until the listener's next safety check, never an order.

Channels used by vpop: ``orders`` (payload: a router name; the API, the sweep and the
scheduler tell the workers), ``finished`` (payload: an order id; workers tell the API
processes holding a long-poll).
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import itertools
import os
import select
import socket
import threading
import time
from pathlib import Path

from vpop.core.settings import load_settings

#: Channel of new orders (payload: a router name): API, sweep -> workers.
ORDERS = "orders"

#: Channel of orders that ended (payload: an order id): workers -> API processes.
FINISHED = "finished"

#: Channel of queued jobs (no payload): any process -> workers.
JOBS = "jobs"

#: Channel of new QoS samples (no payload): the probe job -> API processes' caches.
QOS = "qos"

#: The largest payload read back (router names and order ids are short).
MAX_PAYLOAD = 256

_counter = itertools.count()


def channel_dir(channel: str, base: Path | None = None) -> Path:
    """The directory of ``channel``'s sockets (``<state_dir>/wake/<channel>``)."""
    return (base or load_settings().state_dir / "wake") / channel


class Listener:
    """One process's (or thread's) socket on a channel: :meth:`wait` returns the payloads
    received, as soon as one arrives."""

    def __init__(self, channel: str, base: Path | None = None) -> None:
        """Bind a new socket in ``channel``'s directory (created when missing)."""
        folder = channel_dir(channel, base)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{os.getpid()}-{next(_counter)}.sock"
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a dead process with the same pid left it
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.setblocking(False)

    def fileno(self) -> int:
        """The socket's descriptor (for ``select``)."""
        return self.sock.fileno()

    def wait(self, timeout: float | None) -> list[bytes]:
        """Every payload waiting, after blocking up to ``timeout`` seconds for the first
        (``[]`` when none came)."""
        ready, _, _ = select.select([self.sock], [], [], timeout)
        return self.drain() if ready else []

    def drain(self) -> list[bytes]:
        """Every payload waiting now, without blocking."""
        payloads = []
        for _ in range(10_000):  # bounded: a flood cannot keep a reader here for ever
            try:
                payloads.append(self.sock.recv(MAX_PAYLOAD))
            except BlockingIOError:
                break
        return payloads

    def interrupt(self) -> None:
        """Wake this listener's :meth:`wait` now, with an empty payload (a stop)."""
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(b"", str(self.path))

    def close(self) -> None:
        """Remove the socket (senders stop finding it)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.sock.close()


_sender: socket.socket | None = None

#: A channel directory's socket paths, by directory, with the directory's mtime then.
_listings: dict[Path, tuple[int, list[str]]] = {}

#: A listing is reused only when its directory was last changed longer ago than this (ns):
#: a directory's mtime moves in clock ticks, so a socket bound in the same tick as a listing
#: was made could otherwise leave the mtime unchanged and be missed.
_SETTLED_NS = 50_000_000


def _listeners(folder: Path) -> list[str]:
    """The socket paths in ``folder``: one ``stat`` while it is unchanged (each accepted
    order sends a wake-up; listing the directory each time was 5 % of the API's time)."""
    mtime = os.stat(folder).st_mtime_ns
    cached = _listings.get(folder)
    if cached is not None and cached[0] == mtime:
        return cached[1]
    paths = [entry.path for entry in os.scandir(folder) if entry.name.endswith(".sock")]
    if time.time_ns() - mtime > _SETTLED_NS:
        _listings[folder] = (mtime, paths)
    return paths


def notify(channel: str, payload: bytes = b"", base: Path | None = None) -> int:
    """Send ``payload`` to every listener of ``channel``; return how many got it.

    Never blocks and never raises for a listener that is gone or busy.
    """
    global _sender
    if _sender is None:
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sender.setblocking(False)
        atexit.register(sender.close)  # kept for the process's life, closed at its end
        _sender = sender
    try:
        paths = _listeners(channel_dir(channel, base))
    except FileNotFoundError:
        return 0
    sent = 0
    for path in paths:
        try:
            _sender.sendto(payload[:MAX_PAYLOAD], path)
            sent += 1
        except (ConnectionRefusedError, FileNotFoundError):
            # nobody reads it: its process died without removing it
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.ENOBUFS):
                raise
            sent += 1  # its buffer is full: it has wake-ups waiting already
    return sent


class Waiter:
    """A process-wide listener on one channel that threads can wait on: :meth:`wait` returns
    when a wake-up arrived after the generation the caller last saw (or at its timeout).

    The socket and its thread are made on first use in each process (after a fork, again),
    so a server that forks its workers after loading the app gets one per worker.
    """

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self._cond = threading.Condition()
        self._generation = 0
        self._pid: int | None = None

    def generation(self) -> int:
        """The count of wake-ups seen so far (read it *before* checking the state)."""
        self._ensure()
        with self._cond:
            return self._generation

    def wait(self, seen: int, timeout: float) -> int:
        """Block until a wake-up newer than ``seen`` or ``timeout`` seconds; return the
        generation now."""
        self._ensure()
        with self._cond:
            self._cond.wait_for(lambda: self._generation != seen, timeout)
            return self._generation

    def _ensure(self) -> None:
        if self._pid == os.getpid():
            return
        with self._cond:
            if self._pid == os.getpid():
                return
            listener = Listener(self.channel)
            self._pid = os.getpid()
        threading.Thread(
            target=self._listen, args=(listener,), name=f"vpop-wake-{self.channel}", daemon=True
        ).start()

    def _listen(self, listener: Listener) -> None:
        while True:
            if listener.wait(None):
                with self._cond:
                    self._generation += 1
                    self._cond.notify_all()
