"""The billing domain's errors: one base class, one subclass per way the ledger refuses.

Each carries a stable code that ``docs/errors.md`` explains. A refused ledger call writes
nothing: the caller's transaction holds no part of the entry.
"""

from __future__ import annotations

from vpop.core.errors import BadInput, NotFound, VpopError


class BillingError(VpopError):
    """Base class of the billing domain's refusals."""

    code = "VPOP-BILLING"
    status = 409


class LedgerInvalid(BillingError, BadInput):
    """An entry is empty, unbalanced, mixes currencies, or has a zero or oversized amount."""

    code = "VPOP-400-LEDGER"
    status = 422


class LedgerKeyConflict(BillingError):
    """An idempotency key (or an account code) was already used with other content."""

    code = "VPOP-409-LEDGER-KEY"
    status = 409


class InsufficientFunds(BillingError):
    """The entry would take an account beyond its floor."""

    code = "VPOP-422-FUNDS"
    status = 422


class HoldResolved(BillingError):
    """The hold was already posted, voided or expired (or is past its expiry)."""

    code = "VPOP-409-HOLD"
    status = 409


class UnknownAccount(BillingError, NotFound):
    """No ledger account has that code."""

    code = "VPOP-404-ACCOUNT"
    status = 404


class UnknownHold(BillingError, NotFound):
    """No hold has that key."""

    code = "VPOP-404-HOLD"
    status = 404


class UnknownPayment(BillingError, NotFound):
    """No payment has that id, or not one the caller may see (the same answer)."""

    code = "VPOP-404-PAYMENT"
    status = 404


class UnknownSettlement(BillingError, NotFound):
    """No settlement has that id, or not one the caller may see (the same answer)."""

    code = "VPOP-404-SETTLEMENT"
    status = 404


class UnknownPayee(BillingError, NotFound):
    """No payee (ISP or merchant) has that id."""

    code = "VPOP-404-PAYEE"
    status = 404


class PaymentState(BillingError):
    """The payment is not in a state that allows this (capturing a voided payment...)."""

    code = "VPOP-409-PAYMENT-STATE"
    status = 409


class AmountTooLarge(BillingError, BadInput):
    """A capture above the authorised amount, or refunds above what was captured."""

    code = "VPOP-422-AMOUNT"
    status = 422


class IdempotencyConflict(BillingError):
    """The caller used this idempotency key before for another request."""

    code = "VPOP-409-IDEMPOTENCY"
    status = 422


class PeriodInvalid(BillingError, BadInput):
    """A period that is not YYYY-MM, or one that has not started yet."""

    code = "VPOP-400-PERIOD"
    status = 422


class BankDetailsInvalid(BillingError, BadInput):
    """An IBAN or BIC that does not check out (schwifty), or a payee without one."""

    code = "VPOP-422-BANK"
    status = 422
