"""The subscriber portal at ``/``: the ISPs with their live QoS, a recommendation, a choice.

Who is choosing (``docs/portal.md``):

* **On the line.** In the lab every router answers on the portal address (``vpop serve``,
  :mod:`vpop.netns`), so a subscriber's browser reaches the portal through its own access
  router, and the request's source address is the subscriber's. The line whose prefix holds
  that address (longest match) is the visitor's line. Forwarding headers such as
  ``X-Forwarded-For`` are ignored: only the network's own source address counts, and the
  routers' anti-spoofing filters keep a subscriber from sending another line's.
* **By link.** Elsewhere, a signed link that expires (``vpop portal-link SUBSCRIBER``,
  :mod:`vpop.portal_links`) names the subscriber. A tampered or expired link is refused.

Anyone may see the list; choosing needs one of the two. A choice is an order, written through
the same path as ``POST /api/v1/selections`` (:func:`vpop.orders.submit_selection`), from a
plain HTML form with a CSRF token (:mod:`webhooks.csrf`) and a one-time form key that makes a
double click one order. The order page then shows its progress (refreshing itself, or polled
by ``static/vpop.js``) and the result in plain words.

**Requests from ISPs.** An ISP that asks to take over a line that is not its customer gets
a pending order (:mod:`vpop.selection.consent`). The subscriber's page lists the requests
waiting for their line with Confirm and Decline buttons; the signed link the ISP received
(``/consent?c=...``) opens a page with the one request and the same buttons. Both are plain
forms with the CSRF token; an answer is given once, a confirmed request runs like a choice.

This module also holds what the portal and the NOC pages (:mod:`webhooks.noc`) share: the
error page, security headers, template filters and the line-to-request mapping.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sansio.blueprints import BlueprintSetupState
from jinja2 import StrictUndefined
from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload
from werkzeug.wrappers import Response as BaseResponse

from vpop.catalogue.service import Isp, Line, Subscriber
from vpop.core import validate
from vpop.core.db import session_scope
from vpop.core.errors import BadInput, NotFound, VpopError
from vpop.core.time import as_utc, utcnow
from vpop.monitoring.service import QOS_FIGURES, Rollup
from vpop.selection.service import (
    DEFAULT_TTL,
    Caller,
    Candidate,
    LinkRefused,
    Order,
    Recommendation,
    format_figure,
    order_view,
    read_token,
    recommend,
    submit_selection,
)
from webhooks.api.catalogue import catalogue as isp_catalogue
from webhooks.api.common import MAX_ID
from webhooks.pages import csrf, svg
from webhooks.pages.helpers import (
    age_filter,
    check_form_fields,
    csrf_token,
    form_key,
    money_filter,
    new_form_key,
    requests_for,
    security_headers,
    selection_for_line,
    single_form_value,
    utc_filter,
)
from webhooks.pages.order_words import consent_words, plain_words
from webhooks.problems import Problem

bp = Blueprint("portal", __name__)

SPARK_WINDOW = timedelta(hours=24)

# a rollup bucket is 5 minutes; a longer hole in a series is drawn as a gap
SPARK_GAP_SECONDS = 15 * 60


FIGURE_LABELS = {
    "latency_ms": ("latency", "ms"),
    "jitter_ms": ("jitter", "ms"),
    "loss_pct": ("loss", "%"),
    "throughput_mbps": ("throughput", "Mbit/s"),
}


CHOOSE_FIELDS = ("csrf_token", "isp", "link", "form_key")


CONSENT_FIELDS = ("csrf_token", "order", "answer", "link", "c")


ANSWERS = ("confirm", "decline")


MAX_LINK_LENGTH = 512


SESSION_ORDERS = "orders"


SESSION_ORDERS_KEPT = 20


@dataclass(frozen=True)
class Visitor:
    """A subscriber the portal recognised, and on which line.

    Attributes:
        subscriber: The subscriber id.
        name: The subscriber's name.
        profile: The subscriber's profile (``{"prefer": ...}``).
        line: The line id.
        router: The line's router.
        current_isp: The ISP the line uses now (confirmed), or None for the default.
        how: ``line`` (recognised by source address) or ``link`` (a signed link).
        link: The link's token, when ``how`` is ``link``.
    """

    subscriber: str
    name: str
    profile: Mapping[str, Any]
    line: int
    router: str
    current_isp: str | None
    how: str
    link: str | None = None


@bp.record_once
def _configure_templates(state: BlueprintSetupState) -> None:
    """The pages' Jinja2 rules: undefined names fail loudly, blocks leave no blank lines."""
    env = state.app.jinja_env
    env.undefined = StrictUndefined
    env.trim_blocks = True
    env.lstrip_blocks = True


