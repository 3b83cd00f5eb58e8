"""The JSON API under ``/api/v1``: selections, orders, subscribers, runs, the ISP catalogue.

Every write authenticates first (:mod:`webhooks.auth`), then parses the raw body strictly:
a JSON object in UTF-8, known keys only, exact types, every string canonicalised by
:mod:`vpop.validate`. Errors leave as ``application/problem+json`` (:mod:`webhooks.problems`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from flask import Blueprint, current_app, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from vpop import validate
from vpop.db import ApiToken, Isp, Order, Run, Subscriber, session_scope
from vpop.errors import BadInput, NotFound
from vpop.orders import Caller, Forbidden, SelectionRequest, order_view, submit_selection
from webhooks import openapi
from webhooks.auth import MESSAGE_ID, authenticate
from webhooks.problems import Problem

bp = Blueprint("api", __name__, url_prefix="/api/v1")

LINE_IDENTIFIERS = ("subscriber", "calling_number", "circuit_id", "access_id")
RUNS_DEFAULT_LIMIT = 50
RUNS_MAX_LIMIT = 500


@dataclass(frozen=True)
class Field:
    """A selection body field: its exact JSON type and its canonicaliser."""

    type: type
    json_type: str
    check: Callable[[Any, str], Any]


SELECTION_FIELDS: dict[str, Field] = {
    "isp": Field(str, "string", validate.name),
    "subscriber": Field(str, "string", validate.name),
    "calling_number": Field(str, "string", validate.e164),
    "circuit_id": Field(str, "string", validate.circuit_id),
    "access_id": Field(str, "string", validate.access_id),
    "dry_run": Field(bool, "boolean", validate.boolean),
    "callback_url": Field(str, "string", validate.url),
}


@bp.post("/selections")
def create_selection() -> tuple[dict[str, Any], int, dict[str, str]]:
    """Accept an order to move a line to an ISP; the worker applies it later."""
    who = authenticate(allow_webhook=True)
    key = who.webhook_id if who.webhook_id is not None else _idempotency_key()
    req = parse_selection(json_object())
    order, created = submit_selection(req, who.caller, key, url=current_app.config["DATABASE_URL"])
    if created:
        _enqueue(order.router)
    headers = {"Location": url_for("api.get_order", order_id=order.id)}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return {"order": order.id, "status": order.status}, 202, headers


@bp.get("/orders/<int:order_id>")
def get_order(order_id: int) -> dict[str, Any]:
    """One order and where it stands."""
    caller = authenticate(allow_webhook=False).caller
    with session_scope(current_app.config["DATABASE_URL"]) as session:
        order = session.get(Order, order_id)
        if order is None:
            raise NotFound(f"unknown order {order_id}", code="VPOP-404-ORDER")
        if not _may_read_order(session, caller, order):
            raise Forbidden(f"order {order_id} was not requested by this ISP")
        return order_view(order)


@bp.get("/subscribers/<subscriber_id>")
def get_subscriber(subscriber_id: str) -> dict[str, Any]:
    """A subscriber's lines and the ISP each line uses now."""
    caller = authenticate(allow_webhook=False).caller
    subscriber_id = validate.name(subscriber_id, "subscriber")
    with session_scope(current_app.config["DATABASE_URL"]) as session:
        subscriber = session.scalars(
            select(Subscriber)
            .where(Subscriber.id == subscriber_id)
            .options(selectinload(Subscriber.lines))
        ).first()
        if subscriber is None:
            raise NotFound(f"unknown subscriber {subscriber_id!r}", code="VPOP-404-SUBSCRIBER")
        if caller.role == "isp" and not any(
            line.selection is not None and line.selection.isp_id == caller.isp
            for line in subscriber.lines
        ):
            raise Forbidden(f"subscriber {subscriber_id!r} does not use this ISP")
        return {
            "subscriber": subscriber.id,
            "name": subscriber.name,
            "lines": [
                {
                    "line": line.id,
                    "router": line.router,
                    "interface": line.interface,
                    "prefix": line.prefix,
                    "calling_number": line.calling_number,
                    "circuit_id": line.circuit_id,
                    "access_id": line.access_id,
                    "current_isp": line.selection.isp_id if line.selection else None,
                    "default": line.selection is None,
                }
                for line in subscriber.lines
            ],
        }


