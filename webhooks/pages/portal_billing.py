"""The subscriber's bill on the portal (``/bill``): the running bill of this month (plan
charges, purchases, refunds, total), the spending limit used and available, and the
purchases, each captured one with a form to dispute it.

The page is the subscriber's own: it needs the line (the browser's source address) or the
signed portal link, like choosing an ISP (:func:`webhooks.pages.portal.visitor_for`). A
dispute is a plain form with the CSRF token, posted to ``/bill/disputes``; it marks the
purchase disputed (:func:`vpop.billing.service.dispute`, which records a ``disputed`` event
that the payee is told about) and the page then shows "disputed" beside it.

Importing this module registers its routes on the portal blueprint.
"""

from __future__ import annotations

from typing import Any

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
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response as BaseResponse

from vpop.billing import service as billing
from vpop.billing.service import Payee, PaymentState, UnknownPayment
from vpop.catalogue.service import Isp
from vpop.core.db import session_scope
from vpop.core.errors import BadInput
from vpop.core.signals import emit
from webhooks.pages import csrf
from webhooks.pages.helpers import check_form_fields, single_form_value
from webhooks.pages.portal import Visitor, bp, visitor_for
from webhooks.problems import Problem

#: The most purchases the page lists, newest first.
PURCHASES_SHOWN = 100

#: The longest dispute reason (the API's).
REASON_MAX = 500

DISPUTE_FIELDS = ("csrf_token", "payment", "reason", "link")


@bp.get("/bill")
def bill() -> Response:
    """The visitor's running bill, spending limit and purchases (with dispute forms)."""
    link = _single_arg("link")
    visitor = _known_visitor(link)
    return _render_bill(visitor)


@bp.post("/bill/disputes")
def dispute() -> BaseResponse:
    """Dispute one of the visitor's captured purchases; then show the bill again."""
    csrf.protect()
    check_form_fields(DISPUTE_FIELDS)
    visitor = _known_visitor(single_form_value("link") or None)
    try:
        raw_payment = (single_form_value("payment") or "").strip()
        if not raw_payment.isascii() or not raw_payment.isdigit() or len(raw_payment) > 12:
            raise BadInput("the form is damaged (its purchase is missing); reload the page")
        reason = (single_form_value("reason") or "").strip()
        if not reason:
            raise BadInput("say in a few words what is wrong with this purchase")
        body = billing.DisputeBody.parse({"reason": reason})
        change = billing.in_transaction(
            current_app.config["DATABASE_URL"],
            _dispute,
            visitor.subscriber,
            int(raw_payment),
            body.reason,
        )
    except (BadInput, PaymentState, UnknownPayment) as err:
        return _render_bill(visitor, error=err.message, status=err.status)
    emit(billing.payment_changed, change)  # committed: the payee's callback may go
    flash(f"Purchase {raw_payment} is disputed: your provider and the routing centre are told.")
    args: dict[str, Any] = {"link": visitor.link} if visitor.link else {}
    return redirect(url_for("portal.bill", **args), code=303)


def _dispute(db: Session, subscriber: str, payment_id: int, reason: str) -> tuple[int, int]:
    """Record the dispute; the payment's id and its ``disputed`` event's (for the signal)."""
    payment = billing.dispute(db, subscriber, payment_id, reason)
    return payment.id, billing.events_of(db, payment.id)[-1].id


def _known_visitor(link: str | None) -> Visitor:
    visitor = visitor_for(link)
    if visitor is None:
        raise Problem(
            403,
            "VPOP-403",
            "to see your bill, open this page from your own line, or use the link your ISP "
            "or support sent you",
        )
    return visitor


def _render_bill(visitor: Visitor, *, error: str | None = None, status: int = 200) -> Response:
    with session_scope(current_app.config["DATABASE_URL"]) as db:
        running = billing.running_bill(db, visitor.subscriber)
        spending = billing.spending(db, visitor.subscriber)
        purchases = [
            billing.payment_view(payment)
            for payment in billing.list_payments(
                db, subscriber=visitor.subscriber, limit=PURCHASES_SHOWN
            )
        ]
        payees = {p: name for p, name in db.execute(select(Payee.id, Payee.name))}
        isps = {isp: name for isp, name in db.execute(select(Isp.id, Isp.name))}
    body = render_template(
        "portal/bill.html",
        visitor=visitor,
        bill=running,
        spending=spending,
        purchases=purchases,
        payees=payees,
        isps=isps,
        error=error,
        reason_max=REASON_MAX,
    )
    return make_response(body, status)


def _single_arg(name: str) -> str | None:
    values = request.args.getlist(name)
    if len(values) > 1:
        raise BadInput(f"{name} is given more than once", code="VPOP-400-TYPE")
    return values[0] if values and values[0] != "" else None


def purchase_words(payment: dict[str, Any]) -> str:
    """A purchase's state in words a subscriber reads."""
    if payment["disputed_at"]:
        return "disputed"
    words: dict[str, str] = {
        "AUTHORISED": "waiting for delivery (amount reserved)",
        "DECLINED": "declined",
        "CAPTURED": "paid",
        "VOIDED": "cancelled",
        "EXPIRED": "cancelled (not delivered in time)",
        "REFUNDED": "refunded",
    }
    status = str(payment["status"])
    return words.get(status, status.lower())


bp.add_app_template_filter(purchase_words, "purchase_words")
