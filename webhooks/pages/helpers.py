"""What the portal and NOC pages share: security headers, error pages, form checks,
template filters, and how a page hands an order to the engine.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from flask import (
    Response,
    current_app,
    make_response,
    render_template,
    request,
    url_for,
)
from sqlalchemy import select
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from vpop.catalogue.service import Isp, Line
from vpop.core.db import session_scope
from vpop.core.errors import BadInput
from vpop.core.time import as_utc
from vpop.selection.service import (
    Order,
    SelectionRequest,
    pending_orders,
)
from webhooks.api.common import MAX_ID
from webhooks.auth import MESSAGE_ID
from webhooks.pages import csrf
from webhooks.problems import Problem

PAGE_BLUEPRINTS = ("portal", "noc")


SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # a portal link carries its token in the URL: never hand it to another site
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


ERROR_TITLES = {
    400: "This form could not be accepted",
    401: "Please sign in",
    403: "Not allowed",
    404: "Not found",
    405: "Not possible here",
    413: "Too much data",
    422: "Please check what you entered",
    500: "Something went wrong on our side",
}


def is_page_request() -> bool:
    """Whether the current request belongs to the HTML pages (so errors are HTML too).

    The portal and NOC blueprints' routes, and paths under them that matched no route (an
    unknown order URL, a wrong method on ``/``); everything else keeps problem+json.
    """
    if request.blueprint in PAGE_BLUEPRINTS:
        return True
    path = request.path
    return path in ("/", "/choose", "/consent", "/noc") or path.startswith(("/noc/", "/orders/"))


def security_headers(response: BaseResponse) -> BaseResponse:
    """Add the pages' security headers (CSP, no framing, no referrer, no caching)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def render_error_page(err: Exception) -> Response:
    """An HTML page for an error on a page route: what happened, what to do, the code.

    Args:
        err: A :class:`~webhooks.problems.Problem`, a :class:`~vpop.errors.VpopError` or a
            Werkzeug ``HTTPException``; anything else is a bare 500.

    Returns:
        The response, with the error's status and headers.
    """
    problem = Problem.from_exception(err)
    if problem.status >= 500 and not isinstance(err, HTTPException):
        current_app.logger.error("%s: %s", problem.code, err, exc_info=err)
    in_noc = request.path == "/noc" or request.path.startswith("/noc/")
    body = render_template(
        "error.html",
        status=problem.status,
        heading=ERROR_TITLES.get(problem.status, problem.title),
        detail=problem.detail,
        code=problem.code,
        back_url="/noc/" if in_noc else url_for("portal.index"),
        back_label="Back to the NOC pages" if in_noc else "Back to the ISP list",
    )
    response = make_response(body, problem.status)
    for key, value in problem.headers.items():
        if key.lower() != "www-authenticate":  # a browser would prompt for a bearer token
            response.headers[key] = value
    security_headers(response)
    return response


def selection_for_line(line: Line, isp: str, *, dry_run: bool = False) -> SelectionRequest:
    """The selection request that names exactly this line.

    A line is named by its circuit id, calling number or access id (whichever it has, in that
    order), else by its subscriber when it is the subscriber's first line.

    Raises:
        BadInput: the line has no identifier and is not its subscriber's first line.
    """
    if line.circuit_id is not None:
        return SelectionRequest(isp=isp, circuit_id=line.circuit_id, dry_run=dry_run)
    if line.calling_number is not None:
        return SelectionRequest(isp=isp, calling_number=line.calling_number, dry_run=dry_run)
    if line.access_id is not None:
        return SelectionRequest(isp=isp, access_id=line.access_id, dry_run=dry_run)
    if line.subscriber.lines and line.subscriber.lines[0].id == line.id:
        return SelectionRequest(isp=isp, subscriber=line.subscriber_id, dry_run=dry_run)
    raise BadInput(
        f"line {line.id} has no circuit id, calling number or access id to name it by",
        code="VPOP-400-LINE-ID",
    )


def new_form_key() -> str:
    """A one-time key for a form: sent twice (a double click), it makes one order."""
    return "form-" + secrets.token_urlsafe(16)  # starts with a letter, as keys must


def form_key(raw: str | None) -> str | None:
    """The form's one-time key, checked like an ``Idempotency-Key`` header.

    Raises:
        BadInput: the key is not 1-200 characters of ``A-Z a-z 0-9 _ . : ~ -``.
    """
    if raw is None or raw == "":
        return None
    if not MESSAGE_ID.fullmatch(raw):
        raise BadInput("the form is damaged (its form key is malformed); reload the page")
    return raw


def single_form_value(name: str) -> str | None:
    """A form field sent at most once; None when absent.

    Raises:
        BadInput: the field is repeated.
    """
    values = request.form.getlist(name)
    if len(values) > 1:
        raise BadInput(f"the form field {name} is repeated", code="VPOP-400-TYPE")
    return values[0] if values else None


def check_form_fields(allowed: Sequence[str]) -> None:
    """Refuse fields the form does not have (a tampered form, not a typo to guess at).

    Raises:
        BadInput: an unknown field.
    """
    for name in request.form:
        if name not in allowed:
            raise BadInput(
                f"the form has no field {name[:40]!r}; reload the page",
                code="VPOP-400-UNKNOWN-FIELD",
            )


def age_filter(seconds: float | None) -> str:
    """``4 s ago``, ``3 min ago``, ``2 h ago``; ``not measured`` for None."""
    if seconds is None:
        return "not measured"
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.0f} h ago"


def money_filter(minor: int, currency: str) -> str:
    """``45.00 EUR`` from integer minor units."""
    return f"{minor / 100:.2f} {currency}"


def utc_filter(value: datetime | str | None) -> str:
    """``2025-06-01 12:00:03 UTC`` from a datetime or an ISO 8601 string; ``-`` for None."""
    if value is None:
        return "-"
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    return as_utc(when).strftime("%Y-%m-%d %H:%M:%S UTC")


def csrf_token() -> str:
    """The session's CSRF token, for the hidden field of every form."""
    return csrf.token()


def requests_for(ids: Sequence[int], *, by_order: bool = False) -> list[dict[str, Any]]:
    """The pending requests of these lines (or these orders), in words for the pages."""
    url = current_app.config["DATABASE_URL"]
    if by_order:
        with session_scope(url) as db:
            found = db.get(Order, ids[0]) if ids[0] <= MAX_ID else None
            line_ids = [found.line_id] if found is not None else []
        orders = [o for o in pending_orders(line_ids, url) if o.id in ids] if line_ids else []
    else:
        orders = pending_orders(list(ids), url)
    if not orders:
        return []
    with session_scope(url) as db:
        names = {isp: name for isp, name in db.execute(select(Isp.id, Isp.name))}
    return [
        {
            "order": order.id,
            "isp": order.isp_id,
            "isp_name": names.get(order.isp_id, order.isp_id),
            "expires_at": order.consent_expires_at,
            "dry_run": order.dry_run,
        }
        for order in orders
    ]