@bp.get("/runs")
def list_runs() -> dict[str, Any]:
    """The newest runs first, optionally for one router (operators only)."""
    _operators_only(authenticate(allow_webhook=False).caller)
    limit, router = _runs_query()
    stmt = select(Run).order_by(Run.id.desc()).limit(limit)
    if router is not None:
        stmt = stmt.where(Run.router == router)
    with session_scope(current_app.config["DATABASE_URL"]) as session:
        return {"runs": [run_view(run) for run in session.scalars(stmt)]}


@bp.get("/runs/<int:run_id>")
def get_run(run_id: int) -> dict[str, Any]:
    """One run: its diff, per-host results and timings (operators only)."""
    _operators_only(authenticate(allow_webhook=False).caller)
    with session_scope(current_app.config["DATABASE_URL"]) as session:
        run = session.get(Run, run_id)
        if run is None:
            raise NotFound(f"unknown run {run_id}", code="VPOP-404-RUN")
        return run_view(run)


@bp.get("/isps")
def list_isps() -> dict[str, Any]:
    """The public catalogue: every ISP and its plans (no authentication)."""
    stmt = select(Isp).order_by(Isp.id).options(selectinload(Isp.plans))
    with session_scope(current_app.config["DATABASE_URL"]) as session:
        return {
            "isps": [
                {
                    "id": isp.id,
                    "name": isp.name,
                    "plans": [
                        {
                            "id": plan.id,
                            "name": plan.name,
                            "speed_mbps": plan.speed_mbps,
                            "monthly_price_minor": plan.monthly_price_minor,
                            "currency": plan.currency,
                        }
                        for plan in isp.plans
                    ],
                }
                for isp in session.scalars(stmt)
            ]
        }