bp.after_request(security_headers)


@bp.get("/")
def index() -> Response:
    """The ISP list with live QoS, the recommendation, and choose buttons when allowed."""
    link = request.args.get("link")
    visitor = visitor_for(link)
    return _render_index(visitor)


@bp.post("/choose")
def choose() -> BaseResponse:
    """Start a selection for the visitor's line; on success, go to the order's page."""
    csrf.protect()
    try:
        check_form_fields(CHOOSE_FIELDS)
        link = single_form_value("link")
        key = form_key(single_form_value("form_key"))
        raw_isp = single_form_value("isp")
    except BadInput as err:
        # the form is damaged: show the list again (to a visitor recognised by the line only)
        return _render_index(visitor_for(None), error=err.message, status=err.status)
    visitor = visitor_for(link or None)
    if visitor is None:
        raise Problem(
            403,
            "VPOP-403",
            "to choose an ISP, open this page from your own line, or use the link your ISP "
            "or support sent you",
        )
    try:
        if raw_isp is None or raw_isp == "":
            raise BadInput("choose one of the ISPs in the list", code="VPOP-400-MISSING")
        isp = validate.name(raw_isp, "isp")
        with session_scope(current_app.config["DATABASE_URL"]) as db:
            line = _load_line(db, visitor.line)
            req = selection_for_line(line, isp)
        caller = Caller(name=f"portal:{visitor.subscriber}", role="portal")
        order, _ = submit_selection(req, caller, key, url=current_app.config["DATABASE_URL"])
    except VpopError as err:
        if isinstance(err, BadInput | NotFound):
            return _render_index(visitor, error=err.message, status=err.status)
        raise
    remember_order(order.id)
    return redirect(url_for("portal.order_page", order_id=order.id), code=303)


@bp.get("/orders/<int:order_id>")
def order_page(order_id: int) -> Response:
    """An order's progress and result, in plain words (refreshes itself until it ends)."""
    view, words = _order_words(order_id)
    return make_response(render_template("portal/order.html", order=view, words=words))


@bp.get("/orders/<int:order_id>.json")
def order_json(order_id: int) -> dict[str, Any]:
    """The same as JSON, for the page's script to poll."""
    view, words = _order_words(order_id)
    return {
        "order": view["order"],
        "status": view["status"],
        "final": view["final"],
        **words,
    }


def _render_index(
    visitor: Visitor | None, *, error: str | None = None, status: int = 200
) -> Response:
    """The list page, with ``error`` shown at the top when a form was refused."""
    now = utcnow()
    # the API's own catalogue: same words, same figures
    catalogue = isp_catalogue(current_app.config["DATABASE_URL"])["isps"]
    with session_scope(current_app.config["DATABASE_URL"]) as db:
        history = _qos_history(db, [isp["id"] for isp in catalogue], now)
    pick = recommend([_candidate(isp) for isp in catalogue], visitor.profile if visitor else None)
    isps = [_isp_card(isp, history, now, visitor, pick) for isp in catalogue]
    names = {isp["id"]: isp["name"] for isp in catalogue}
    body = render_template(
        "portal/index.html",
        isps=isps,
        visitor=visitor,
        current_name=names.get(visitor.current_isp or "") if visitor else None,
        recommendation=pick,
        recommended_name=names.get(pick.isp, pick.isp) if pick else None,
        error=error,
        form_key=new_form_key(),
        requests=requests_for([visitor.line]) if visitor else [],
    )
    return make_response(body, status)


