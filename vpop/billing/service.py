"""The billing domain's entry: what other packages, the API, CLI, pages and jobs use."""

from __future__ import annotations

from vpop.billing.errors import (
    BillingError,
    HoldResolved,
    InsufficientFunds,
    LedgerInvalid,
    LedgerKeyConflict,
    UnknownAccount,
    UnknownHold,
)
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

__all__ = [
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
]
