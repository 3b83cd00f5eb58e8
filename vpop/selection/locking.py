"""The router lock every path that changes a router takes (vpop.core.locks underneath), and
the fence a holder passes before it acts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.orm import Session

from vpop.core.locks import Lease, LockLost, current_lease, hold, router_lock_name


@contextmanager
def router_lock(router: str, *, wait: float = 0.0, url: str | None = None) -> Iterator[None]:
    """Hold the router's lock across processes and hosts (re-entrant within a thread).

    Args:
        router: The router's name.
        wait: Seconds to wait while another holder has it.
        url: The database the lock lives in (the orders' database).

    Raises:
        LockBusy: another holder kept it for the whole wait.
    """
    with hold(router_lock_name(router), wait=wait, url=url):
        yield


def fence_router(router: str, session: Session | None = None) -> None:
    """Prove this thread still holds the router's lock (and extend its lease) before acting.

    Args:
        router: The router's name.
        session: Check inside this transaction, so that what it records is recorded only
            while the lock is ours.

    Raises:
        LockLost: the lease ended, another holder took it, or this thread never held it.
    """
    _lease(router).fence(session)


def fence_router_on(router: str, cursor: Any, dialect: Dialect) -> None:
    """:func:`fence_router` inside the transaction of a driver ``cursor``
    (:meth:`~vpop.core.locks.Lease.fence_on`)."""
    _lease(router).fence_on(cursor, dialect)


def _lease(router: str) -> Lease:
    lease = current_lease(router_lock_name(router))
    if lease is None:
        raise LockLost(f"the lock of router {router} is not held by this thread")
    return lease
