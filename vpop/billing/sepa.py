"""SEPA files: payouts to payees (pain.001.001.03) and direct debits of bills (pain.008.001.02).

Both are written with ``sepaxml`` and validated against the XSD it ships (with ``xmlschema``)
before they are returned; both are EUR only (SEPA's currency): settlements and bills in
another currency are paid or collected some other way. The files are deterministic: the
message id, the payment-information ids and the creation time come from the period and the
``now`` argument, never from a clock or a random number.

- ``payout_file``: one credit transfer per payee, the sum of the payouts of its EUR
  settlements of the period, from the routing centre's account (settings ``sepa_name``,
  ``sepa_iban``, ``sepa_bic``). A payee without a valid IBAN stops the file (every such payee
  is named).
- ``collection_file``: one direct debit per closed EUR bill with a positive total whose
  subscriber has a mandate that is not revoked (``FRST`` for the mandate's first collection,
  ``RCUR`` after); creditor id from ``sepa_creditor_id``. Each debit books ``collect:{bill}``
  (bank +total, clearing -total) once. Bills left out are listed by :func:`uncollected_bills`.
"""

from __future__ import annotations

import hashlib
import re
from datetime import date, datetime
from typing import Any

from sepaxml import SepaDD, SepaTransfer
from sepaxml.validation import ValidationError
from sqlalchemy import String, cast, func, literal, select
from sqlalchemy.orm import Session

from vpop.billing import ledger
from vpop.billing.bank import check_bic, check_iban
from vpop.billing.errors import BankDetailsInvalid, BillingError
from vpop.billing.models import LedgerEntry
from vpop.billing.payment_models import (
    Bill,
    Mandate,
    Payee,
    PayoutFile,
    PayoutItem,
    Settlement,
)
from vpop.billing.periods import period_bounds
from vpop.catalogue.service import Subscriber
from vpop.core.audit import audit
from vpop.core.errors import BadInput, ConfigError, NotFound
from vpop.core.settings import Settings, load_settings
from vpop.core.time import as_utc, utcnow

SEPA_CURRENCY = "EUR"
_MANDATE_ID = re.compile(r"[A-Za-z0-9+?/:().,' -]{1,35}", re.ASCII)


class NothingToSend(BillingError):
    """A SEPA file needs at least one transaction: the period has no payout (or debit)."""

    code = "VPOP-409-SEPA-EMPTY"
    status = 409


class MandateInvalid(BillingError, BadInput):
    """A mandate id, name or signature date that is not acceptable, or an id in use."""

    code = "VPOP-400-MANDATE"
    status = 422


def _required(settings: Settings, name: str) -> str:
    value = getattr(settings, name)
    if not value:
        raise ConfigError(f"setting {name} (VPOP_{name.upper()}) is not set: SEPA files need it")
    return str(value)


def _ids(period: str, moment: datetime, kind: str) -> tuple[str, str]:
    """The message id (``VPPAY2026111205120000``) and creation time the file carries."""
    return f"VP{kind}{period.replace('-', '')}{moment:%y%m%d%H%M%S}", f"{moment:%Y-%m-%dT%H:%M:%S}"


def _export(document: Any, msg_id: str, created: str, schema: str) -> bytes:
    """Fix the ids and time sepaxml drew at random, then export and validate against the XSD."""
    root = document._xml  # sepaxml keeps its tree here; the ids are set before export
    for node in root.iter("MsgId"):
        node.text = msg_id
    for node in root.iter("CreDtTm"):
        node.text = created
    for number, node in enumerate(root.iter("PmtInfId"), start=1):
        node.text = f"{msg_id}-{number}"
    try:
        data: bytes = document.export(validate=True)
    except ValidationError as err:
        raise BankDetailsInvalid(f"the {schema} file does not validate: {err.__cause__}") from err
    return data


