"""Settlements over the JSON API: runs, settlements and their statements.

A settlement is what one payee (an ISP or a merchant) is paid, or owes, for one currency and
period (``YYYY-MM``, UTC): its captured payments minus refunds and the routing centre's fees,
netted against the ISP's lease charges (``vpop.billing.settlement``). Its statement is
stored as canonical JSON with its SHA-256; ``GET /settlements/{id}/statement`` answers
exactly those bytes (``format=json``), or the CSV or HTML rendered from them, with the
SHA-256 of what it sends in ``X-Content-SHA256``.

Who reads what (docs/tenancy.md): operators read every settlement and run them
(``POST /settlements/runs``); an ISP token reads its own ISP's and its merchants'; a merchant
token its own; portal tokens none (403 on the list, 404 on an id). Another payee's settlement
is "not there" (404, as an unknown id).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Any, Literal

from flask import Response, current_app, url_for
from pydantic import Field
from sqlalchemy.orm import Session

from vpop.billing import service as billing
from vpop.billing.service import Payee
from vpop.core import validate
from vpop.core.db import session_scope
from vpop.core.errors import BadInput
from vpop.core.schemas import NAME_PATTERN, Canonical, Currency, Request, Strict
from vpop.selection.service import Caller, Forbidden
from webhooks.api.common import OPERATORS, bp, json_object, query_args
from webhooks.api.payments import operators_only_for
from webhooks.api.reports import HTML_POLICY, MEDIA_TYPES
from webhooks.auth import authenticate

#: How a statement is sent.
STATEMENT_FORMATS = ("json", "csv", "html")

#: ``YYYY-MM`` as a JSON Schema pattern.
PERIOD_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])$"

#: A period as a JSON Schema (the query parameters').
PERIOD_SCHEMA = {"type": "string", "pattern": PERIOD_PATTERN, "examples": ["2026-11"]}


def _period(value: str, field: str) -> str:
    """A period's spelling (``YYYY-MM``); the billing domain checks the month itself."""
    if len(value) != 7 or value[4] != "-" or not (value[:4] + value[5:]).isdigit():
        raise BadInput(f"{field}: {value[:20]!r} is not YYYY-MM (such as 2026-11)",
                       code="VPOP-400-PERIOD")  # fmt: skip
    return value


class SettlementModel(Strict):
    """What one payee is paid (or owes) for one currency and period, run by run."""

    id: int
    payee: str
    currency: Currency
    period: Annotated[str, Field(description="YYYY-MM (UTC)")]
    seq: Annotated[int, Field(description="the run's number within the period, from 1")]
    kind: Annotated[
        Literal["interim", "final"],
        Field(description="final: the month had ended; interim: settled up to `cutoff`"),
    ]
    cutoff: Annotated[datetime, Field(description="the events before this time are settled")]
    created_at: datetime
    created_by: str
    captured_minor: int
    refunded_minor: int
    fees_minor: Annotated[int, Field(description="the routing centre's fees")]
    lease_minor: Annotated[int, Field(description="the ISP's lease charges for the period")]
    adjustments_minor: Annotated[int, Field(description="late events of earlier periods")]
    carried_in_minor: Annotated[int, Field(description="the previous settlement's negative net")]
    net_minor: Annotated[int, Field(description="the sum of the lines; negative: carried")]
    payout_minor: Annotated[int, Field(description="max(net, 0): what is paid")]
    lines_count: int
    statement_sha256: Annotated[str, Field(description="SHA-256 of the statement's JSON")]


class SettlementList(Strict):
    """Settlements."""

    settlements: list[SettlementModel]


class SettlementRunBody(Request):
    """Settle a period: every payee with anything to settle, or one."""

    period: Annotated[
        str,
        Canonical(_period, pattern=PERIOD_PATTERN, examples=["2026-11"],
                  description="the month (UTC); a month that has ended is settled finally, "
                  "the current one up to now (interim)"),
    ]  # fmt: skip
    payee: Annotated[
        str | None, Canonical(validate.name, pattern=NAME_PATTERN, examples=["isp-b"])
    ] = None


@bp.get("/settlements")
def list_settlements() -> dict[str, Any]:
    """Settlements, filtered by period and payee: the caller's own unless an operator."""
    own = _reader(authenticate(allow_webhook=False, merchant_ok=True).caller)
    args = query_args(("period", "payee"))
    period = _period(args["period"], "period") if "period" in args else None
    payee = validate.name(args["payee"], "payee") if "payee" in args else None
    isp: str | None = None
    if own is not None and own.role == "merchant":
        if payee is not None and payee != own.merchant:
            raise Forbidden(f"a merchant token lists only its own settlements, not {payee!r}'s")
        payee = own.merchant
    elif own is not None:
        isp = own.isp
    with session_scope(current_app.config["DATABASE_URL"]) as session:
        found = billing.list_settlements(session, period=period, payee=payee, isp=isp)
        return {"settlements": [billing.settlement_view(row) for row in found]}


@bp.get("/settlements/<int:settlement_id>")
def get_settlement(settlement_id: int) -> dict[str, Any]:
    """One settlement: its totals, payout and statement's SHA-256."""
    caller = authenticate(allow_webhook=False, merchant_ok=True).caller
    with session_scope(current_app.config["DATABASE_URL"]) as session:
        view: dict[str, Any] = billing.settlement_view(
            billing.settlement_for(session, caller, settlement_id)
        )
        return view


@bp.get("/settlements/<int:settlement_id>/statement")
def get_statement(settlement_id: int) -> Response:
    """A settlement's statement: the stored JSON bytes, or CSV or HTML rendered from them."""
    caller = authenticate(allow_webhook=False, merchant_ok=True).caller
    args = query_args(("format",))
    fmt = validate.one_of(args.get("format", "json"), "format", STATEMENT_FORMATS)
    with session_scope(current_app.config["DATABASE_URL"]) as session:
        settlement = billing.settlement_for(session, caller, settlement_id)
        body = billing.render_statement(settlement, fmt)
        name = f"statement-{settlement.payee_id}-{settlement.period}-{settlement.seq}.{fmt}"
    response = Response(body, content_type=MEDIA_TYPES[fmt])
    response.headers["X-Content-SHA256"] = hashlib.sha256(body).hexdigest()
    if fmt == "html":
        response.headers["Content-Security-Policy"] = HTML_POLICY
    if fmt == "csv":
        response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@bp.post("/settlements/runs")
def run_settlements() -> tuple[dict[str, Any], int, dict[str, str]]:
    """Settle a period (operators): one settlement per payee and currency; a final period
    settled before answers the same settlements again."""
    caller = authenticate(allow_webhook=False).caller
    operators_only_for("settlement runs", caller)
    body = SettlementRunBody.parse(json_object())

    def run(session: Session) -> list[dict[str, Any]]:
        if body.payee is not None and session.get(Payee, body.payee) is None:
            raise billing.UnknownPayee(f"unknown payee {body.payee!r}")
        done = billing.run_settlement(session, body.period, payee=body.payee, actor=caller.name)
        return [billing.settlement_view(row) for row in done]

    views = billing.in_transaction(current_app.config["DATABASE_URL"], run)
    location = url_for("api.list_settlements", period=body.period)
    return {"settlements": views}, 200, {"Location": location}


def _reader(caller: Caller) -> Caller | None:
    """None for operators (every payee's); the caller for an ISP or merchant token."""
    if caller.role in OPERATORS:
        return None
    if caller.role in ("isp", "merchant"):
        return caller
    raise Forbidden("settlements are read by NOC staff, admins and the payees' own tokens")