@bp.get("/openapi.json")
def get_openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 description of this API."""
    return openapi.document()


def json_object() -> dict[str, Any]:
    """The request body as a JSON object, parsed strictly.

    Raises:
        Problem: 415 unless the body is declared ``application/json``; 400 when it is not
            UTF-8 JSON (or repeats a key, or uses NaN/Infinity); 413 when it is too large.
        BadInput: the JSON is not an object.
    """
    if request.mimetype != "application/json":
        raise Problem(415, "VPOP-415-MEDIA-TYPE", "send the body as application/json")
    raw = request.get_data(cache=True)
    try:
        text = raw.decode("utf-8")
        value = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except UnicodeDecodeError as err:
        raise Problem(400, "VPOP-400-JSON", "the body is not UTF-8") from err
    except (ValueError, RecursionError) as err:
        raise Problem(400, "VPOP-400-JSON", f"the body is not valid JSON: {err}") from err
    if not isinstance(value, dict):
        raise BadInput("the body must be a JSON object", code="VPOP-400-TYPE")
    return value


def parse_selection(body: dict[str, Any]) -> SelectionRequest:
    """A canonical :class:`SelectionRequest` from a decoded body, or :class:`BadInput`."""
    unknown = [key for key in body if key not in SELECTION_FIELDS]
    if unknown:
        raise BadInput(
            f"unknown field {_short(unknown[0])}; allowed: {', '.join(SELECTION_FIELDS)}",
            code="VPOP-400-UNKNOWN-FIELD",
        )
    values: dict[str, Any] = {}
    for name, field in SELECTION_FIELDS.items():
        if name not in body:
            continue
        value = body[name]
        if type(value) is not field.type:  # exact: a bool is not a number, 1 is not true
            raise BadInput(f"{name} must be a JSON {field.json_type}", code="VPOP-400-TYPE")
        values[name] = field.check(value, name)
    if "isp" not in values:
        raise BadInput("isp is required", code="VPOP-400-MISSING")
    named = [name for name in LINE_IDENTIFIERS if name in values]
    if len(named) != 1:
        raise BadInput(
            f"name the line with exactly one of {', '.join(LINE_IDENTIFIERS)}",
            code="VPOP-400-LINE-ID",
        )
    return SelectionRequest(**values)


def run_view(run: Run) -> dict[str, Any]:
    """The public JSON shape of a run."""
    return {
        "run": run.id,
        "router": run.router,
        "kind": run.kind,
        "trigger": run.trigger,
        "requester": run.requester,
        "dry_run": run.dry_run,
        "status": run.status,
        "diff": run.diff,
        "result": run.result,
        "timings": run.timings,
        "error": run.error,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }


def _idempotency_key() -> str | None:
    values = request.headers.getlist("Idempotency-Key")
    if not values:
        return None
    if len(values) > 1 or not MESSAGE_ID.fullmatch(values[0]):
        raise Problem(
            400,
            "VPOP-400-IDEMPOTENCY-KEY",
            "Idempotency-Key must be one header of 1-200 characters of A-Z a-z 0-9 _ . : ~ -",
        )
    return values[0]


def _enqueue(router: str) -> None:
    enqueue: Callable[[str], None] = current_app.config["ENQUEUE"]
    try:
        enqueue(router)
    except Exception:
        # The order is committed; the queue's sweep re-enqueues waiting orders, so the
        # caller still gets its 202 rather than a retry that would only replay.
        current_app.logger.exception("could not enqueue router %s", router)


def _operators_only(caller: Caller) -> None:
    """Runs show every ISP's configuration: only NOC staff and admins read them."""
    if caller.role not in ("admin", "noc"):
        raise Forbidden("runs are for NOC staff and admins (token roles noc, admin)")


def _may_read_order(session: Session, caller: Caller, order: Order) -> bool:
    """ISP tokens read the orders their ISP requested (with any of its tokens)."""
    if caller.role != "isp" or order.requester == caller.name:
        return True
    token_id = order.requester.removeprefix("token:")
    if not token_id.isdigit():
        return False
    token = session.get(ApiToken, int(token_id))
    return token is not None and token.isp_id is not None and token.isp_id == caller.isp


def _runs_query() -> tuple[int, str | None]:
    allowed = {"limit", "router"}
    for key in request.args:
        if key not in allowed:
            raise BadInput(
                f"unknown query parameter {_short(key)}; allowed: limit, router",
                code="VPOP-400-UNKNOWN-FIELD",
            )
        if len(request.args.getlist(key)) > 1:
            raise BadInput(f"{key} is given more than once", code="VPOP-400-TYPE")
    limit = RUNS_DEFAULT_LIMIT
    raw_limit = request.args.get("limit")
    if raw_limit is not None:
        if not raw_limit.isascii() or not raw_limit.isdigit() or len(raw_limit) > 4:
            raise BadInput(f"limit must be an integer 1-{RUNS_MAX_LIMIT}", code="VPOP-400-TYPE")
        limit = int(raw_limit)
        if not 1 <= limit <= RUNS_MAX_LIMIT:
            raise BadInput(f"limit must be an integer 1-{RUNS_MAX_LIMIT}", code="VPOP-400-RANGE")
    raw_router = request.args.get("router")
    router = validate.name(raw_router, "router") if raw_router is not None else None
    return limit, router


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise Problem(400, "VPOP-400-JSON", f"the key {_short(key)} appears twice")
        seen[key] = value
    return seen


def _no_constant(name: str) -> NoReturn:
    raise Problem(400, "VPOP-400-JSON", f"{name} is not JSON")


def _short(text: str, limit: int = 40) -> str:
    """``repr`` of a caller's string, cut short: safe to echo in a problem detail."""
    shown = repr(text[:limit])
    return shown + "..." if len(text) > limit else shown
