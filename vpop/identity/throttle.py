"""NOC sign-in throttling held in the database, so every server process shares one count.

A failed sign-in is one row of ``login_failures`` (user name as typed and address; nothing
secret). A user name from one address that failed :data:`LOGIN_FAILURES` times within
:data:`LOGIN_WINDOW` is refused until the oldest of those failures leaves the window; a
successful sign-in clears its failures. An INSERT per failure and a COUNT over the window
need no lock: two processes recording at once both count. Each recording deletes the rows
that have left the window, so the table holds at most one window of failures.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from vpop.core.time import as_utc, utcnow
from vpop.identity.models import LoginFailure

LOGIN_FAILURES = 5  # failed sign-ins per user name and address ...
LOGIN_WINDOW = timedelta(seconds=300)  # ... within this window, before sign-in is refused
KEY_MAX = 64  # the user name and the address are stored at most this long


def _key(username: str, address: str) -> tuple[str, str]:
    return username[:KEY_MAX], address[:KEY_MAX]


def login_failures(
    session: Session, username: str, address: str, *, now: datetime | None = None
) -> int:
    """How many sign-ins of ``username`` from ``address`` failed within the window.

    Args:
        session: The transaction to read in.
        username: The user name as typed (cut to 64 characters).
        address: The client's address (cut to 64 characters).
        now: The current time (default: now); the window ends here.

    Returns:
        The number of failures recorded after ``now - LOGIN_WINDOW`` (a failure another
        server process stamped a little ahead of this clock counts too).
    """
    name, addr = _key(username, address)
    moment = as_utc(now) if now is not None else utcnow()
    count = session.scalar(
        select(func.count())
        .select_from(LoginFailure)
        .where(
            LoginFailure.username == name,
            LoginFailure.address == addr,
            LoginFailure.at > moment - LOGIN_WINDOW,
        )
    )
    return int(count or 0)


def login_throttled(
    session: Session, username: str, address: str, *, now: datetime | None = None
) -> bool:
    """True when ``username`` from ``address`` failed :data:`LOGIN_FAILURES` times lately.

    Args:
        session: The transaction to read in.
        username: The user name as typed.
        address: The client's address.
        now: The current time (default: now).
    """
    return login_failures(session, username, address, now=now) >= LOGIN_FAILURES


def record_login_failure(
    session: Session, username: str, address: str, *, now: datetime | None = None
) -> int:
    """Count one failed sign-in, and delete every failure that has left the window.

    Args:
        session: The transaction to record in (the row is flushed, committed with it).
        username: The user name as typed (cut to 64 characters; never the password).
        address: The client's address (cut to 64 characters).
        now: When it failed (default: now).

    Returns:
        The failures of this user name and address within the window, this one included.
    """
    name, addr = _key(username, address)
    moment = as_utc(now) if now is not None else utcnow()
    session.execute(delete(LoginFailure).where(LoginFailure.at <= moment - LOGIN_WINDOW))
    session.add(LoginFailure(username=name, address=addr, at=moment))
    session.flush()
    return login_failures(session, name, addr, now=moment)


def clear_login_failures(session: Session, username: str, address: str) -> int:
    """Forget the failed sign-ins of ``username`` from ``address`` (after a good sign-in).

    Args:
        session: The transaction to delete in.
        username: The user name as typed.
        address: The client's address.

    Returns:
        How many failures were deleted.
    """
    name, addr = _key(username, address)
    result = session.execute(
        delete(LoginFailure).where(LoginFailure.username == name, LoginFailure.address == addr)
    )
    return int(getattr(result, "rowcount", 0) or 0)
