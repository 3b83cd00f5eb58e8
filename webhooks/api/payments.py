"""The payments side of the JSON API: payments, spending limits, running bills and payees.

A payee's token (an ``isp`` token for its ISP, a ``merchant`` token for its merchant) asks
the routing centre to authorise a payment (``POST /payments``: AUTHORISED, a hold on the
subscriber's spending limit, or DECLINED with a reason), then captures, voids or refunds it.
Every payment POST needs an ``Idempotency-Key`` (400 ``VPOP-400-IDEMPOTENCY-KEY`` without
one): the key names the business action, its first answer is stored with the change in one
transaction (:mod:`vpop.billing.idempotency`) and a replay answers it again with
``Idempotent-Replayed: true``; the same key with another body is 422 ``VPOP-409-IDEMPOTENCY``.

Who reads what (docs/tenancy.md): operators (admin, noc) read every payment; an ISP token
its ISP's (its own and its merchants'); a merchant token its merchant's; another's payment is
"not there" (404, as an unknown id). Captures, voids and refunds are for the payment's own
payee only (anyone else: 404). Merchant tokens may call the ``/payments`` routes and read
their own payee; every other route refuses them (403 ``VPOP-403-MERCHANT``). Spending limits
and bills are for operators; payees are registered and changed by admins.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from flask import current_app, request, url_for
from pydantic import Field
from sqlalchemy.orm import Session

from vpop.billing import service as billing
from vpop.billing.service import (
    PAYMENT_STATUSES,
    CaptureBody,
    LimitBody,
    PayeeBody,
    PayeePatch,
    PaymentBody,
    RefundBody,
)
from vpop.catalogue.service import Subscriber
from vpop.core import validate
from vpop.core.db import session_scope
from vpop.core.errors import BadInput, NotFound
from vpop.core.schemas import Currency, Strict, short
from vpop.selection.service import Caller, Forbidden
from webhooks.api.common import (
    MAX_ID,
    OPERATORS,
    bp,
    json_object,
    limit_arg,
    query_args,
    window_args,
)
from webhooks.api.common import idempotency_key as optional_key
from webhooks.auth import authenticate
from webhooks.problems import Problem

PAYMENTS_DEFAULT_LIMIT = 100

PAYMENTS_MAX_LIMIT = 1000

#: The roles that request payments: a payee's own tokens.
PAYERS = ("isp", "merchant")

#: What the API document says of the Idempotency-Key of a payment POST.
KEY_TEXT = (
    "required: names this action; a retry with the same key and body is answered as the first "
    "time was, with `Idempotent-Replayed: true` (another body: 422)"
)

#: What the API document says of who captures, voids and refunds.
ACTIONS_TEXT = (
    "Only the payment's own payee: an ISP token for its ISP's payments, a merchant token for "
    "its merchant's; for anyone else the payment is 404, as an unknown id is. "
)

#: An HTTP answer: body, status, headers.
Answer = tuple[dict[str, Any], int, dict[str, str]]


# --- the response bodies (the views build plain dicts; the API's tests hold every response
# --- against these models' JSON schemas in the OpenAPI document)

PaymentStatus = Literal["AUTHORISED", "DECLINED", "CAPTURED", "VOIDED", "EXPIRED", "REFUNDED"]
DeclineReason = Literal["unknown_line", "limit", "suspended", "currency"]
EventKind = Literal[
    "authorised", "declined", "captured", "released", "voided", "expired", "refunded", "disputed"
]


class PaymentEventModel(Strict):
    """One change of a payment, in its history."""

    kind: EventKind
    amount_minor: Annotated[int, Field(description="what the event moved (0 for none)")]
    at: datetime
    actor: str
    note: str


class PaymentModel(Strict):
    """A payment and where it stands, with its history."""

    id: int
    status: PaymentStatus
    decline_reason: Annotated[DeclineReason | None, Field(description="DECLINED only")]
    payee: str
    isp: Annotated[str, Field(description="the ISP the payee is reached through")]
    subscriber: Annotated[str | None, Field(description="who pays (None: unknown line)")]
    identified_by: Annotated[str | None, Field(description="the identifier that named them")]
    amount_minor: Annotated[int, Field(description="authorised (held) amount, minor units")]
    captured_minor: int
    refunded_minor: int
    currency: Currency
    item: str
    merchant_reference: str
    created_at: datetime
    expires_at: Annotated[datetime | None, Field(description="the hold's expiry")]
    disputed_at: datetime | None
    dispute_reason: str | None
    events: Annotated[
        list[PaymentEventModel],
        Field(description="its history, oldest first (empty in lists)"),
    ]


class PaymentList(Strict):
    """Payments, newest first."""

    payments: list[PaymentModel]


class SpendingModel(Strict):
    """A subscriber's spending limit this period: held, spent and still available."""

    subscriber: str
    period: Annotated[str, Field(description="YYYY-MM (UTC)")]
    currency: Currency
    limit_minor: int
    held_minor: Annotated[int, Field(description="authorised, not yet captured")]
    spent_minor: Annotated[int, Field(description="captured, less refunds")]
    available_minor: int


