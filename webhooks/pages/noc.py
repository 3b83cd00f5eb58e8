"""The NOC pages under ``/noc``: orders, runs, leases, the audit log, and the actions on them.

Everything but the sign-in form needs a signed-in user of role ``noc`` or ``admin``
(:mod:`vpop.users`, created with ``vpop user create``). The session is Flask's signed cookie
(HttpOnly, SameSite=Lax); the user is looked up again on every request, so disabling a user
ends their session at once. Every form is a POST with a CSRF token (:mod:`webhooks.csrf`).

Actions, each recorded in the audit log under ``user:<name>``:

* **retry** an order: a new order for the same line and ISP, through
  :func:`vpop.orders.submit_selection` like any other;
* **dry-run** an order: a new ``dry_run`` order for the same line and ISP (its diff, no change);
* **reconcile** a router: queue a run that converges it to the confirmed selections
  (:func:`vpop.selection.service.request_reconcile`, which the wiring queues at once);
* **portal link**: a signed link that lets a subscriber choose from anywhere, on the
  configured public address (``VPOP_PUBLIC_URL``).

The pages use the API's own views (:func:`webhooks.api.run_view`,
:func:`webhooks.api.event_view`, :func:`vpop.orders.order_view`,
:func:`vpop.leasing.lease_view`), so they name things as the API does.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from flask import (
    Response,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload
from werkzeug.wrappers import Response as BaseResponse

from vpop.catalogue.service import Isp, Line, Subscriber
from vpop.core import validate
from vpop.core.audit import AuditEntry, audit
from vpop.core.db import session_scope
from vpop.core.errors import BadInput, NotFound
from vpop.core.settings import load_settings
from vpop.core.time import as_utc, utcnow
from vpop.identity.service import ApiToken
from vpop.leasing import service as leasing
from vpop.leasing.service import Lease, UtilisationEvent
from vpop.monitoring.service import Rollup
from vpop.selection.service import (
    DEFAULT_TTL,
    Order,
    OrderStatus,
    Run,
    make_token,
    order_view,
    request_reconcile,
    submit_selection,
)
from webhooks.api.common import MAX_ID
from webhooks.api.leasing import event_view
from webhooks.api.selection import run_view
from webhooks.pages import csrf, svg
from webhooks.pages.helpers import (
    check_form_fields,
    form_key,
    new_form_key,
    selection_for_line,
    single_form_value,
)
from webhooks.pages.noc_common import bp, current_actor, current_caller, database_url

PAGE_SIZE = 50

AUDIT_PAGE_SIZE = 100

CHART_WINDOW = timedelta(hours=24)


CHART_GAP_SECONDS = 15 * 60


ORDER_STATUSES = tuple(status.value for status in OrderStatus)


ACTION_FIELDS = ("csrf_token", "form_key")


@bp.get("/")
def home() -> BaseResponse:
    """The NOC pages start at the order list."""
    return redirect(url_for("noc.orders"), code=302)


@bp.get("/orders")
def orders() -> Response:
    """Orders, newest first; filter by ``status`` or ``router``, page with ``before``."""
    status = _arg_choice("status", ORDER_STATUSES)
    router = _arg_name("router")
    before = _arg_id("before")
    stmt = (
        select(Order)
        .options(selectinload(Order.line).selectinload(Line.subscriber))
        .order_by(Order.id.desc())
        .limit(PAGE_SIZE)
    )
    if status is not None:
        stmt = stmt.where(Order.status == status)
    if router is not None:
        stmt = stmt.where(Order.router == router)
    if before is not None:
        stmt = stmt.where(Order.id < before)
    with session_scope(database_url()) as db:
        rows = [
            {
                **order_view(o, whole_diff=True),
                "subscriber": o.line.subscriber_id,
                "interface": o.line.interface,
            }
            for o in db.scalars(stmt)
        ]
        names = _isp_names(db)
    return make_response(
        render_template(
            "noc/orders.html",
            orders=rows,
            names=names,
            status=status,
            router=router,
            statuses=ORDER_STATUSES,
            older=rows[-1]["order"] if len(rows) == PAGE_SIZE else None,
            seconds=_seconds,
        )
    )


@bp.get("/orders/<int:order_id>")
def order_detail(order_id: int) -> Response:
    """One order: status, diff, who asked, its run's per-router result and timings."""
    with session_scope(database_url()) as db:
        order = _order(db, order_id)
        view = order_view(order, whole_diff=True)
        line = order.line
        run = run_view(order.run) if order.run is not None else None
        names = _isp_names(db)
        current = line.selection.isp_id if line.selection is not None else None
        line_view = {
            "line": line.id,
            "subscriber": line.subscriber_id,
            "router": line.router,
            "interface": line.interface,
            "prefix": line.prefix,
            "circuit_id": line.circuit_id,
            "current_isp": current,
        }
        who = _requesters(db, [view["requester"]])
    return make_response(
        render_template(
            "noc/order.html",
            order=view,
            line=line_view,
            run=run,
            names=names,
            who=who,
            form_key=new_form_key(),
            seconds=_seconds,
        )
    )


