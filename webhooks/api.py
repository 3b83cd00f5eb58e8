"""The JSON API under ``/api/v1``: selections, orders, subscribers, runs, the ISP catalogue
with its live QoS, QoS samples, leases, their utilisation and under/over-utilisation events.

Every write authenticates first (:mod:`webhooks.auth`), then parses the raw body strictly:
a JSON object in UTF-8, known keys only, exact types, every string canonicalised by
:mod:`vpop.validate`. Query strings are as strict: known keys, each once. Times are ISO 8601
with a UTC offset (or a date alone, midnight UTC) and windows are half-open, ``since <= at <
until``. Errors leave as ``application/problem+json`` (:mod:`webhooks.problems`).

Who reads what: the catalogue is public; QoS samples need any token (an ``isp`` token only
its own ISP's); leases and events are for ``admin``/``noc`` tokens and, for their own ISP
only, ``isp`` tokens; only ``admin``/``noc`` create and end leases.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NoReturn

from flask import Blueprint, current_app, request, url_for
from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload

from vpop import leasing, validate
from vpop.db import (
    ApiToken,
    Isp,
    Lease,
    Order,
    QosSample,
    Run,
    Subscriber,
    UtilisationEvent,
    UtilisationSample,
    session_scope,
    utcnow,
)
from vpop.errors import BadInput, NotFound
from vpop.orders import Caller, Forbidden, SelectionRequest, order_view, submit_selection
from vpop.reports import TIME_CODE, as_utc, current_qos, empty_qos, iso, parse_time
from vpop.utilisation import KINDS, percentile_95
from webhooks import openapi
from webhooks.auth import MESSAGE_ID, authenticate
from webhooks.problems import Problem

bp = Blueprint("api", __name__, url_prefix="/api/v1")

LINE_IDENTIFIERS = ("subscriber", "calling_number", "circuit_id", "access_id")
RUNS_DEFAULT_LIMIT = 50
RUNS_MAX_LIMIT = 500
SAMPLES_DEFAULT_LIMIT = 100
SAMPLES_MAX_LIMIT = 1000
EVENTS_DEFAULT_LIMIT = 100
EVENTS_MAX_LIMIT = 1000
UTILISATION_DEFAULT_WINDOW = timedelta(days=1)
UTILISATION_MAX_WINDOW = timedelta(days=31)
LEASE_STATUSES = ("provisioning", "active", "ending", "ended")
OPERATORS = ("admin", "noc")
# the largest id a database integer holds; a larger one in a URL names nothing
MAX_ID = 2**63 - 1


@dataclass(frozen=True)
class Field:
    """A body field: its exact JSON type and its canonicaliser."""

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


def _as_is(value: Any, _field: str) -> Any:
    """No canonical form to apply: :func:`vpop.leasing.create_lease` checks the range."""
    return value


# the body of POST /leases: the keyword arguments of vpop.leasing.create_lease
LEASE_FIELDS: dict[str, Field] = {
    "isp": Field(str, "string", validate.name),
    "router": Field(str, "string", validate.name),
    "committed_mbps": Field(int, "integer", _as_is),
    "price_minor": Field(int, "integer", _as_is),
    "peak_pct": Field(int, "integer", _as_is),
    "under_pct": Field(int, "integer", _as_is),
    "over_pct": Field(int, "integer", _as_is),
    "hysteresis_pct": Field(int, "integer", _as_is),
    "event_seconds": Field(int, "integer", _as_is),
    "ends_at": Field(str, "string", parse_time),
}
LEASE_REQUIRED = ("isp", "router", "committed_mbps", "price_minor")


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
        order = session.get(Order, order_id) if order_id <= MAX_ID else None
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
        run = session.get(Run, run_id) if run_id <= MAX_ID else None
        if run is None:
            raise NotFound(f"unknown run {run_id}", code="VPOP-404-RUN")
        return run_view(run)


@bp.get("/isps")
def list_isps() -> dict[str, Any]:
    """The public catalogue: every ISP, its plans and its current QoS (no authentication).

    ``qos`` comes from :func:`vpop.reports.current_qos`: per figure, the mean over routers of
    each router's newest sample at most 5 minutes old; None where no router has one.
    """
    stmt = select(Isp).order_by(Isp.id).options(selectinload(Isp.plans))
    with session_scope(current_app.config["DATABASE_URL"]) as session:
        isps = list(session.scalars(stmt))
        qos = current_qos(session, isps=[isp.id for isp in isps])
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
                    "qos": qos.get(isp.id) or empty_qos(),
                }
                for isp in isps
            ]
        }


@bp.get("/isps/<isp_id>/qos")
def list_isp_qos(isp_id: str) -> dict[str, Any]:
    """An ISP's QoS samples, newest first (any token; an ISP token only its own ISP)."""
    caller = authenticate(allow_webhook=False).caller
    isp_id = validate.name(isp_id, "isp")
    if caller.role == "isp" and caller.isp != isp_id:
        raise Forbidden(f"an ISP token reads only its own ISP's QoS, not {isp_id!r}")
    args = _query_args(("since", "until", "limit", "router"))
    since, until = _window(args)
    limit = _limit(args.get("limit"), SAMPLES_DEFAULT_LIMIT, SAMPLES_MAX_LIMIT)
    stmt = (
        select(QosSample)
        .where(QosSample.isp_id == isp_id)
        .order_by(QosSample.at.desc(), QosSample.id.desc())
        .limit(limit)
    )
    if since is not None:
        stmt = stmt.where(QosSample.at >= since)
    if until is not None:
        stmt = stmt.where(QosSample.at < until)
    if "router" in args:
        stmt = stmt.where(QosSample.router == validate.name(args["router"], "router"))
    with session_scope(current_app.config["DATABASE_URL"]) as session:
        if session.get(Isp, isp_id) is None:
            raise NotFound(f"unknown ISP {isp_id!r}", code="VPOP-404-ISP")
        return {
            "isp": isp_id,
            "samples": [
                {
                    "at": iso(sample.at),
                    "router": sample.router,
                    "latency_ms": sample.latency_ms,
                    "jitter_ms": sample.jitter_ms,
                    "loss_pct": sample.loss_pct,
                    "throughput_mbps": sample.throughput_mbps,
                    "sent": sample.sent,
                    "received": sample.received,
                }
                for sample in session.scalars(stmt)
            ],
        }


