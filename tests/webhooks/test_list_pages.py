"""A page of an unfiltered newest-first list reads as much with a long history as with a short
one: service sessions, RADIUS sessions, payments and utilisation events, each through its API
route as the NOC calls it (an index on the sort column; before, a page sorted the whole table).

The work is counted in SQLite's virtual machine steps (:mod:`tests.sqlite_work`)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask.testing import FlaskClient

from tests.sqlite_work import with_history

# per route: the table, and what each history row must say (the rest is filled)
HISTORY: dict[str, tuple[str, dict[str, object]]] = {
    "/api/v1/sessions": (
        "service_sessions",
        {
            "source": "selection",
            "line_id": 1,
            "subscriber_id": "sub1",
            "isp_id": "isp-a",
            "end_reason": "moved",
        },
    ),
    "/api/v1/radius/sessions": ("radius_sessions", {"nas": "bng1", "decision_id": ""}),
    "/api/v1/payments": (
        "payments",
        {
            "payee_id": "shop",
            "isp_id": "isp-a",
            "subscriber_id": "sub1",
            "currency": "EUR",
            "amount_minor": 100,
            "status": "AUTHORISED",
            "item": "history",
            "period": "2026-12",
            "created_by": "history",
        },
    ),
    "/api/v1/events": (
        "utilisation_events",
        {"lease_id": 1, "isp_id": "isp-a", "kind": "over", "extreme_pct": 120.0},
    ),
}

# the columns a row's own time goes in (each row a second apart, newest last)
TIME_COLUMNS = {
    "service_sessions": ("started_at", "ended_at"),
    "radius_sessions": ("started_at", "updated_at"),
    "payments": ("created_at", "updated_at"),
    "utilisation_events": ("opened_at",),
}

# unique per row
SERIAL = {"radius_sessions": "acct_session_id", "payments": "merchant_reference"}


def history_row(table: str, fixed: dict[str, object]) -> Callable[[int], dict[str, object]]:
    """Row ``i`` of ``table``'s history: ``fixed``, its own time (a second after row i - 1)
    and, where the table wants it, its own serial."""

    def row(i: int) -> dict[str, object]:
        at = f"2026-11-{1 + i // 86400:02d} {i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}"
        made = {**fixed, **dict.fromkeys(TIME_COLUMNS[table], at)}
        if table in SERIAL:
            made[SERIAL[table]] = f"h{i}"
        return made

    return row


@pytest.mark.parametrize("route", sorted(HISTORY))
def test_a_page_reads_as_much_however_long_the_history(
    route: str, client: FlaskClient, admin_headers: dict[str, str], database_url: str
) -> None:
    table, fixed = HISTORY[route]

    def page() -> None:
        answer = client.get(f"{route}?limit=20", headers=admin_headers)
        assert answer.status_code == 200, answer.get_json()

    short, long = with_history(database_url, table, history_row(table, fixed), page)
    assert long <= short * 1.25, (short, long)