def payout_file(
    session: Session, period: str, *, now: datetime | None = None, actor: str = "system"
) -> bytes:
    """The pain.001.001.03 credit transfers paying ``period``'s EUR settlements, one per payee.

    Only settlements that no earlier payout file paid are in it (an interim run's payout is
    not paid twice when the file is made again after the final run); the file is stored
    (``payout_files``, its settlements in ``payout_items``) and audited, so
    :func:`stored_payout_file` gives it again byte for byte.

    Raises:
        PeriodInvalid: ``period`` is not ``YYYY-MM``.
        ConfigError: ``sepa_iban`` is not set.
        BankDetailsInvalid: a payee to pay has no valid IBAN (all such payees are named).
        NothingToSend: no payee is owed anything for the period that is not paid yet.
    """
    moment = as_utc(now) if now is not None else utcnow()
    period_bounds(period)
    settings = load_settings()
    config: dict[str, Any] = {
        "name": settings.sepa_name, "IBAN": check_iban(_required(settings, "sepa_iban")),
        "batch": False, "currency": SEPA_CURRENCY,
    }  # fmt: skip
    if settings.sepa_bic:
        config["BIC"] = check_bic(settings.sepa_bic)
    due = session.execute(
        select(Settlement.id, Settlement.payee_id, Settlement.payout_minor)
        .where(
            Settlement.period == period,
            Settlement.currency == SEPA_CURRENCY,
            Settlement.payout_minor > 0,
            Settlement.id.not_in(select(PayoutItem.settlement_id)),
        )
        .order_by(Settlement.payee_id, Settlement.id)
    ).all()
    if not due:
        raise NothingToSend(_nothing_due(session, period))
    owed: dict[str, int] = {}
    for _, payee_id, amount in due:
        owed[payee_id] = owed.get(payee_id, 0) + int(amount)
    payees = {p.id: p for p in session.scalars(select(Payee).where(Payee.id.in_(list(owed))))}
    refused, accounts = [], {}
    for payee_id in owed:
        try:
            accounts[payee_id] = check_iban(payees[payee_id].iban or "")
        except BankDetailsInvalid:
            refused.append(payee_id)
    if refused:
        raise BankDetailsInvalid(
            f"no valid IBAN for payee(s) {', '.join(refused)}: set one before paying {period}"
        )
    document = SepaTransfer(config, schema="pain.001.001.03", clean=True)
    made = session.scalar(
        select(func.count()).select_from(PayoutFile).where(PayoutFile.period == period)
    )
    msg_id, created = _ids(period, moment, "PAY")
    msg_id = f"{msg_id}{int(made or 0) + 1:02d}"  # several files of one period never collide
    for payee_id, amount in owed.items():
        payee = payees[payee_id]
        payment: dict[str, Any] = {
            "name": payee.name, "IBAN": accounts[payee_id], "amount": amount,
            "execution_date": moment.date(), "endtoend_id": f"{msg_id}-{payee_id}"[:35],
            "description": f"vPoP settlement {period} {payee_id}",
        }  # fmt: skip
        if payee.bic:
            payment["BIC"] = check_bic(payee.bic)
        document.add_payment(payment)
    data = _export(document, msg_id, created, "pain.001.001.03")
    stored = PayoutFile(
        period=period, message_id=msg_id, total_minor=sum(owed.values()),
        sha256=hashlib.sha256(data).hexdigest(), xml=data.decode("utf-8"), created_at=moment,
        created_by=actor,
    )  # fmt: skip
    session.add(stored)
    session.flush()
    session.add_all(PayoutItem(settlement_id=row[0], payout_file_id=stored.id) for row in due)
    audit(
        session, actor, "payout.file", f"payout:{msg_id}", period=period,
        total_minor=stored.total_minor, settlements=[row[0] for row in due], sha256=stored.sha256,
    )  # fmt: skip
    session.flush()
    return data


