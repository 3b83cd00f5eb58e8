"""The AAA part of the JSON API: RADIUS sessions, decisions, rules and NAS clients.

Who reads what (docs/tenancy.md): operators (``admin``, ``noc``) read every session and
decision; an ``isp`` token reads only the sessions and accepted decisions of its own ISP
(asking for another ISP's is 403, as for leases); rules and NAS clients are for operators
only, and only operators add and remove rules (audited). Portal tokens are refused.

NAS clients are listed without their secrets and are added and removed with
``vpop radius client add|remove`` only: a shared secret never travels over the API, and the
FreeRADIUS configuration that names the clients is rendered where the secrets live.

Query strings are strict (:func:`~webhooks.api.common.query_args`): known keys, each once;
errors leave as ``application/problem+json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import current_app
from sqlalchemy import Select, select

from vpop.aaa import service as aaa
from vpop.aaa.service import AaaDecision, RadiusClient, RadiusSession
from vpop.aaa.service import schemas as aaa_schemas
from vpop.core import validate
from vpop.core.db import session_scope
from vpop.core.errors import BadInput
from vpop.core.time import iso
from vpop.selection.service import Caller, Forbidden
from webhooks.api.common import (
    MAX_ID,
    OPERATORS,
    boolean_arg,
    bp,
    json_object,
    limit_arg,
    query_args,
)
from webhooks.auth import authenticate

SESSIONS_DEFAULT_LIMIT = 100

SESSIONS_MAX_LIMIT = 1000

DECISIONS_DEFAULT_LIMIT = 100

DECISIONS_MAX_LIMIT = 1000

OUTCOMES = ("accept", "reject")


@bp.get("/radius/sessions")
def list_radius_sessions() -> dict[str, Any]:
    """RADIUS sessions, the latest started first: every ISP's for operators, its own for an
    ISP token; filter by subscriber, line, ISP, NAS and open (live) or not."""
    own = _reader(authenticate(allow_webhook=False).caller)
    args = query_args(("subscriber", "line", "isp", "nas", "open", "limit"))
    isp = _own_isp(args, own)
    stmt = (
        select(RadiusSession)
        .order_by(RadiusSession.started_at.desc(), RadiusSession.id.desc())
        .limit(limit_arg(args.get("limit"), SESSIONS_DEFAULT_LIMIT, SESSIONS_MAX_LIMIT))
    )
    stmt = _who_filters(stmt, RadiusSession, args, isp)
    if "open" in args:
        live = RadiusSession.stopped_at.is_(None)
        stmt = stmt.where(live if boolean_arg(args["open"], "open") else ~live)
    with session_scope(current_app.config["DATABASE_URL"]) as session:
        return {"sessions": [aaa.session_view(row) for row in session.scalars(stmt)]}


@bp.get("/aaa/decisions")
def list_aaa_decisions() -> dict[str, Any]:
    """The decision log, newest first: every decision for operators, an ISP token's accepted
    ones for its ISP; filter by subscriber, line, ISP, NAS and outcome."""
    own = _reader(authenticate(allow_webhook=False).caller)
    args = query_args(("subscriber", "line", "isp", "nas", "outcome", "limit"))
    isp = _own_isp(args, own)
    stmt = (
        select(AaaDecision)
        .order_by(AaaDecision.at.desc(), AaaDecision.id.desc())
        .limit(limit_arg(args.get("limit"), DECISIONS_DEFAULT_LIMIT, DECISIONS_MAX_LIMIT))
    )
    stmt = _who_filters(stmt, AaaDecision, args, isp)
    if "outcome" in args:
        stmt = stmt.where(
            AaaDecision.outcome == validate.one_of(args["outcome"], "outcome", OUTCOMES)
        )
    with session_scope(current_app.config["DATABASE_URL"]) as session:
        return {"decisions": [aaa.decision_view(row) for row in session.scalars(stmt)]}


@bp.get("/aaa/rules")
def list_aaa_rules() -> dict[str, Any]:
    """The rules that choose an ISP, in the order they are tried (operators)."""
    _operators(authenticate(allow_webhook=False).caller)
    query_args(())
    with session_scope(current_app.config["DATABASE_URL"]) as session:
        return {"rules": [aaa.aaa_rule_view(rule) for rule in aaa.rules(session)]}


@bp.post("/aaa/rules")
def create_aaa_rule() -> tuple[dict[str, Any], int]:
    """Add a rule (operators; audited as ``aaa_rule.create``)."""
    caller = authenticate(allow_webhook=False).caller
    _operators(caller)
    body = aaa_schemas.RuleRequest.parse(json_object())
    with session_scope(current_app.config["DATABASE_URL"]) as session:
        rule = aaa.add_rule(
            session, body.kind, body.match, body.isp, priority=body.priority, actor=caller.name
        )
        return aaa.aaa_rule_view(rule), 201


@bp.delete("/aaa/rules/<int:rule_id>")
def delete_aaa_rule(rule_id: int) -> dict[str, Any]:
    """Remove a rule (operators; audited as ``aaa_rule.remove``); answers the removed rule."""
    caller = authenticate(allow_webhook=False).caller
    _operators(caller)
    if rule_id > MAX_ID:
        raise aaa.UnknownRule(f"no AAA rule has id {rule_id}")
    with session_scope(current_app.config["DATABASE_URL"]) as session:
        rule = aaa.remove_rule(session, rule_id, actor=caller.name)
        return aaa.aaa_rule_view(rule)


@bp.get("/radius/clients")
def list_radius_clients() -> dict[str, Any]:
    """The NAS clients by name, without their secrets (operators)."""
    _operators(authenticate(allow_webhook=False).caller)
    query_args(())
    with session_scope(current_app.config["DATABASE_URL"]) as session:
        return {"clients": [client_view(row) for row in aaa.list_radius_clients(session)]}


def client_view(client: RadiusClient) -> dict[str, Any]:
    """A NAS client as JSON (:class:`~vpop.aaa.schemas.RadiusClient`): never its secret."""
    return {
        "name": client.name,
        "address": client.address,
        "family": client.family,
        "created_at": iso(client.created_at),
    }


def _reader(caller: Caller) -> str | None:
    """Whose sessions and decisions the caller reads: None for every ISP's, else one ISP."""
    if caller.role in OPERATORS:
        return None
    if caller.role == "isp" and caller.isp is not None:
        return caller.isp
    raise Forbidden("RADIUS sessions and decisions are for NOC staff, admins and ISP tokens")


