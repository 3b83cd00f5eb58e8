"""The selection domain's entry point: what other domains, the API, the CLI, pages and jobs use.

Everything outside this package imports from here (import-linter holds it), so the
modules behind it can change shape without touching their callers.
"""

from __future__ import annotations

from vpop.selection import schemas
from vpop.selection.callbacks import (
    losing_isp_callback_url,
    send_losing_isp_callback,
    send_order_callback,
)
from vpop.selection.consent import (
    CONSENT_PATH,
    CONSENT_TTL,
    ConsentClosed,
    ConsentRefused,
    answer_consent,
    consent_url,
    expire_consents,
    pending_orders,
    read_consent_token,
)
from vpop.selection.diffs import line_diff, line_names
from vpop.selection.engine import has_waiting, process_router, reconcile
from vpop.selection.locking import router_lock
from vpop.selection.models import FINAL_STATUSES, IdempotencyRecord, Order, OrderStatus, Run
from vpop.selection.orders import (
    Caller,
    Forbidden,
    IdempotencyConflict,
    SelectionRequest,
    order_view,
    read_order,
    request_reconcile,
    submit_selection,
)
from vpop.selection.portal_links import DEFAULT_TTL, LinkRefused, make_token, read_token
from vpop.selection.recommend import Candidate, Recommendation, format_figure, recommend
from vpop.selection.recovery import recover_abandoned
from vpop.selection.schemas import LINE_IDENTIFIERS, SelectionBody
from vpop.selection.signals import (
    order_accepted,
    order_finished,
    reconcile_needed,
    reconcile_requested,
)

__all__ = [
    "CONSENT_PATH",
    "CONSENT_TTL",
    "ConsentClosed",
    "ConsentRefused",
    "answer_consent",
    "consent_url",
    "expire_consents",
    "line_diff",
    "line_names",
    "pending_orders",
    "read_consent_token",
    "send_losing_isp_callback",
    "losing_isp_callback_url",
    "order_accepted",
    "order_finished",
    "reconcile_needed",
    "reconcile_requested",
    "request_reconcile",
    "has_waiting",
    "process_router",
    "reconcile",
    "recover_abandoned",
    "router_lock",
    "Caller",
    "Candidate",
    "DEFAULT_TTL",
    "FINAL_STATUSES",
    "Forbidden",
    "IdempotencyConflict",
    "IdempotencyRecord",
    "LINE_IDENTIFIERS",
    "LinkRefused",
    "Order",
    "OrderStatus",
    "Recommendation",
    "Run",
    "SelectionBody",
    "SelectionRequest",
    "format_figure",
    "make_token",
    "order_view",
    "read_order",
    "read_token",
    "recommend",
    "schemas",
    "send_order_callback",
    "submit_selection",
]