def _candidate(isp: Mapping[str, Any]) -> Candidate:
    qos = isp["qos"]
    cheapest = min(isp["plans"], key=lambda plan: plan["monthly_price_minor"], default=None)
    return Candidate(
        isp=isp["id"],
        name=isp["name"],
        latency_ms=qos["latency_ms"],
        jitter_ms=qos["jitter_ms"],
        loss_pct=qos["loss_pct"],
        throughput_mbps=qos["throughput_mbps"],
        price_minor=cheapest["monthly_price_minor"] if cheapest else None,
        currency=cheapest["currency"] if cheapest else None,
    )


def _isp_card(
    isp: Mapping[str, Any],
    history: Mapping[tuple[str, str], list[svg.Point]],
    now: datetime,
    visitor: Visitor | None,
    pick: Recommendation | None,
) -> dict[str, Any]:
    start = (now - SPARK_WINDOW).timestamp()
    end = now.timestamp()
    figures = []
    for figure in QOS_FIGURES:
        label, unit = FIGURE_LABELS[figure]
        value = isp["qos"][figure]
        figures.append(
            {
                "key": figure,
                "label": label,
                "unit": unit,
                "value": None if value is None else format_figure(value),
                "age": isp["qos"]["age_seconds"][figure],
                "spark": svg.sparkline(
                    history.get((isp["id"], figure), []),
                    start=start,
                    end=end,
                    gap=SPARK_GAP_SECONDS,
                    width=300,
                    label=f"{isp['name']} {label} over the last 24 hours, 5-minute means",
                ),
            }
        )
    return {
        "id": isp["id"],
        "name": isp["name"],
        "plans": isp["plans"],
        "figures": figures,
        "current": visitor is not None and visitor.current_isp == isp["id"],
        "recommended": pick is not None and pick.isp == isp["id"],
    }


def _qos_history(
    db: Session, isps: Sequence[str], now: datetime
) -> dict[tuple[str, str], list[svg.Point]]:
    """Each ISP's figures over the last 24 hours: 5-minute means over every router.

    Read from the rollups the probes write (``qos:<isp>:<router>:<figure>``), so a day is at
    most 288 points a series whatever the probe interval.
    """
    if not isps:
        return {}
    rows = db.execute(
        select(Rollup.series, Rollup.bucket, Rollup.count, Rollup.total).where(
            or_(*(Rollup.series.startswith(f"qos:{isp}:", autoescape=True) for isp in isps)),
            Rollup.bucket >= now - SPARK_WINDOW,
        )
    )
    sums: dict[tuple[str, str], dict[datetime, list[float]]] = defaultdict(dict)
    for series, bucket, count, total in rows:
        parts = series.split(":")
        if len(parts) != 4 or parts[3] not in FIGURE_LABELS or count <= 0:
            continue
        slot = sums[(parts[1], parts[3])].setdefault(as_utc(bucket), [0.0, 0.0])
        slot[0] += total
        slot[1] += count
    end = now.timestamp()
    return {
        key: sorted(
            # a bucket's point sits at its middle, or now while the bucket is still filling
            (min(bucket.timestamp() + 150.0, end), total / count)
            for bucket, (total, count) in buckets.items()
        )
        for key, buckets in sums.items()
    }