def _own_isp(args: dict[str, str], own: str | None) -> str | None:
    """The ISP to filter on: the ``isp`` argument, which an ISP token may set only to its own."""
    isp = validate.name(args["isp"], "isp") if "isp" in args else own
    if own is not None and isp != own:
        raise Forbidden(
            f"an ISP token reads only its own ISP's sessions and decisions, not {isp!r}"
        )
    return isp


def _operators(caller: Caller) -> None:
    """Rules and NAS clients are the operators' (roles admin, noc)."""
    if caller.role not in OPERATORS:
        raise Forbidden(
            "AAA rules and RADIUS clients are for NOC staff and admins (roles noc, admin)"
        )


def _id_arg(raw: str, name: str) -> int:
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise BadInput(f"{name} must be a positive whole number", code="VPOP-400-TYPE")
    return int(raw)


def _who_filters(
    stmt: Select[Any],
    model: type[RadiusSession] | type[AaaDecision],
    args: Mapping[str, str],
    isp: str | None,
) -> Select[Any]:
    """The filters sessions and decisions share: the ISP, subscriber, line and NAS."""
    if isp is not None:
        stmt = stmt.where(model.isp_id == isp)
    if "subscriber" in args:
        stmt = stmt.where(model.subscriber_id == validate.name(args["subscriber"], "subscriber"))
    if "line" in args:
        stmt = stmt.where(model.line_id == _id_arg(args["line"], "line"))
    if "nas" in args:
        stmt = stmt.where(model.nas == validate.name(args["nas"], "nas"))
    return stmt
