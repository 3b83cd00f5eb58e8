"""Payees: who is paid. Every ISP is one (created on its first payment, id = the ISP's id);
merchants (web shops reached through an ISP) are registered under an ISP by NOC staff.

A payee's bank details are checked (:mod:`vpop.billing.bank`), its fee is in basis points
plus a fixed amount per capture, and its callback URL receives the signed payment callbacks
(internal destinations refused unless the operator allows them). Registration and changes
are audited.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from vpop.billing.bank import check_bic, check_iban
from vpop.billing.errors import BillingError, UnknownPayee
from vpop.billing.payment_models import Payee
from vpop.billing.schemas import FEE_BP, FEE_FIXED, PAYEE_NAME_MAX
from vpop.catalogue.service import Isp
from vpop.core import validate
from vpop.core.audit import audit
from vpop.core.callbacks import refused_destination
from vpop.core.errors import BadInput, NotFound
from vpop.core.time import iso, utcnow
from vpop.selection.service import Caller, Forbidden


class PayeeExists(BillingError):
    """A payee (a merchant, or an ISP) already has that id."""

    code = "VPOP-409-PAYEE"
    status = 409


def _isp(session: Session, isp_id: str) -> Isp:
    isp = session.get(Isp, isp_id)
    if isp is None:
        raise NotFound(f"unknown ISP {isp_id!r}", code="VPOP-404-ISP")
    return isp


def ensure_isp_payee(session: Session, isp_id: str) -> Payee:
    """The ISP's payee (id and name the ISP's, no fee), created on first use.

    Concurrent first uses create it once (insert-or-nothing, then read).

    Raises:
        NotFound: ``VPOP-404-ISP``, no ISP has that id.
    """
    payee = session.get(Payee, isp_id)
    if payee is not None:
        return payee
    isp = _isp(session, isp_id)
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    now = utcnow()
    session.execute(
        insert(Payee)
        .values(id=isp.id, kind="isp", isp_id=isp.id, name=isp.name[:PAYEE_NAME_MAX],
                fee_bp=0, fee_fixed_minor=0, created_at=now, updated_at=now)
        .on_conflict_do_nothing()
    )  # fmt: skip
    payee = session.get(Payee, isp_id)
    assert payee is not None
    return payee


def _callback(url: str | None) -> str | None:
    if url is None:
        return None
    checked = validate.url(url, "callback_url")
    refused = refused_destination(checked)
    if refused is not None:
        raise BadInput(f"callback_url: {refused}", code="VPOP-400-CALLBACK-URL")
    return checked


def _fields(
    *, name: str | None, iban: str | None, bic: str | None, fee_bp: int | None,
    fee_fixed_minor: int | None, callback_url: str | None,
) -> dict[str, Any]:  # fmt: skip
    """The given fields, checked and canonical (None: not given)."""
    given: dict[str, Any] = {}
    if name is not None:
        given["name"] = validate.text(name, "name", PAYEE_NAME_MAX)
    if iban is not None:
        given["iban"] = check_iban(iban)
    if bic is not None:
        given["bic"] = check_bic(bic)
    if fee_bp is not None:
        given["fee_bp"] = FEE_BP.check(fee_bp, "fee_bp")
    if fee_fixed_minor is not None:
        given["fee_fixed_minor"] = FEE_FIXED.check(fee_fixed_minor, "fee_fixed_minor")
    if callback_url is not None:
        given["callback_url"] = _callback(callback_url)
    return given


def register_merchant(
    session: Session,
    merchant_id: str,
    isp_id: str,
    name: str,
    *,
    iban: str | None = None,
    bic: str | None = None,
    fee_bp: int = 0,
    fee_fixed_minor: int = 0,
    callback_url: str | None = None,
    actor: str,
) -> Payee:
    """Register a merchant reached through ``isp_id``; audited (``payee.register``).

    Raises:
        BadInput: a malformed field, a refused callback destination
            (``VPOP-400-CALLBACK-URL``), an id that is an ISP's (``VPOP-409-PAYEE``).
        BankDetailsInvalid: a bad IBAN or BIC.
        NotFound: ``VPOP-404-ISP``.
        PayeeExists: a payee already has that id.
    """
    merchant_id = validate.name(merchant_id, "id")
    _isp(session, validate.name(isp_id, "isp"))
    fields = _fields(
        name=name, iban=iban, bic=bic, fee_bp=fee_bp, fee_fixed_minor=fee_fixed_minor,
        callback_url=callback_url,
    )  # fmt: skip
    if session.get(Isp, merchant_id) is not None:
        raise PayeeExists(f"{merchant_id!r} is an ISP's id: a merchant needs its own id")
    if session.get(Payee, merchant_id) is not None:
        raise PayeeExists(f"payee {merchant_id!r} is already registered")
    now = utcnow()
    payee = Payee(
        id=merchant_id, kind="merchant", isp_id=isp_id, created_at=now, updated_at=now,
        **{"fee_bp": 0, "fee_fixed_minor": 0, **fields},
    )  # fmt: skip
    session.add(payee)
    session.flush()
    audit(session, actor, "payee.register", f"payee:{merchant_id}", isp=isp_id, **_shown(fields))
    return payee


def _shown(fields: dict[str, Any]) -> dict[str, Any]:
    """Fields as the audit log keeps them (an IBAN only by its last four characters)."""
    shown = dict(fields)
    if shown.get("iban"):
        shown["iban"] = "..." + str(shown["iban"])[-4:]
    return shown


def get_payee(session: Session, payee_id: str) -> Payee:
    """The payee ``payee_id``.

    Raises:
        UnknownPayee: no payee has that id.
    """
    payee = session.get(Payee, payee_id) if isinstance(payee_id, str) else None
    if payee is None:
        raise UnknownPayee(f"unknown payee {str(payee_id)[:40]!r}")
    return payee


def update_payee(
    session: Session,
    payee_id: str,
    *,
    actor: str,
    name: str | None = None,
    iban: str | None = None,
    bic: str | None = None,
    fee_bp: int | None = None,
    fee_fixed_minor: int | None = None,
    callback_url: str | None = None,
) -> Payee:
    """Change the given fields of a payee (None: unchanged); audited (``payee.update``).

    Raises:
        UnknownPayee: no payee has that id.
        BadInput, BankDetailsInvalid: as :func:`register_merchant`.
    """
    payee = get_payee(session, payee_id)
    fields = _fields(
        name=name, iban=iban, bic=bic, fee_bp=fee_bp, fee_fixed_minor=fee_fixed_minor,
        callback_url=callback_url,
    )  # fmt: skip
    for field, value in fields.items():
        setattr(payee, field, value)
    payee.updated_at = utcnow()
    session.flush()
    audit(session, actor, "payee.update", f"payee:{payee.id}", **_shown(fields))
    return payee


def payee_view(payee: Payee) -> dict[str, Any]:
    """A payee as JSON: ``id, kind, isp, name, iban, bic, fee_bp, fee_fixed_minor,
    callback_url, created_at, updated_at``."""
    return {
        "id": payee.id,
        "kind": payee.kind,
        "isp": payee.isp_id,
        "name": payee.name,
        "iban": payee.iban,
        "bic": payee.bic,
        "fee_bp": payee.fee_bp,
        "fee_fixed_minor": payee.fee_fixed_minor,
        "callback_url": payee.callback_url,
        "created_at": iso(payee.created_at),
        "updated_at": iso(payee.updated_at),
    }


def list_payees(session: Session, isp: str | None = None) -> list[Payee]:
    """Every payee, or those of one ISP (the ISP's own and its merchants'), by id."""
    query = select(Payee).order_by(Payee.id)
    if isp is not None:
        query = query.where(Payee.isp_id == isp)
    return list(session.scalars(query))


def payee_for_caller(session: Session, caller: Caller) -> Payee:
    """The payee a token acts for: an ISP token its ISP's, a merchant token its merchant.

    Raises:
        Forbidden: any other role (403).
        UnknownPayee: the merchant is no longer registered.
    """
    if caller.role == "isp" and caller.isp:
        return ensure_isp_payee(session, caller.isp)
    if caller.role == "merchant" and caller.merchant:
        payee = get_payee(session, caller.merchant)
        if payee.kind != "merchant":
            raise Forbidden(f"{caller.name} does not act for a merchant")
        return payee
    raise Forbidden(f"a {caller.role} token does not act for a payee")