class PayeeModel(Strict):
    """Who is paid: an ISP or a merchant registered under one, its bank details and fees."""

    id: str
    kind: Literal["isp", "merchant"]
    isp: str
    name: str
    iban: str | None
    bic: str | None
    fee_bp: Annotated[int, Field(description="basis points of each captured payment")]
    fee_fixed_minor: Annotated[int, Field(description="per captured payment, minor units")]
    callback_url: str | None
    created_at: datetime
    updated_at: datetime


class PayeeList(Strict):
    """Payees, by id."""

    payees: list[PayeeModel]


@bp.post("/payments")
def create_payment() -> Answer:
    """Authorise a payment: 201 AUTHORISED (the amount is held) or DECLINED with a reason."""
    caller = authenticate(allow_webhook=False, merchant_ok=True).caller
    if caller.role not in PAYERS:
        raise Forbidden(
            "payments are requested by the payee's own tokens (roles isp, merchant); "
            "operators read them"
        )
    key = required_key()
    body = PaymentBody.parse(json_object())
    url = current_app.config["DATABASE_URL"]
    return _answer(*billing.authorise_in(url, caller, body, key=key))


@bp.get("/payments")
def list_payments() -> dict[str, Any]:
    """Payments, newest first: every payee's for operators, the caller's own otherwise."""
    caller = authenticate(allow_webhook=False, merchant_ok=True).caller
    args = query_args(("payee", "subscriber", "status", "since", "until", "limit"))
    payee = validate.name(args["payee"], "payee") if "payee" in args else None
    isp: str | None = None
    if caller.role == "merchant":
        if payee is not None and payee != caller.merchant:
            raise Forbidden(f"a merchant token lists only its own payments, not {payee!r}'s")
        payee = caller.merchant
    elif caller.role == "isp":
        isp = caller.isp
    elif caller.role not in OPERATORS:
        raise Forbidden("payments are read by NOC staff, admins and the payee's own tokens")
    since, until = window_args(args)
    status = args.get("status")
    with session_scope(current_app.config["DATABASE_URL"]) as session:
        found = billing.list_payments(
            session,
            isp=isp,
            payee=payee,
            subscriber=validate.name(args["subscriber"], "subscriber")
            if "subscriber" in args
            else None,
            status=None if status is None else validate.one_of(status, "status", PAYMENT_STATUSES),
            since=since,
            until=until,
            limit=limit_arg(args.get("limit"), PAYMENTS_DEFAULT_LIMIT, PAYMENTS_MAX_LIMIT),
        )
        return {"payments": [billing.payment_view(payment) for payment in found]}


