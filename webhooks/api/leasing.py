"""The leasing side of the JSON API: leases, their utilisation and utilisation events.

Every write authenticates first (:mod:`webhooks.auth`), then parses the raw body strictly:
a JSON object in UTF-8 (:func:`~webhooks.api.common.json_object`), then the domain's request
model (:class:`~vpop.leasing.schemas.LeaseRequest`): known keys only, exact types, each
integer in its range, every string canonicalised by :mod:`vpop.core.validate`. Query strings
are as strict: known keys, each once. Times are ISO 8601 with a UTC offset (or a date alone,
midnight UTC) and windows are half-open, ``since <= at < until``. Errors leave as
``application/problem+json`` (:mod:`webhooks.problems`).

Who reads what: leases and events are for ``admin``/``noc`` tokens and, for their own ISP
only, ``isp`` tokens (another ISP's lease is "not there": 404, as for an unknown id); only
``admin``/``noc`` create, change and end leases. A lease's versions (its terms over time) are
read like the lease.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flask import current_app, request, url_for
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from vpop.core import validate
from vpop.core.db import session_scope
from vpop.core.errors import BadInput, NotFound
from vpop.core.schemas import short
from vpop.core.time import TIME_CODE, as_utc, iso, parse_time, utcnow
from vpop.leasing import service as leasing
from vpop.leasing.service import (
    KINDS,
    LEASE_STATUSES,
    Lease,
    LeaseChangeRequest,
    LeaseRequest,
    UtilisationEvent,
    UtilisationSample,
    percentile_95,
)
from vpop.selection.service import Caller, Forbidden
from webhooks.api.common import (
    MAX_ID,
    OPERATORS,
    boolean_arg,
    bp,
    json_object,
    limit_arg,
    query_args,
    window_args,
)
from webhooks.auth import authenticate

EVENTS_DEFAULT_LIMIT = 100


EVENTS_MAX_LIMIT = 1000


UTILISATION_DEFAULT_WINDOW = timedelta(days=1)


UTILISATION_MAX_WINDOW = timedelta(days=31)


@bp.get("/leases")
def list_leases() -> dict[str, Any]:
    """Leases by id: every ISP's for operators, its own for an ISP token."""
    own = _lease_reader(authenticate(allow_webhook=False).caller)
    args = query_args(("isp", "status"))
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
    body = LeaseRequest.parse(json_object())
    lease = leasing.create_lease(
        **body.model_dump(), actor=caller.name, url=current_app.config["DATABASE_URL"]
    )
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
                f"unknown field {short(next(iter(body)))}; this endpoint takes no fields",
                code="VPOP-400-UNKNOWN-FIELD",
            )
    if lease_id > MAX_ID:
        raise NotFound(f"unknown lease {lease_id}", code="VPOP-404-LEASE")
    lease = leasing.end_lease(lease_id, caller.name, url=current_app.config["DATABASE_URL"])
    headers = {"Location": url_for("api.get_lease", lease_id=lease.id)}
    return leasing.lease_view(lease), 202, headers


@bp.get("/leases/<int:lease_id>/versions")
def list_lease_versions(lease_id: int) -> dict[str, Any]:
    """A lease's versions (its terms over time), oldest first."""
    own = _lease_reader(authenticate(allow_webhook=False).caller)
    url = current_app.config["DATABASE_URL"]
    with session_scope(url) as session:
        _readable_lease(session, lease_id, own)
    return {"versions": leasing.list_versions(lease_id, url=url)}


@bp.post("/leases/<int:lease_id>/versions")
def change_lease(lease_id: int) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Renew a lease or change its terms (operators): writes its next version, effective now."""
    caller = authenticate(allow_webhook=True).caller
    _lease_writer(caller)
    body = LeaseChangeRequest.parse(json_object())
    if lease_id > MAX_ID:
        raise NotFound(f"unknown lease {lease_id}", code="VPOP-404-LEASE")
    url = current_app.config["DATABASE_URL"]
    leasing.change_lease(lease_id, actor=caller.name, url=url, **body.model_dump())
    headers = {"Location": url_for("api.list_lease_versions", lease_id=lease_id)}
    return leasing.list_versions(lease_id, url=url)[-1], 201, headers


@bp.get("/leases/<int:lease_id>/utilisation")
def get_lease_utilisation(lease_id: int) -> dict[str, Any]:
    """A lease's utilisation samples in a window (default: the last day), oldest first.

    ``p95_mbps`` is the window's 95th-percentile rate the way LibreNMS bills it
    (:func:`vpop.utilisation.percentile_95`); ``p95_pct`` is that rate over the committed rate.
    """
    own = _lease_reader(authenticate(allow_webhook=False).caller)
    args = query_args(("since", "until"))
    since, until = window_args(args)
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
    args = query_args(("open", "since", "kind", "limit"))
    stmt = (
        select(UtilisationEvent)
        .order_by(UtilisationEvent.opened_at.desc(), UtilisationEvent.id.desc())
        .limit(limit_arg(args.get("limit"), EVENTS_DEFAULT_LIMIT, EVENTS_MAX_LIMIT))
    )
    if own is not None:
        stmt = stmt.where(UtilisationEvent.isp_id == own)
    if "open" in args:
        still_open = UtilisationEvent.closed_at.is_(None)
        stmt = stmt.where(still_open if boolean_arg(args["open"], "open") else ~still_open)
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


def event_view(event: UtilisationEvent, now: datetime) -> dict[str, Any]:
    """The public JSON shape of a utilisation event (:class:`~vpop.leasing.schemas.
    UtilisationEvent`); ``seconds`` runs until now while open."""
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
    if lease is None or (own is not None and lease.isp_id != own):
        # not yours and not there are one answer, so lease ids cannot be probed
        raise NotFound(f"unknown lease {lease_id}", code="VPOP-404-LEASE")
    return lease
