"""The billing domain's payments names, re-exported by :mod:`vpop.billing.service`."""

from __future__ import annotations

from vpop.billing.allowance import (
    allowance_code,
    ensure_allowance,
    limit_of,
    set_spending_limit,
    spending,
)
from vpop.billing.bank import check_bic, check_iban
from vpop.billing.callbacks import payment_callback_url, send_payment_callback
from vpop.billing.idempotency import check_key, replay_or_run, request_sha256
from vpop.billing.payees import (
    PayeeExists,
    ensure_isp_payee,
    get_payee,
    list_payees,
    payee_for_caller,
    payee_view,
    register_merchant,
    update_payee,
)
from vpop.billing.payment_actions import (
    authorise_in,
    capture_in,
    dispute_in,
    expire_in,
    refund_in,
    void_in,
)
from vpop.billing.payment_models import EVENT_KINDS, BillingRequest, SpendingPeriod
from vpop.billing.payment_views import event_view, payment_view
from vpop.billing.payments import (
    authorise,
    capture,
    dispute,
    events_of,
    expire_payments,
    list_payments,
    payment_for,
    refund,
    void,
)
from vpop.billing.periods import check_period, period_bounds, period_of
from vpop.billing.schemas import (
    PAYER_IDENTIFIERS,
    CaptureBody,
    DisputeBody,
    LimitBody,
    PayeeBody,
    PayeePatch,
    PaymentBody,
    RefundBody,
)
from vpop.billing.signals import payment_changed

__all__: list[str] = [
    "EVENT_KINDS",
    "PAYER_IDENTIFIERS",
    "BillingRequest",
    "CaptureBody",
    "DisputeBody",
    "LimitBody",
    "PayeeBody",
    "PayeeExists",
    "PayeePatch",
    "PaymentBody",
    "RefundBody",
    "SpendingPeriod",
    "allowance_code",
    "authorise",
    "authorise_in",
    "capture",
    "capture_in",
    "check_bic",
    "check_iban",
    "check_key",
    "check_period",
    "dispute",
    "dispute_in",
    "ensure_allowance",
    "ensure_isp_payee",
    "event_view",
    "events_of",
    "expire_in",
    "expire_payments",
    "get_payee",
    "limit_of",
    "list_payees",
    "list_payments",
    "payee_for_caller",
    "payee_view",
    "payment_callback_url",
    "payment_changed",
    "payment_for",
    "payment_view",
    "period_bounds",
    "period_of",
    "refund",
    "refund_in",
    "register_merchant",
    "replay_or_run",
    "request_sha256",
    "send_payment_callback",
    "set_spending_limit",
    "spending",
    "update_payee",
    "void",
    "void_in",
]