@bp.get("/payments/<int:payment_id>")
def get_payment(payment_id: int) -> dict[str, Any]:
    """One payment with its history (its events, oldest first)."""
    caller = authenticate(allow_webhook=False, merchant_ok=True).caller
    _check_id(payment_id)
    with session_scope(current_app.config["DATABASE_URL"]) as session:
        payment = billing.payment_for(session, caller, payment_id)
        result: dict[str, Any] = billing.payment_view(
            payment, billing.events_of(session, payment.id)
        )
        return result


@bp.post("/payments/<int:payment_id>/capture")
def capture_payment(payment_id: int) -> Answer:
    """Capture an authorised payment (all of it, or ``amount_minor``; the rest is released)."""
    caller = authenticate(allow_webhook=False, merchant_ok=True).caller
    key = required_key()
    body = CaptureBody.parse(_optional_body())
    _check_id(payment_id)
    url = current_app.config["DATABASE_URL"]
    return _answer(*billing.capture_in(url, caller, payment_id, body, key=key))


@bp.post("/payments/<int:payment_id>/void")
def void_payment(payment_id: int) -> Answer:
    """Void an authorised payment: its whole hold is released."""
    caller = authenticate(allow_webhook=False, merchant_ok=True).caller
    key = required_key()
    _no_fields(_optional_body())
    _check_id(payment_id)
    url = current_app.config["DATABASE_URL"]
    return _answer(*billing.void_in(url, caller, payment_id, key=key))


@bp.post("/payments/<int:payment_id>/refunds")
def refund_payment(payment_id: int) -> Answer:
    """Refund (part of) a captured payment; refunds never add up to more than was captured."""
    caller = authenticate(allow_webhook=False, merchant_ok=True).caller
    key = required_key()
    body = RefundBody.parse(json_object())
    _check_id(payment_id)
    url = current_app.config["DATABASE_URL"]
    return _answer(*billing.refund_in(url, caller, payment_id, body, key=key))


@bp.get("/subscribers/<subscriber_id>/spending-limit")
def get_spending_limit(subscriber_id: str) -> dict[str, Any]:
    """A subscriber's spending limit this period: held, spent and still available."""
    operators_only_for("spending limits", authenticate(allow_webhook=False).caller)
    subscriber = validate.name(subscriber_id, "subscriber")
    with session_scope(current_app.config["DATABASE_URL"]) as session:
        return billing.spending(session, subscriber)


@bp.put("/subscribers/<subscriber_id>/spending-limit")
def set_spending_limit(subscriber_id: str) -> dict[str, Any]:
    """Change a subscriber's spending limit (audited); the current period is granted again."""
    caller = authenticate(allow_webhook=False).caller
    operators_only_for("spending limits", caller)
    subscriber = validate.name(subscriber_id, "subscriber")
    body = LimitBody.parse(json_object())

    return billing.in_transaction(
        current_app.config["DATABASE_URL"],
        lambda session: billing.set_spending_limit(
            session, subscriber, body.limit_minor, actor=caller.name
        ),
    )


@bp.get("/subscribers/<subscriber_id>/bill")
def get_bill(subscriber_id: str) -> dict[str, Any]:
    """A subscriber's running bill for a period (default: this month)."""
    operators_only_for("bills", authenticate(allow_webhook=False).caller)
    subscriber = validate.name(subscriber_id, "subscriber")
    args = query_args(("period",))
    with session_scope(current_app.config["DATABASE_URL"]) as session:
        _known_subscriber(session, subscriber)
        bill: dict[str, Any] = billing.running_bill(session, subscriber, period=args.get("period"))
        return bill