@bp.get("/leases")
def list_leases() -> dict[str, Any]:
    """Leases by id: every ISP's for operators, its own for an ISP token."""
    own = _lease_reader(authenticate(allow_webhook=False).caller)
    args = _query_args(("isp", "status"))
    isp = validate.name(args["isp"], "isp") if "isp" in args else own
    if own is not None and isp != own:
        raise Forbidden(f"an ISP token lists only its own ISP's leases, not {isp!r}")
    stmt = select(Lease).order_by(Lease.id)
    if isp is not None:
        stmt = stmt.where(Lease.isp_id == isp)
    if "status" in args:
        stmt = stmt.where(Lease.status == validate.one_of(args["status"], "status", LEASE_STATUSES))
    with session_scope(current_app.config["DATABASE_URL"]) as session:
        return {"leases": [leasing.lease_view(lease) for lease in session.scalars(stmt)]}


@bp.post("/leases")
def create_lease() -> tuple[dict[str, Any], int, dict[str, str]]:
    """Lease an ISP's uplink on a router (operators); the queue then provisions it."""
    caller = authenticate(allow_webhook=True).caller
    _lease_writer(caller)
    values = parse_lease(json_object())
    lease = leasing.create_lease(
        **values,
        starts_at=utcnow(),  # so that an ends_at in the past is refused
        actor=caller.name,
        url=current_app.config["DATABASE_URL"],
    )
    _lease_changed(lease.id)
    headers = {"Location": url_for("api.get_lease", lease_id=lease.id)}
    return leasing.lease_view(lease), 201, headers


@bp.get("/leases/<int:lease_id>")
def get_lease(lease_id: int) -> dict[str, Any]:
    """One lease."""
    own = _lease_reader(authenticate(allow_webhook=False).caller)
    with session_scope(current_app.config["DATABASE_URL"]) as session:
        return leasing.lease_view(_readable_lease(session, lease_id, own))


@bp.post("/leases/<int:lease_id>/end")
def end_lease(lease_id: int) -> tuple[dict[str, Any], int, dict[str, str]]:
    """End a lease (operators): it is ``ending`` until the queue removes its shaping."""
    caller = authenticate(allow_webhook=True).caller
    _lease_writer(caller)
    if request.get_data(cache=True).strip():
        body = json_object()
        if body:
            raise BadInput(
                f"unknown field {_short(next(iter(body)))}; this endpoint takes no fields",
                code="VPOP-400-UNKNOWN-FIELD",
            )
    if lease_id > MAX_ID:
        raise NotFound(f"unknown lease {lease_id}", code="VPOP-404-LEASE")
    lease = leasing.end_lease(lease_id, caller.name, url=current_app.config["DATABASE_URL"])
    _lease_changed(lease.id)
    headers = {"Location": url_for("api.get_lease", lease_id=lease.id)}
    return leasing.lease_view(lease), 202, headers