@bp.get("/orders/<int:order_id>.json")
def order_json(order_id: int) -> dict[str, Any]:
    """The order as the API shows it, for the page's script to poll."""
    with session_scope(database_url()) as db:
        return order_view(_order(db, order_id), whole_diff=True)


@bp.post("/orders/<int:order_id>/retry")
def retry(order_id: int) -> BaseResponse:
    """A new order for the same line and ISP."""
    return _resubmit(order_id, dry_run=False)


@bp.post("/orders/<int:order_id>/dry-run")
def dry_run(order_id: int) -> BaseResponse:
    """A new dry-run order for the same line and ISP: its diff, no change."""
    return _resubmit(order_id, dry_run=True)


def _resubmit(order_id: int, *, dry_run: bool) -> BaseResponse:
    csrf.protect()
    check_form_fields(ACTION_FIELDS)
    key = form_key(single_form_value("form_key"))
    with session_scope(database_url()) as db:
        old = _order(db, order_id)
        line = db.scalars(
            select(Line)
            .where(Line.id == old.line_id)
            .options(selectinload(Line.subscriber).selectinload(Subscriber.lines))
        ).one()
        req = selection_for_line(line, old.isp_id, dry_run=dry_run)
    order, _ = submit_selection(req, current_caller(), key, url=database_url())
    what = "dry-run" if dry_run else "retry"
    flash(f"Order {order.id} is the {what} of order {order_id}.")
    return redirect(url_for("noc.order_detail", order_id=order.id), code=303)


def _order(db: Session, order_id: int) -> Order:
    order = db.get(Order, order_id) if order_id <= MAX_ID else None
    if order is None:
        raise NotFound(f"unknown order {order_id}", code="VPOP-404-ORDER")
    return order


@bp.get("/runs")
def runs() -> Response:
    """Runs, newest first; filter by ``router``, page with ``before``."""
    router = _arg_name("router")
    before = _arg_id("before")
    stmt = select(Run).order_by(Run.id.desc()).limit(PAGE_SIZE)
    if router is not None:
        stmt = stmt.where(Run.router == router)
    if before is not None:
        stmt = stmt.where(Run.id < before)
    with session_scope(database_url()) as db:
        rows = [run_view(run) for run in db.scalars(stmt)]
        who = _requesters(db, [row["requester"] for row in rows])
        routers = _routers(db)
    return make_response(
        render_template(
            "noc/runs.html",
            runs=rows,
            who=who,
            router=router,
            routers=routers,
            older=rows[-1]["run"] if len(rows) == PAGE_SIZE else None,
            form_key=new_form_key(),
        )
    )


