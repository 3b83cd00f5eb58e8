"""Time as vpop reads and writes it: aware UTC datetimes, ISO 8601 out, and a strict parser for
what callers send (an offset is required; a date alone means midnight UTC), with one error code
(``VPOP-400-TIME``) for every malformed time or period.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from vpop.core.errors import BadInput


def utcnow() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(UTC)


TIME_CODE = "VPOP-400-TIME"


_TIME_MAX_LEN = 64


_DATE_ONLY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


_LOST_PLUS = re.compile(r".*[0-9] [0-9]{2}(:?[0-9]{2})?")


def as_utc(value: datetime) -> datetime:
    """``value`` as aware UTC; a naive value (as SQLite returns them) is taken to be UTC."""
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC (``+00:00``), or None."""
    return None if value is None else as_utc(value).isoformat()


def parse_time(value: object, field: str) -> datetime:
    """An ISO 8601 time from a caller, as aware UTC.

    Accepts a time with a UTC offset (``2025-06-01T12:00:00Z``, ``...+02:00``) or a date
    alone (``2025-06-01``, midnight UTC). A time without an offset is refused: it would mean
    a different instant on every server.

    Args:
        value: The untrusted value.
        field: The field name, for the error message.

    Raises:
        BadInput: ``VPOP-400-TIME`` for anything else.
    """
    example = "such as 2025-06-01T12:00:00Z or 2025-06-01"
    if not isinstance(value, str) or not 0 < len(value) <= _TIME_MAX_LEN or not value.isascii():
        raise BadInput(f"{field}: expected an ISO 8601 time {example}", code=TIME_CODE)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as err:
        hint = " (in a URL, write + as %2B)" if _LOST_PLUS.fullmatch(value) else ""
        raise BadInput(
            f"{field}: {value!r} is not an ISO 8601 time {example}{hint}", code=TIME_CODE
        ) from err
    if parsed.tzinfo is None:
        if not _DATE_ONLY.fullmatch(value):
            raise BadInput(f"{field}: {value!r} has no UTC offset; add Z or +HH:MM", code=TIME_CODE)
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError as err:
        raise BadInput(f"{field}: {value!r} is out of range", code=TIME_CODE) from err


def check_period(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """``(start, end)`` in UTC.

    Raises:
        BadInput: ``VPOP-400-TIME`` unless ``end`` is after ``start``.
    """
    start, end = as_utc(start), as_utc(end)
    if end <= start:
        raise BadInput(
            f"the period must end after it starts ({iso(start)} .. {iso(end)})", code=TIME_CODE
        )
    return start, end