@bp.get("/leases/<int:lease_id>/utilisation")
def get_lease_utilisation(lease_id: int) -> dict[str, Any]:
    """A lease's utilisation samples in a window (default: the last day), oldest first.

    ``p95_mbps`` is the window's 95th-percentile rate the way LibreNMS bills it
    (:func:`vpop.utilisation.percentile_95`); ``p95_pct`` is that rate over the committed rate.
    """
    own = _lease_reader(authenticate(allow_webhook=False).caller)
    args = _query_args(("since", "until"))
    since, until = _window(args)
    now = utcnow()
    until = until or now
    since = since or until - UTILISATION_DEFAULT_WINDOW
    if until <= since:
        raise BadInput("since must be before until", code=TIME_CODE)
    if until - since > UTILISATION_MAX_WINDOW:
        raise BadInput(
            f"the window is at most {UTILISATION_MAX_WINDOW.days} days; "
            "use `vpop report utilisation` for longer periods",
            code="VPOP-400-RANGE",
        )
    with session_scope(current_app.config["DATABASE_URL"]) as session:
        lease = _readable_lease(session, lease_id, own)
        samples = session.execute(
            select(
                UtilisationSample.at,
                UtilisationSample.rate_mbps,
                UtilisationSample.utilisation_pct,
            )
            .where(
                UtilisationSample.lease_id == lease_id,
                UtilisationSample.at >= since,
                UtilisationSample.at < until,
            )
            .order_by(UtilisationSample.at, UtilisationSample.id)
        ).all()
        open_events = session.scalars(
            select(UtilisationEvent)
            .where(UtilisationEvent.lease_id == lease_id, UtilisationEvent.closed_at.is_(None))
            .order_by(UtilisationEvent.opened_at, UtilisationEvent.id)
        ).all()
        view = leasing.lease_view(lease)
    p95 = percentile_95([rate for _, rate, _ in samples]) if samples else None
    return {
        "lease": view,
        "since": iso(since),
        "until": iso(until),
        "samples": [
            {"at": iso(at), "rate_mbps": rate, "utilisation_pct": pct} for at, rate, pct in samples
        ],
        "p95_mbps": p95,
        "p95_pct": None if p95 is None else round(p95 / view["committed_mbps"] * 100, 3),
        "open_events": [event_view(event, now) for event in open_events],
    }


@bp.get("/events")
def list_events() -> dict[str, Any]:
    """Under- and over-utilisation events, the newest opened first.

    ``since`` keeps the events open at or after that time (still open, or closed since).
    """
    own = _lease_reader(authenticate(allow_webhook=False).caller)
    args = _query_args(("open", "since", "kind", "limit"))
    stmt = (
        select(UtilisationEvent)
        .order_by(UtilisationEvent.opened_at.desc(), UtilisationEvent.id.desc())
        .limit(_limit(args.get("limit"), EVENTS_DEFAULT_LIMIT, EVENTS_MAX_LIMIT))
    )
    if own is not None:
        stmt = stmt.where(UtilisationEvent.isp_id == own)
    if "open" in args:
        still_open = UtilisationEvent.closed_at.is_(None)
        stmt = stmt.where(still_open if _boolean(args["open"], "open") else ~still_open)
    if "since" in args:
        since = parse_time(args["since"], "since")
        stmt = stmt.where(
            or_(UtilisationEvent.closed_at.is_(None), UtilisationEvent.closed_at >= since)
        )
    if "kind" in args:
        stmt = stmt.where(UtilisationEvent.kind == validate.one_of(args["kind"], "kind", KINDS))
    now = utcnow()
    with session_scope(current_app.config["DATABASE_URL"]) as session:
        return {"events": [event_view(event, now) for event in session.scalars(stmt)]}


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