@bp.get("/runs/<int:run_id>")
def run_detail(run_id: int) -> Response:
    """One run: diff, per-router result, timings, its orders."""
    with session_scope(database_url()) as db:
        run = db.get(Run, run_id) if run_id <= MAX_ID else None
        if run is None:
            raise NotFound(f"unknown run {run_id}", code="VPOP-404-RUN")
        view = run_view(run)
        order_rows = [
            order_view(o, whole_diff=True)
            for o in db.scalars(select(Order).where(Order.run_id == run_id).order_by(Order.id))
        ]
        who = _requesters(db, [view["requester"]])
        names = _isp_names(db)
    return make_response(
        render_template(
            "noc/run.html",
            run=view,
            orders=order_rows,
            who=who,
            names=names,
            form_key=new_form_key(),
        )
    )


@bp.post("/routers/<router>/reconcile")
def reconcile(router: str) -> BaseResponse:
    """Queue a reconcile of the router: converge it to the confirmed selections."""
    csrf.protect()
    check_form_fields(ACTION_FIELDS)
    router = validate.name(router, "router")
    with session_scope(database_url()) as db:
        if router not in _routers(db):
            raise NotFound(f"unknown router {router!r}", code="VPOP-404-ROUTER")
    request_reconcile(router, current_actor(), url=database_url())
    flash(f"A reconcile of {router} is queued; its run appears below when it starts.")
    return redirect(url_for("noc.runs", router=router), code=303)


@bp.get("/leases")
def leases() -> Response:
    """Every lease with its 24-hour utilisation chart and its open events."""
    now = utcnow()
    start = now - CHART_WINDOW
    with session_scope(database_url()) as db:
        rows = list(db.scalars(select(Lease).order_by(Lease.id)))
        series = {f"util:lease:{lease.id}": lease.id for lease in rows}
        points: dict[int, list[svg.Point]] = {lease.id: [] for lease in rows}
        if series:
            for name, bucket, count, total in db.execute(
                select(Rollup.series, Rollup.bucket, Rollup.count, Rollup.total)
                .where(Rollup.series.in_(list(series)), Rollup.bucket >= start)
                .order_by(Rollup.bucket)
            ):
                if count > 0:
                    at = min(as_utc(bucket).timestamp() + 150.0, now.timestamp())
                    points[series[name]].append((at, total / count))
        events: dict[int, list[dict[str, Any]]] = {lease.id: [] for lease in rows}
        for event in db.scalars(
            select(UtilisationEvent)
            .join(Lease, Lease.id == UtilisationEvent.lease_id)
            .where(
                UtilisationEvent.closed_at.is_(None), Lease.status.in_(("active", "provisioning"))
            )
            .order_by(UtilisationEvent.opened_at, UtilisationEvent.id)
        ):
            events.setdefault(event.lease_id, []).append(event_view(event, now))
        cards = []
        for lease in rows:
            view = leasing.lease_view(lease)
            cards.append(
                {
                    "lease": view,
                    "events": events.get(lease.id, []),
                    "chart": svg.chart(
                        points[lease.id],
                        start=start.timestamp(),
                        end=now.timestamp(),
                        gap=CHART_GAP_SECONDS,
                        label=f"lease {lease.id} utilisation over the last 24 hours, "
                        "5-minute means, percent of the committed rate",
                        unit="%",
                        start_label="24 h ago",
                        end_label="now",
                        thresholds=[
                            (float(lease.under_pct), "under"),
                            (float(lease.over_pct), "over"),
                        ],
                    ),
                    "latest": points[lease.id][-1][1] if points[lease.id] else None,
                }
            )
        names = _isp_names(db)
    return make_response(render_template("noc/leases.html", leases=cards, names=names))


@bp.get("/audit")
def audit_log() -> Response:
    """The audit log, newest first; page with ``before``."""
    before = _arg_id("before")
    stmt = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(AUDIT_PAGE_SIZE)
    if before is not None:
        stmt = stmt.where(AuditEntry.id < before)
    with session_scope(database_url()) as db:
        entries = [
            {
                "id": e.id,
                "at": e.at,
                "actor": e.actor,
                "action": e.action,
                "object": e.object,
                "details": e.details,
            }
            for e in db.scalars(stmt)
        ]
    return make_response(
        render_template(
            "noc/audit.html",
            entries=entries,
            older=entries[-1]["id"] if len(entries) == AUDIT_PAGE_SIZE else None,
        )
    )


