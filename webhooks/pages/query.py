"""What the NOC's report pages read from a query string: one value per name, days, names.

Empty values count as absent (an empty filter field); a name given twice is refused, as the
API's query helpers do (:mod:`webhooks.api.common`).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

from flask import request
from sqlalchemy import select
from sqlalchemy.orm import Session

from vpop.catalogue.service import Isp
from vpop.core.errors import BadInput
from vpop.core.time import TIME_CODE


def isp_names(db: Session) -> dict[str, str]:
    """Every ISP's display name by id."""
    return {isp: name for isp, name in db.execute(select(Isp.id, Isp.name).order_by(Isp.id))}


def day_start(day: date) -> datetime:
    """Midnight UTC at the start of ``day``."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def query_arg(name: str) -> str | None:
    """The query's one value for ``name``; None when absent or empty.

    Raises:
        BadInput: the name is given more than once.
    """
    values = request.args.getlist(name)
    if len(values) > 1:
        raise BadInput(f"{name} is given more than once", code="VPOP-400-TYPE")
    return values[0] if values and values[0] != "" else None


def date_arg(name: str) -> date | None:
    """A ``YYYY-MM-DD`` day from the query (what a date input sends), or None.

    Raises:
        BadInput: not such a day.
    """
    raw = query_arg(name)
    if raw is None:
        return None
    try:
        if len(raw) != 10 or not raw.isascii():
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError as err:
        raise BadInput(
            f"{name}: {json.dumps(raw[:20])} is not a day such as 2026-12-01", code=TIME_CODE
        ) from err