def parse_lease(body: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of :func:`vpop.leasing.create_lease` from a decoded body.

    Raises:
        BadInput: unknown field, wrong JSON type, missing field, or a malformed value.
    """
    unknown = [key for key in body if key not in LEASE_FIELDS]
    if unknown:
        raise BadInput(
            f"unknown field {_short(unknown[0])}; allowed: {', '.join(LEASE_FIELDS)}",
            code="VPOP-400-UNKNOWN-FIELD",
        )
    missing = [name for name in LEASE_REQUIRED if name not in body]
    if missing:
        raise BadInput(
            f"missing field(s) {', '.join(missing)}; required: {', '.join(LEASE_REQUIRED)}",
            code="VPOP-400-MISSING",
        )
    values: dict[str, Any] = {}
    for name, value in body.items():
        field = LEASE_FIELDS[name]
        if type(value) is not field.type:  # exact: a bool is not an integer, 1.0 is not 1
            raise BadInput(f"{name} must be a JSON {field.json_type}", code="VPOP-400-TYPE")
        values[name] = field.check(value, name)
    return values


def event_view(event: UtilisationEvent, now: datetime) -> dict[str, Any]:
    """The public JSON shape of a utilisation event; ``seconds`` runs until now while open."""
    stop = event.closed_at if event.closed_at is not None else now
    return {
        "event": event.id,
        "lease": event.lease_id,
        "isp": event.isp_id,
        "kind": event.kind,
        "open": event.closed_at is None,
        "opened_at": iso(event.opened_at),
        "closed_at": iso(event.closed_at),
        "seconds": round(max(0.0, (as_utc(stop) - as_utc(event.opened_at)).total_seconds()), 1),
        "extreme_pct": event.extreme_pct,
    }


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
    args = _query_args(("limit", "router"))
    limit = _limit(args.get("limit"), RUNS_DEFAULT_LIMIT, RUNS_MAX_LIMIT)
    router = validate.name(args["router"], "router") if "router" in args else None
    return limit, router


def _query_args(allowed: Sequence[str]) -> dict[str, str]:
    """The query string as a dict: only ``allowed`` keys, each at most once."""
    for key in request.args:
        if key not in allowed:
            raise BadInput(
                f"unknown query parameter {_short(key)}; allowed: {', '.join(allowed)}",
                code="VPOP-400-UNKNOWN-FIELD",
            )
        if len(request.args.getlist(key)) > 1:
            raise BadInput(f"{key} is given more than once", code="VPOP-400-TYPE")
    return dict(request.args.items())


def _limit(raw: str | None, default: int, maximum: int) -> int:
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 4:
        raise BadInput(f"limit must be an integer 1-{maximum}", code="VPOP-400-TYPE")
    limit = int(raw)
    if not 1 <= limit <= maximum:
        raise BadInput(f"limit must be an integer 1-{maximum}", code="VPOP-400-RANGE")
    return limit


def _window(args: Mapping[str, str]) -> tuple[datetime | None, datetime | None]:
    """``since`` and ``until`` from the query, when given; since must come first."""
    since = parse_time(args["since"], "since") if "since" in args else None
    until = parse_time(args["until"], "until") if "until" in args else None
    if since is not None and until is not None and until <= since:
        raise BadInput("since must be before until", code=TIME_CODE)
    return since, until


def _boolean(raw: str, name: str) -> bool:
    if raw not in ("true", "false"):
        raise BadInput(f"{name} must be true or false", code="VPOP-400-TYPE")
    return raw == "true"


def _lease_reader(caller: Caller) -> str | None:
    """Whose leases and events the caller reads: None for every ISP's, else one ISP id."""
    if caller.role in OPERATORS:
        return None
    if caller.role == "isp" and caller.isp is not None:
        return caller.isp
    raise Forbidden(
        "leases and utilisation are for NOC staff, admins and the leasing ISP's own tokens"
    )


def _lease_writer(caller: Caller) -> None:
    """Leases change routers and bills: only NOC staff and admins create or end them."""
    if caller.role not in OPERATORS:
        raise Forbidden("leases are created and ended by NOC staff and admins (roles noc, admin)")


def _readable_lease(session: Session, lease_id: int, own: str | None) -> Lease:
    lease = session.get(Lease, lease_id) if lease_id <= MAX_ID else None
    if lease is None:
        raise NotFound(f"unknown lease {lease_id}", code="VPOP-404-LEASE")
    if own is not None and lease.isp_id != own:
        raise Forbidden(f"lease {lease_id} is not leased to this ISP")
    return lease


def _lease_changed(lease_id: int) -> None:
    lease_changed: Callable[[int], None] = current_app.config["LEASE_CHANGED"]
    try:
        lease_changed(lease_id)
    except Exception:
        # The lease is committed; it stays in its status until it is queued again, so the
        # caller gets its answer and the log says what to retry.
        current_app.logger.exception("could not queue lease %s", lease_id)


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
