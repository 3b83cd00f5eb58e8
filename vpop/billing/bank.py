"""Bank details as the payout files need them: IBAN and BIC checked with schwifty.

Both come back in their one canonical form: compact (no spaces) and upper case, so that the
same account is stored and compared as the same text.
"""

from __future__ import annotations

from schwifty import BIC, IBAN
from schwifty.exceptions import SchwiftyException

from vpop.billing.errors import BankDetailsInvalid

_MAX_RAW = 64


def _raw(value: object, what: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_RAW or not value.isascii():
        raise BankDetailsInvalid(f"{what}: expected up to {_MAX_RAW} ASCII characters")
    return value


def check_iban(raw: str) -> str:
    """The IBAN ``raw`` names, compact and upper case (``DE89370400440532013000``).

    Spaces between groups are accepted (``DE89 3704 0044 0532 0130 00``), as printed.

    Raises:
        BankDetailsInvalid: wrong length, country, or check digits.
    """
    text = _raw(raw, "iban")
    try:
        return str(IBAN(text).compact)
    except (SchwiftyException, ValueError) as err:
        raise BankDetailsInvalid(f"iban: {text!r} is not a valid IBAN: {err}") from err


def check_bic(raw: str) -> str:
    """The BIC ``raw`` names, compact and upper case (8 or 11 characters).

    Raises:
        BankDetailsInvalid: wrong length, characters or country code.
    """
    text = _raw(raw, "bic")
    try:
        return str(BIC(text).compact)
    except (SchwiftyException, ValueError) as err:
        raise BankDetailsInvalid(f"bic: {text!r} is not a valid BIC: {err}") from err