@bp.get("/portal-links")
def portal_link_form() -> Response:
    """The form that makes a portal link for a subscriber."""
    return make_response(
        render_template("noc/portal_link.html", link=None, error=None, subscriber="")
    )


@bp.post("/portal-links")
def portal_link() -> Response:
    """Make a signed link (valid 24 h) that lets a subscriber choose from anywhere."""
    csrf.protect()
    check_form_fields(("csrf_token", "subscriber"))
    raw = single_form_value("subscriber") or ""
    try:
        subscriber = validate.name(raw, "subscriber")
        with session_scope(database_url()) as db:
            if db.get(Subscriber, subscriber) is None:
                raise NotFound(f"unknown subscriber {subscriber!r}", code="VPOP-404-SUBSCRIBER")
            audit(db, current_actor(), "portal_link.create", f"subscriber:{subscriber}")
    except (BadInput, NotFound) as err:
        page = render_template(
            "noc/portal_link.html", link=None, error=err.message, subscriber=raw[:64]
        )
        return make_response(page, err.status)
    token = make_token(subscriber, key=current_app.config["SECRET_KEY"])
    # the address subscribers reach the portal at, not the one this request came in on
    query = urlencode({"link": token})
    link = f"{load_settings().public_url.rstrip('/')}{url_for('portal.index')}?{query}"
    ttl = int(current_app.config.get("PORTAL_LINK_MAX_AGE", DEFAULT_TTL))
    return make_response(
        render_template(
            "noc/portal_link.html",
            link=link,
            error=None,
            subscriber=subscriber,
            hours=round(ttl / 3600),
        )
    )


def _isp_names(db: Session) -> dict[str, str]:
    return {isp: name for isp, name in db.execute(select(Isp.id, Isp.name))}


def _routers(db: Session) -> list[str]:
    """The routers vpop knows: those with lines, runs or leases."""
    found = set(db.scalars(select(Line.router).distinct()))
    found |= set(db.scalars(select(Run.router).distinct()))
    found |= set(db.scalars(select(Lease.router).distinct()))
    return sorted(found)


def _requesters(db: Session, requesters: list[str]) -> dict[str, str]:
    """Who a requester string stands for: ``token:3`` -> ``token 3 "ci" (noc)``."""
    ids = {
        int(part.removeprefix("token:"))
        for requester in requesters
        for part in requester.split(", ")
        if part.startswith("token:") and part.removeprefix("token:").isdigit()
    }
    ids = {i for i in ids if i <= MAX_ID}
    described: dict[str, str] = {}
    if ids:
        for token in db.scalars(select(ApiToken).where(ApiToken.id.in_(ids))):
            scope = f" for {token.isp_id}" if token.isp_id else ""
            described[f"token:{token.id}"] = (
                f'API token {token.id} "{token.name}" ({token.role}{scope})'
            )
    return described


def _seconds(start: str | None, end: str | None) -> str:
    """``1.23 s`` between two ISO times; ``-`` when either is missing."""
    if start is None or end is None:
        return "-"
    took = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    return f"{took:.2f} s"


def _arg(name: str) -> str | None:
    values = request.args.getlist(name)
    if len(values) > 1:
        raise BadInput(f"{name} is given more than once", code="VPOP-400-TYPE")
    return values[0] if values and values[0] != "" else None


def _arg_choice(name: str, choices: tuple[str, ...]) -> str | None:
    raw = _arg(name)
    return None if raw is None else validate.one_of(raw, name, choices)


def _arg_name(name: str) -> str | None:
    raw = _arg(name)
    return None if raw is None else validate.name(raw, name)


def _arg_id(name: str) -> int | None:
    raw = _arg(name)
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise BadInput(f"{name} must be a positive whole number", code="VPOP-400-TYPE")
    return int(raw)