def visitor_for(link: str | None) -> Visitor | None:
    """Who is visiting: the link's subscriber, else the line of the source address.

    Raises:
        LinkRefused: the link is tampered with, expired, or names no line (403).
    """
    with session_scope(current_app.config["DATABASE_URL"]) as db:
        if link is not None:
            if len(link) > MAX_LINK_LENGTH:
                raise LinkRefused("this portal link is not valid")
            subscriber_id = read_token(
                link,
                max_age=int(current_app.config.get("PORTAL_LINK_MAX_AGE", DEFAULT_TTL)),
                key=current_app.config["SECRET_KEY"],
            )
            subscriber = db.scalars(
                select(Subscriber)
                .where(Subscriber.id == subscriber_id)
                .options(selectinload(Subscriber.lines).selectinload(Line.selection))
            ).first()
            if subscriber is None or not subscriber.lines:
                raise LinkRefused("this portal link names no line any more; ask for a new one")
            return _asvisitor_for(subscriber.lines[0], "link", link)
        line = line_by_source(db, request.remote_addr)
        return None if line is None else _asvisitor_for(line, "line", None)


def _asvisitor_for(line: Line, how: str, link: str | None) -> Visitor:
    return Visitor(
        subscriber=line.subscriber.id,
        name=line.subscriber.name,
        profile=dict(line.subscriber.profile or {}),
        line=line.id,
        router=line.router,
        current_isp=line.selection.isp_id if line.selection is not None else None,
        how=how,
        link=link,
    )


def line_by_source(db: Session, address: str | None) -> Line | None:
    """The line whose prefix holds ``address`` (the longest such prefix), or None.

    Args:
        db: An open session.
        address: The request's source address (``REMOTE_ADDR``), IPv4 or IPv6.
    """
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # a dual-stack socket reports IPv4 clients this way
    shortest = 8 if ip.version == 4 else 32
    # line prefixes are stored canonical (vpop.validate.prefix), so equality finds them
    candidates = [
        str(ipaddress.ip_network(f"{ip}/{length}", strict=False))
        for length in range(ip.max_prefixlen, shortest - 1, -1)
    ]
    lines = db.scalars(
        select(Line)
        .where(Line.prefix.in_(candidates))
        .options(selectinload(Line.subscriber), selectinload(Line.selection))
    ).all()
    if not lines:
        return None
    return max(lines, key=lambda line: (ipaddress.ip_network(line.prefix).prefixlen, -line.id))


def _load_line(db: Session, line_id: int) -> Line:
    line = db.scalars(
        select(Line)
        .where(Line.id == line_id)
        .options(selectinload(Line.subscriber).selectinload(Subscriber.lines))
    ).first()
    if line is None:
        raise NotFound(f"unknown line {line_id}", code="VPOP-404-LINE")
    return line


def remember_order(order_id: int) -> None:
    kept = [o for o in session.get(SESSION_ORDERS, []) if isinstance(o, int) and o != order_id]
    session[SESSION_ORDERS] = [*kept, order_id][-SESSION_ORDERS_KEPT:]


def _order_words(order_id: int) -> tuple[dict[str, Any], dict[str, str]]:
    """The order (if this browser or this line may see it) and its state in plain words.

    Raises:
        NotFound: no such order, or not this visitor's (the same answer: ids are not secret,
            other people's orders are).
    """
    mine = order_id in session.get(SESSION_ORDERS, [])
    with session_scope(current_app.config["DATABASE_URL"]) as db:
        order = db.get(Order, order_id) if order_id <= MAX_ID else None
        if order is not None and not mine:
            line = line_by_source(db, request.remote_addr)
            mine = line is not None and line.id == order.line_id
        if order is None or not mine:
            raise NotFound(
                f"order {order_id} is not one of yours; choose again from the ISP list",
                code="VPOP-404-ORDER",
            )
        view = order_view(order)
        names = {isp: name for isp, name in db.execute(select(Isp.id, Isp.name))}
        line = db.get(Line, order.line_id)
        current = line.selection.isp_id if line is not None and line.selection else None
    return view, consent_words(view, names) or plain_words(view, names, current)


bp.add_app_template_filter(age_filter, "age")
bp.add_app_template_filter(money_filter, "money")
bp.add_app_template_filter(utc_filter, "utc")
bp.add_app_template_global(csrf_token, "csrf_token")
