"""The billing domain's entry: what other packages, the API, CLI, pages and jobs use.

The ledger's names are listed here; payments, settlement and reports each keep their list in
their own ``facade_*`` module, re-exported whole.
"""

from __future__ import annotations

from vpop.billing.errors import (
    AmountTooLarge,
    BankDetailsInvalid,
    BillingError,
    HoldResolved,
    IdempotencyConflict,
    InsufficientFunds,
    LedgerInvalid,
    LedgerKeyConflict,
    PaymentState,
    PeriodInvalid,
    UnknownAccount,
    UnknownHold,
    UnknownPayee,
    UnknownPayment,
    UnknownSettlement,
)
from vpop.billing.facade_payments import *  # noqa: F403
from vpop.billing.facade_payments import __all__ as _payments
from vpop.billing.facade_reports import *  # noqa: F403
from vpop.billing.facade_reports import __all__ as _reports
from vpop.billing.facade_settlement import *  # noqa: F403
from vpop.billing.facade_settlement import __all__ as _settlement
from vpop.billing.ledger import (
    account_code,
    balance,
    check_balances,
    expire_holds,
    hold,
    in_transaction,
    open_account,
    post_hold,
    postings_of,
    transfer,
    unbalanced_entries,
    void_hold,
)
from vpop.billing.models import (
    ACCOUNT_KINDS,
    DEFAULT_FLOORS,
    ENTRY_KINDS,
    FLOORS,
    HOLD_STATUSES,
    MAX_AMOUNT,
    LedgerAccount,
    LedgerEntry,
    LedgerPosting,
)
from vpop.billing.payment_models import (
    DECLINE_REASONS,
    PAYMENT_STATUSES,
    Bill,
    Mandate,
    Payee,
    Payment,
    PaymentEvent,
    Settlement,
    SettlementLine,
)

__all__ = [  # noqa: PLE0604
    "DECLINE_REASONS",
    "PAYMENT_STATUSES",
    "Bill",
    "Mandate",
    "Payee",
    "Payment",
    "PaymentEvent",
    "Settlement",
    "SettlementLine",
    "AmountTooLarge",
    "BankDetailsInvalid",
    "IdempotencyConflict",
    "PaymentState",
    "PeriodInvalid",
    "UnknownPayee",
    "UnknownPayment",
    "UnknownSettlement",
    "ACCOUNT_KINDS",
    "DEFAULT_FLOORS",
    "ENTRY_KINDS",
    "FLOORS",
    "HOLD_STATUSES",
    "MAX_AMOUNT",
    "BillingError",
    "HoldResolved",
    "InsufficientFunds",
    "LedgerAccount",
    "LedgerEntry",
    "LedgerInvalid",
    "LedgerKeyConflict",
    "LedgerPosting",
    "UnknownAccount",
    "UnknownHold",
    "account_code",
    "balance",
    "check_balances",
    "expire_holds",
    "hold",
    "in_transaction",
    "open_account",
    "post_hold",
    "postings_of",
    "transfer",
    "unbalanced_entries",
    "void_hold",
    *_payments,
    *_reports,
    *_settlement,
]
