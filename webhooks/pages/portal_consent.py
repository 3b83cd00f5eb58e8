"""The portal's answer to an ISP's request: the page a consent link opens (``/consent``) and
the Confirm / Decline form (the subscriber's own page posts to the same route).

Importing this module registers its routes on the portal blueprint.
"""

from __future__ import annotations

from flask import Response, current_app, make_response, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from vpop.core.errors import BadInput, NotFound
from vpop.selection.service import ConsentClosed, LinkRefused, answer_consent, read_consent_token
from webhooks.pages import csrf
from webhooks.pages.helpers import check_form_fields, requests_for, single_form_value
from webhooks.pages.portal import (
    ANSWERS,
    CONSENT_FIELDS,
    MAX_LINK_LENGTH,
    bp,
    remember_order,
    visitor_for,
)
from webhooks.problems import Problem


@bp.get("/consent")
def consent_page() -> Response:
    """The page a consent link opens: one ISP's request, with Confirm and Decline."""
    token = request.args.get("c") or ""
    if len(token) > MAX_LINK_LENGTH:
        raise LinkRefused("this consent link is not valid")
    order_id = read_consent_token(token, key=current_app.config["SECRET_KEY"])
    requests = requests_for([order_id], by_order=True)
    if not requests:
        raise NotFound("this request no longer exists", code="VPOP-404-ORDER")
    return make_response(render_template("portal/consent.html", pending=requests[0], link=token))


@bp.post("/consent")
def consent() -> BaseResponse:
    """Confirm or decline an ISP's request, by consent link or as the recognised subscriber;
    then show the order's page."""
    csrf.protect()
    check_form_fields(CONSENT_FIELDS)
    answer = single_form_value("answer")
    if answer not in ANSWERS:
        raise BadInput("answer confirm or decline", code="VPOP-400-MISSING")
    raw_order = single_form_value("order") or ""
    token = single_form_value("c")
    if token:
        if len(token) > MAX_LINK_LENGTH:
            raise LinkRefused("this consent link is not valid")
        order_id = read_consent_token(token, key=current_app.config["SECRET_KEY"])
        if raw_order and raw_order != str(order_id):
            raise BadInput("the form is damaged (its order does not match the link)")
        who = f"consent-link:{order_id}"
        line_ids: list[int] | None = None
    else:
        visitor = visitor_for(single_form_value("link") or None)
        if visitor is None:
            raise Problem(
                403,
                "VPOP-403",
                "to answer a request, open this page from your own line, or use the link "
                "your ISP or support sent you",
            )
        if not raw_order.isascii() or not raw_order.isdigit() or len(raw_order) > 18:
            raise BadInput("the form is damaged (its order is not a number); reload the page")
        order_id = int(raw_order)
        who = f"portal:{visitor.subscriber}"
        line_ids = [visitor.line]
    try:
        order = answer_consent(
            order_id,
            confirm=answer == "confirm",
            actor=who,
            line_ids=line_ids,
            url=current_app.config["DATABASE_URL"],
        )
    except ConsentClosed:
        pass  # a second click, or too late: the order's page says how it ended
    else:
        order_id = order.id
    remember_order(order_id)
    return redirect(url_for("portal.order_page", order_id=order_id), code=303)