def _nothing_due(session: Session, period: str) -> str:
    earlier = session.scalars(
        select(PayoutFile.message_id).where(PayoutFile.period == period).order_by(PayoutFile.id)
    ).all()
    if earlier:
        return (
            f"every {SEPA_CURRENCY} payout of {period} is in payout file(s) {', '.join(earlier)};"
            " `vpop settlement payout --file MESSAGE_ID` writes one again"
        )
    return f"no payee is owed a {SEPA_CURRENCY} payout for {period}"


def stored_payout_file(session: Session, message_id: str) -> bytes:
    """A payout file made before, byte for byte.

    Raises:
        NotFound: no payout file has that message id.
    """
    found = session.scalar(select(PayoutFile).where(PayoutFile.message_id == message_id))
    if found is None:
        raise NotFound(f"no payout file {message_id!r}", code="VPOP-404-PAYOUT")
    return found.xml.encode("utf-8")


def _collectable(session: Session, period: str) -> list[tuple[Bill, Mandate | None]]:
    """The period's bills with a positive total and their subscriber's mandate (or None)."""
    rows = session.execute(
        select(Bill, Mandate)
        .outerjoin(Mandate, Mandate.subscriber_id == Bill.subscriber_id)
        .where(Bill.period == period, Bill.total_minor > 0)
        .order_by(Bill.subscriber_id, Bill.currency)
    ).all()
    return [(row[0], row[1]) for row in rows]


def uncollected_bills(session: Session, period: str) -> list[dict[str, Any]]:
    """The period's bills with a positive total that ``collection_file`` leaves out, and why.

    ``reason``: ``no mandate``, ``mandate revoked``, or ``currency`` (not EUR).

    Raises:
        PeriodInvalid: ``period`` is not ``YYYY-MM``.
    """
    period_bounds(period)
    left = []
    for bill, mandate in _collectable(session, period):
        reason = (
            "currency" if bill.currency != SEPA_CURRENCY
            else "no mandate" if mandate is None
            else "mandate revoked" if mandate.revoked_at is not None
            else None
        )  # fmt: skip
        if reason is not None:
            left.append({"bill": bill.id, "subscriber": bill.subscriber_id,
                         "currency": bill.currency, "total_minor": bill.total_minor,
                         "reason": reason})  # fmt: skip
    return left


def _first_collection(session: Session, bill: Bill) -> bool:
    """True when no earlier bill of the subscriber was collected (SEPA sequence FRST)."""
    earlier = select(literal("collect:", String) + cast(Bill.id, String)).where(
        Bill.subscriber_id == bill.subscriber_id, Bill.period < bill.period
    )
    found = session.scalar(select(func.count()).where(LedgerEntry.key.in_(earlier)))
    return not found


