"""The payments API's JSON bodies, strict (unknown keys refused, no coercion).

Every string passes a :mod:`vpop.core.validate` function (or :mod:`vpop.billing.bank` for
bank details) through :class:`~vpop.core.schemas.Canonical`, every integer a
:class:`~vpop.core.schemas.Bounds`, so a bad body is refused with the same codes as the rest
of the API (``VPOP-400-UNKNOWN-FIELD``, ``VPOP-400-MISSING``, ``VPOP-400-TYPE``...).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Self

from pydantic import ConfigDict, model_validator

from vpop.billing.bank import check_bic, check_iban
from vpop.core import validate
from vpop.core.errors import BadInput
from vpop.core.schemas import (
    E164_PATTERN,
    LINE_ID_PATTERN,
    NAME_PATTERN,
    URL_MAX_LENGTH,
    Bounds,
    Canonical,
    Request,
)

#: The fields that name who pays; a payment names exactly one.
PAYER_IDENTIFIERS = ("subscriber", "calling_number", "circuit_id", "access_id", "source_address")
#: JSON numbers are exact up to 2^53: larger amounts would not survive a JavaScript client.
AMOUNT = Bounds(1, 2**53, "minor units of the currency (cents for EUR)")
LIMIT = Bounds(0, 2**62, "the spending limit per month, in minor units")
FEE_BP = Bounds(0, 10000, "the routing centre's fee in basis points (1/100 %) per capture")
FEE_FIXED = Bounds(0, 2**53, "the routing centre's fixed fee per capture, in minor units")
_CURRENCY = re.compile(r"[A-Z]{3}", re.ASCII)
_REFERENCE = re.compile(r"[A-Za-z0-9 _.:/#-]{1,100}", re.ASCII)
ITEM_MAX = 200
REASON_MAX = 500
PAYEE_NAME_MAX = 100


def currency(value: object, field: str) -> str:
    """An ISO 4217 code: three upper-case letters (``EUR``).

    Raises:
        BadInput: anything else.
    """
    if not isinstance(value, str) or not _CURRENCY.fullmatch(value):
        raise BadInput(f"{field}: expected three upper-case letters (ISO 4217), such as EUR")
    return value


def merchant_reference(value: object, field: str) -> str:
    """The merchant's own reference: 1-100 of ``A-Z a-z 0-9``, space and ``_ . : / # -``.

    Raises:
        BadInput: anything else.
    """
    if not isinstance(value, str) or not _REFERENCE.fullmatch(value):
        raise BadInput(f"{field}: use 1-100 characters of A-Z, a-z, 0-9, space and _ . : / # -")
    return value


def _text(limit: int) -> Any:
    def check(value: object, field: str) -> str:
        return validate.text(value, field, limit)

    return check


def _iban(value: object, _field: str) -> str:
    return check_iban(value)  # type: ignore[arg-type]  # check_iban refuses a non-string


def _bic(value: object, _field: str) -> str:
    return check_bic(value)  # type: ignore[arg-type]


Subscriber = Annotated[
    str | None, Canonical(validate.name, pattern=NAME_PATTERN, examples=["sub1"])
]
CallingNumber = Annotated[
    str | None,
    Canonical(validate.e164, pattern=E164_PATTERN, description="E.164, with the leading +"),
]
CircuitId = Annotated[
    str | None,
    Canonical(validate.circuit_id, pattern=LINE_ID_PATTERN, description="option 82 circuit id"),
]
AccessId = Annotated[
    str | None,
    Canonical(validate.access_id, pattern=LINE_ID_PATTERN, description="the access line id"),
]
SourceAddress = Annotated[
    str | None,
    Canonical(
        validate.address,
        description="the address the merchant saw the subscriber's request come from",
        examples=["192.0.2.6"],
    ),
]
Currency = Annotated[str, Canonical(currency, pattern="^[A-Z]{3}$", examples=["EUR"])]
Item = Annotated[str, Canonical(_text(ITEM_MAX), maxLength=ITEM_MAX, description="what is bought")]
Reference = Annotated[
    str,
    Canonical(
        merchant_reference,
        pattern=r"^[A-Za-z0-9 _.:/#-]{1,100}$",
        description="the merchant's own reference (order number)",
    ),
]
Reason = Annotated[str, Canonical(_text(REASON_MAX), maxLength=REASON_MAX)]
PayeeName = Annotated[str, Canonical(_text(PAYEE_NAME_MAX), maxLength=PAYEE_NAME_MAX)]
Iban = Annotated[
    str, Canonical(_iban, description="checked IBAN", examples=["DE89370400440532013000"])
]
Bic = Annotated[str, Canonical(_bic, description="checked BIC", examples=["COBADEFFXXX"])]
CallbackUrl = Annotated[
    str,
    Canonical(
        validate.url,
        format="uri",
        maxLength=URL_MAX_LENGTH,
        description="receives the signed payment callbacks",
    ),
]


class PaymentBody(Request):
    """Authorise a payment: who pays (exactly one identifier), how much, for what.

    ``subscriber`` means the subscriber's first active line; ``source_address`` is the
    address the merchant saw (the line whose prefix holds it, longest prefix first).
    """

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": [name]} for name in PAYER_IDENTIFIERS]}
    )

    subscriber: Subscriber = None
    calling_number: CallingNumber = None
    circuit_id: CircuitId = None
    access_id: AccessId = None
    source_address: SourceAddress = None
    amount_minor: Annotated[int, AMOUNT]
    currency: Currency
    item: Item
    merchant_reference: Reference

    @model_validator(mode="after")
    def _one_payer(self) -> Self:
        """Exactly one identifier names who pays."""
        named = [name for name in PAYER_IDENTIFIERS if getattr(self, name) is not None]
        if len(named) != 1:
            raise BadInput(
                f"name who pays with exactly one of {', '.join(PAYER_IDENTIFIERS)}",
                code="VPOP-400-LINE-ID",
            )
        return self

    def identifier(self) -> tuple[str, str]:
        """``(kind, value)`` of the one identifier given."""
        return next(
            (name, value)
            for name in PAYER_IDENTIFIERS
            if (value := getattr(self, name)) is not None
        )


class CaptureBody(Request):
    """Capture an authorised payment: all of it, or ``amount_minor`` (the rest is released)."""

    amount_minor: Annotated[int, AMOUNT] | None = None


class RefundBody(Request):
    """Refund part or all of what was captured (several refunds, never more in all)."""

    amount_minor: Annotated[int, AMOUNT]
    reason: Reason | None = None


class LimitBody(Request):
    """Set a subscriber's spending limit per month (minor units of the billing currency)."""

    limit_minor: Annotated[int, LIMIT]


class DisputeBody(Request):
    """The subscriber disputes a purchase: why."""

    reason: Reason


class PayeeBody(Request):
    """Register a merchant under an ISP (its id must not be an ISP's)."""

    id: Annotated[str, Canonical(validate.name, pattern=NAME_PATTERN, examples=["shop-b"])]
    isp: Annotated[str, Canonical(validate.name, pattern=NAME_PATTERN, examples=["isp-b"])]
    name: PayeeName
    iban: Iban | None = None
    bic: Bic | None = None
    fee_bp: Annotated[int, FEE_BP] = 0
    fee_fixed_minor: Annotated[int, FEE_FIXED] = 0
    callback_url: CallbackUrl | None = None


class PayeePatch(Request):
    """Change a payee: only the fields given."""

    name: PayeeName | None = None
    iban: Iban | None = None
    bic: Bic | None = None
    fee_bp: Annotated[int, FEE_BP] | None = None
    fee_fixed_minor: Annotated[int, FEE_FIXED] | None = None
    callback_url: CallbackUrl | None = None

    def changes(self) -> dict[str, Any]:
        """The fields given, by name."""
        return {name: value for name, value in self.model_dump().items() if value is not None}