@bp.get("/payees")
def list_payees() -> dict[str, Any]:
    """Payees: every one for operators; its ISP's own and its merchants for an ISP token; its
    own for a merchant token."""
    caller = authenticate(allow_webhook=False, merchant_ok=True).caller
    args = query_args(("isp",))
    isp = validate.name(args["isp"], "isp") if "isp" in args else None
    if caller.role == "isp":
        if isp is not None and isp != caller.isp:
            raise Forbidden(f"an ISP token lists only its own ISP's payees, not {isp!r}")
        isp = caller.isp
    elif caller.role not in (*OPERATORS, "merchant"):
        raise Forbidden("payees are read by NOC staff, admins and the payees' own tokens")
    with session_scope(current_app.config["DATABASE_URL"]) as session:
        payees = billing.list_payees(session, isp=isp)
        if caller.role == "merchant":
            payees = [payee for payee in payees if payee.id == caller.merchant]
        return {"payees": [billing.payee_view(payee) for payee in payees]}


@bp.post("/payees")
def create_payee() -> Answer:
    """Register a merchant under an ISP (admins); its token is then ``vpop token create``."""
    caller = authenticate(allow_webhook=False).caller
    _admins_only(caller)
    body = PayeeBody.parse(json_object())

    def register(session: Session) -> dict[str, Any]:
        fields = body.model_dump()
        payee = billing.register_merchant(
            session, fields.pop("id"), fields.pop("isp"), fields.pop("name"),
            actor=caller.name, **fields,
        )  # fmt: skip
        view: dict[str, Any] = billing.payee_view(payee)
        return view

    view = billing.in_transaction(current_app.config["DATABASE_URL"], register)
    return view, 201, {"Location": url_for("api.list_payees", isp=view["isp"])}


@bp.patch("/payees/<payee_id>")
def change_payee(payee_id: str) -> dict[str, Any]:
    """Change a payee's name, bank details, fees or callback URL (admins; audited)."""
    caller = authenticate(allow_webhook=False).caller
    _admins_only(caller)
    name = validate.name(payee_id, "payee")
    body = PayeePatch.parse(json_object())
    changes = body.changes()
    if not changes:
        raise BadInput("nothing to change: name at least one field", code="VPOP-400-MISSING")

    def change(session: Session) -> dict[str, Any]:
        view: dict[str, Any] = billing.payee_view(
            billing.update_payee(session, name, actor=caller.name, **changes)
        )
        return view

    return billing.in_transaction(current_app.config["DATABASE_URL"], change)


def required_key() -> str:
    """The request's ``Idempotency-Key``: every payment POST needs one.

    Raises:
        Problem: 400 ``VPOP-400-IDEMPOTENCY-KEY`` when it is missing, repeated or malformed.
    """
    key = optional_key()
    if key is None:
        raise Problem(
            400,
            "VPOP-400-IDEMPOTENCY-KEY",
            "send an Idempotency-Key header naming this action (e.g. a UUID): a retry with the "
            "same key is answered once, never done twice",
        )
    return key


def operators_only_for(what: str, caller: Caller) -> None:
    """``what`` is for NOC staff and admins only (403 for any other token)."""
    if caller.role not in OPERATORS:
        raise Forbidden(f"{what} are for NOC staff and admins (token roles noc, admin)")


def _admins_only(caller: Caller) -> None:
    if caller.role != "admin":
        raise Forbidden("payees are registered and changed by admins (token role admin)")


def _answer(status: int, body: dict[str, Any], replayed: bool) -> Answer:
    headers = {"Location": url_for("api.get_payment", payment_id=body["id"])}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return body, status, headers


def _optional_body() -> dict[str, Any]:
    """The JSON object of a body that may be left out (then ``{}``)."""
    return json_object() if request.get_data(cache=True).strip() else {}


def _no_fields(body: dict[str, Any]) -> None:
    if body:
        raise BadInput(
            f"unknown field {short(next(iter(body)))}; this endpoint takes no fields",
            code="VPOP-400-UNKNOWN-FIELD",
        )


def _check_id(payment_id: int) -> None:
    if payment_id > MAX_ID:
        raise billing.UnknownPayment(f"no payment {payment_id!r}")


def _known_subscriber(session: Session, subscriber: str) -> None:
    if session.get(Subscriber, subscriber) is None:
        raise NotFound(f"unknown subscriber {subscriber!r}", code="VPOP-404-SUBSCRIBER")