def collection_file(session: Session, period: str, *, now: datetime | None = None) -> bytes:
    """The pain.008.001.02 direct debits collecting ``period``'s closed EUR bills.

    One debit per bill with a positive total whose subscriber has a mandate; each books
    ``collect:{bill id}`` in the caller's transaction (once: a second file replays it).

    Raises:
        PeriodInvalid: ``period`` is not ``YYYY-MM``.
        ConfigError: ``sepa_iban``, ``sepa_bic`` or ``sepa_creditor_id`` is not set.
        NothingToSend: no bill of the period can be collected.
    """
    moment = as_utc(now) if now is not None else utcnow()
    period_bounds(period)
    settings = load_settings()
    config: dict[str, Any] = {
        "name": settings.sepa_name, "IBAN": check_iban(_required(settings, "sepa_iban")),
        "BIC": check_bic(_required(settings, "sepa_bic")), "batch": False,
        "creditor_id": _required(settings, "sepa_creditor_id"), "currency": SEPA_CURRENCY,
    }  # fmt: skip
    due = [
        (bill, mandate)
        for bill, mandate in _collectable(session, period)
        if bill.currency == SEPA_CURRENCY and mandate is not None and mandate.revoked_at is None
    ]
    if not due:
        raise NothingToSend(f"no bill of {period} can be collected (see uncollected bills)")
    document = SepaDD(config, schema="pain.008.001.02", clean=True)
    msg_id, created = _ids(period, moment, "COL")
    for bill, mandate in due:
        payment: dict[str, Any] = {
            "name": mandate.name, "IBAN": mandate.iban, "amount": bill.total_minor,
            "type": "FRST" if _first_collection(session, bill) else "RCUR",
            "collection_date": moment.date(), "mandate_id": mandate.mandate_id,
            "mandate_date": date.fromisoformat(mandate.signed_on),
            "description": f"vPoP bill {period} {bill.subscriber_id}",
            "endtoend_id": f"{msg_id}-{bill.id}"[:35],
        }  # fmt: skip
        if mandate.bic:
            payment["BIC"] = mandate.bic
        document.add_payment(payment)
    data = _export(document, msg_id, created, "pain.008.001.02")
    bank = ledger.open_account(session, "bank", None, SEPA_CURRENCY).code
    clearing = ledger.open_account(session, "clearing", None, SEPA_CURRENCY).code
    for bill, _ in due:
        ledger.transfer(
            session, key=f"collect:{bill.id}", kind="transfer", currency=SEPA_CURRENCY,
            postings=[(bank, bill.total_minor), (clearing, -bill.total_minor)],
            reference=f"bill {bill.id}", actor="system", at=moment,
        )  # fmt: skip
    return data


def add_mandate(
    session: Session,
    subscriber_id: str,
    *,
    mandate_id: str,
    name: str,
    iban: str,
    bic: str | None = None,
    signed_on: str,
    actor: str,
) -> Mandate:
    """Record (or replace) the subscriber's SEPA direct-debit mandate; audited.

    Raises:
        NotFound: ``VPOP-404-SUBSCRIBER``.
        BankDetailsInvalid: the IBAN or BIC does not check out.
        MandateInvalid: the id (1-35 SEPA characters, unused by another subscriber), the
            name (1-70 characters) or ``signed_on`` (``YYYY-MM-DD``) is not acceptable.
    """
    if session.get(Subscriber, subscriber_id) is None:
        raise NotFound(f"unknown subscriber {subscriber_id!r}", code="VPOP-404-SUBSCRIBER")
    if not isinstance(mandate_id, str) or not _MANDATE_ID.fullmatch(mandate_id):
        raise MandateInvalid("mandate_id: 1-35 of A-Z a-z 0-9 + ? / : ( ) . , ' - and space")
    if not isinstance(name, str) or not 0 < len(name.strip()) <= 70:
        raise MandateInvalid("name: 1-70 characters")
    try:
        signed = date.fromisoformat(signed_on) if len(signed_on) == 10 else None
    except (TypeError, ValueError):
        signed = None
    if signed is None:
        raise MandateInvalid(f"signed_on: {str(signed_on)[:20]!r} is not a date YYYY-MM-DD")
    other = session.scalars(select(Mandate).where(Mandate.mandate_id == mandate_id)).first()
    if other is not None and other.subscriber_id != subscriber_id:
        raise MandateInvalid(f"mandate_id {mandate_id!r} is another subscriber's mandate")
    account = check_iban(iban)
    agent = check_bic(bic) if bic else None
    mandate = session.get(Mandate, subscriber_id)
    if mandate is None:
        mandate = Mandate(subscriber_id=subscriber_id)
        session.add(mandate)
    mandate.mandate_id, mandate.name, mandate.iban, mandate.bic = (
        mandate_id,
        name.strip(),
        account,
        agent,
    )
    mandate.signed_on, mandate.revoked_at = signed.isoformat(), None
    session.flush()
    audit(session, actor, "mandate.add", f"subscriber:{subscriber_id}", mandate_id=mandate_id,
          iban_last4=account[-4:], signed_on=signed.isoformat())  # fmt: skip
    return mandate
