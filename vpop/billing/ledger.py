"""The double-entry ledger: accounts, balanced transfers and two-phase holds.

Every function runs in the caller's SQLAlchemy session and transaction, so the several entries
of one business action (a payment and its hold, a capture and its fee) commit together or not
at all; :func:`in_transaction` runs one in its own transaction. Each entry is named by an
idempotency key: the same key with the same content returns the stored entry (and writes
nothing), with other content raises :class:`LedgerKeyConflict`. A refusal raises before
anything of the entry is written.

Concurrency: the accounts an entry touches are locked in one order (by id) before they are
read (``SELECT ... FOR UPDATE`` on PostgreSQL); on SQLite the first statement takes the
database's write lock, so writers queue. Floors are checked under those locks, and the
database checks them again (a CHECK on each account's cached sums).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy import case, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from vpop.billing.errors import (
    HoldResolved,
    InsufficientFunds,
    LedgerInvalid,
    LedgerKeyConflict,
    UnknownAccount,
    UnknownHold,
)
from vpop.billing.models import (
    ACCOUNT_KINDS,
    CREDITS_WITHIN_DEBITS,
    DEBITS_WITHIN_CREDITS,
    DEFAULT_FLOORS,
    ENTRY_KINDS,
    FLOORS,
    MAX_AMOUNT,
    OWNED_KINDS,
    RESOLVING_KINDS,
    LedgerAccount,
    LedgerEntry,
    LedgerPosting,
)
from vpop.core.db import session_scope
from vpop.core.time import as_utc, utcnow

_CURRENCY = re.compile(r"[A-Z]{3}")
_OWNER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_RETRIED_SQLSTATES = ("40001", "40P01")  # serialization failure, deadlock: retried, not refused

P = ParamSpec("P")
T = TypeVar("T")
Leg = tuple[LedgerAccount, int]


def account_code(kind: str, owner: str | None, currency: str) -> str:
    """The code of an account: ``subscriber:sub1:EUR``, or ``holds:EUR`` for an unowned one."""
    return f"{kind}:{owner}:{currency}" if owner is not None else f"{kind}:{currency}"


def _check_names(currency: str | None, key: str = "-") -> None:
    if currency is not None and not _CURRENCY.fullmatch(currency):
        raise LedgerInvalid(f"currency {currency!r} is not three upper-case letters (ISO 4217)")
    if not 1 <= len(key) <= 200:
        raise LedgerInvalid("a ledger key is 1-200 characters")


def _check_amount(amount: int, what: str) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= MAX_AMOUNT:
        raise LedgerInvalid(f"{what} must be a positive integer of minor units, at most 2^63-1")


def open_account(
    session: Session, kind: str, owner: str | None, currency: str, *, floor: str | None = None
) -> LedgerAccount:
    """Open the account ``kind:owner:currency`` (or ``kind:currency``), or return it if it exists.

    ``subscriber`` and ``payee`` accounts have an ``owner`` (the subscriber's or payee's id),
    the others none. ``floor`` is one of :data:`FLOORS`, by default the kind's entry of
    :data:`DEFAULT_FLOORS`. The account is flushed in the caller's transaction.

    Raises:
        LedgerInvalid: an unknown kind or floor, a bad currency or owner.
        LedgerKeyConflict: the account exists with another floor.
    """
    if kind not in ACCOUNT_KINDS:
        raise LedgerInvalid(f"account kind {kind!r} is not one of {', '.join(ACCOUNT_KINDS)}")
    if (owner is not None) != (kind in OWNED_KINDS):
        raise LedgerInvalid(f"a {kind} account {'needs' if owner is None else 'has no'} owner")
    if owner is not None and not _OWNER.fullmatch(owner):
        raise LedgerInvalid(f"account owner {owner!r} is not an id (letters, digits, . _ -)")
    _check_names(currency)
    floor = DEFAULT_FLOORS[kind] if floor is None else floor
    if floor not in FLOORS:
        raise LedgerInvalid(f"floor {floor!r} is not one of {', '.join(FLOORS)}")
    code = account_code(kind, owner, currency)
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    row = LedgerAccount.__table__.c
    session.execute(
        insert(LedgerAccount)
        .values({row.code: code, row.kind: kind, row.owner: owner, row.currency: currency,
                 row.floor: floor, row.debits: 0, row.credits: 0, row.created_at: utcnow()})
        .on_conflict_do_nothing()
    )  # fmt: skip
    account = _account(session, code)
    if account.floor != floor:
        raise LedgerKeyConflict(f"account {code} exists with floor {account.floor}")
    return account


def _account(session: Session, code: str) -> LedgerAccount:
    query = select(LedgerAccount).where(LedgerAccount.code == code)
    account = session.scalars(query.execution_options(populate_existing=True)).first()
    if account is None:
        raise UnknownAccount(f"unknown ledger account {code!r}")
    return account


def balance(session: Session, account_code: str) -> int:
    """The account's balance in minor units: its debits minus its credits.

    A credit balance is negative: a subscriber granted 5000 who holds 1200 has -3800.
    """
    account = _account(session, account_code)
    return account.debits - account.credits


def _lock(session: Session, codes: Iterable[str]) -> dict[str, LedgerAccount]:
    """Lock the named accounts in id order and read them afresh; all must exist."""
    wanted = sorted(set(codes))
    if session.get_bind().dialect.name == "sqlite":  # take the write lock: later reads are current
        session.execute(text("UPDATE ledger_accounts SET debits = debits WHERE id = -1"))
    query = (
        select(LedgerAccount)
        .where(LedgerAccount.code.in_(wanted))
        .order_by(LedgerAccount.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    accounts = {account.code: account for account in session.scalars(query)}
    missing = [code for code in wanted if code not in accounts]
    if missing:
        raise UnknownAccount(f"unknown ledger account {missing[0]!r}")
    return accounts


@dataclass(frozen=True)
class _Draft:
    """An entry about to be written (or found stored under its key)."""

    key: str
    kind: str
    currency: str
    amount: int  # a transfer's debits; the amount held, posted, or released
    legs: Sequence[Leg]
    reference: str
    linked_to: int | None = None
    status: str | None = None
    expires_at: datetime | None = None


def _replay(session: Session, draft: _Draft) -> LedgerEntry | None:
    """The stored entry of the draft's key if its content is the draft's; None if it is new."""
    query = select(LedgerEntry).where(LedgerEntry.key == draft.key)
    entry = session.scalars(query.execution_options(populate_existing=True)).first()
    if entry is None:
        return None
    query_legs = select(LedgerPosting.account_id, LedgerPosting.amount)
    stored = session.execute(query_legs.where(LedgerPosting.entry_id == entry.id)).all()
    expires = None if draft.expires_at is None else as_utc(draft.expires_at)
    same = (
        (entry.kind, entry.currency, entry.amount, entry.reference, entry.linked_to)
        == (draft.kind, draft.currency, draft.amount, draft.reference, draft.linked_to)
        and entry.expires_at == expires
        and sorted((row[0], row[1]) for row in stored)
        == sorted((account.id, value) for account, value in draft.legs)
    )
    if not same:
        raise LedgerKeyConflict(f"ledger key {draft.key!r} was already used for another entry")
    return entry


def _write(session: Session, draft: _Draft, *, actor: str, at: datetime | None) -> LedgerEntry:
    """The stored entry of the draft's key, or check the locked accounts' floors and write it."""
    existing = _replay(session, draft)
    if existing is not None:
        return existing
    sums: list[tuple[LedgerAccount, int, int]] = []
    for account, value in draft.legs:
        debits = account.debits + max(value, 0)
        credits = account.credits + max(-value, 0)
        if max(debits, credits) > MAX_AMOUNT:
            raise LedgerInvalid(f"account {account.code} would exceed 2^63-1 minor units")
        if (account.floor == DEBITS_WITHIN_CREDITS and debits > credits) or (
            account.floor == CREDITS_WITHIN_DEBITS and credits > debits
        ):
            raise InsufficientFunds(
                f"{draft.kind} {draft.key!r} would take {account.code} beyond its floor: "
                f"balance {account.debits - account.credits}, {value:+d} ({account.floor})"
            )
        sums.append((account, debits, credits))
    expires_at = None if draft.expires_at is None else as_utc(draft.expires_at)
    entry = LedgerEntry(
        key=draft.key, kind=draft.kind, currency=draft.currency, amount=draft.amount,
        at=at or utcnow(), reference=draft.reference, linked_to=draft.linked_to,
        status=draft.status, expires_at=expires_at, created_by=actor,
    )  # fmt: skip
    session.add(entry)
    session.flush()
    session.add_all(
        LedgerPosting(entry_id=entry.id, account_id=account.id, currency=entry.currency, amount=v)
        for account, v in draft.legs
    )
    for account, debits, credits in sums:
        account.debits, account.credits = debits, credits
    session.flush()
    return entry


def transfer(
    session: Session,
    *,
    key: str,
    kind: str,
    currency: str,
    postings: Sequence[tuple[str, int]],
    reference: str = "",
    actor: str,
    at: datetime | None = None,
) -> LedgerEntry:
    """Write one balanced entry: ``postings`` are ``(account code, amount)``, debit positive.

    ``key`` names the business action (``capture:42``); ``kind`` is one of
    :data:`ENTRY_KINDS` but ``hold`` and its resolutions; every account is in ``currency``;
    there are at least two postings, one per account, none zero, summing to zero. Returns the
    new entry, or the stored one when ``key`` is replayed with the same content.

    Raises:
        LedgerInvalid: empty, unbalanced, zero, repeated account, mixed currencies.
        UnknownAccount: an account code does not exist.
        LedgerKeyConflict: ``key`` names another entry.
        InsufficientFunds: an account would go beyond its floor (nothing is written).
    """
    _check_names(currency, key)
    if kind not in ENTRY_KINDS or kind == "hold" or kind in RESOLVING_KINDS:
        raise LedgerInvalid(f"entry kind {kind!r} is not a transfer kind")
    if len(postings) < 2:
        raise LedgerInvalid("an entry needs at least two postings")
    codes = [code for code, _ in postings]
    if len(set(codes)) != len(codes):
        raise LedgerInvalid("an entry posts to each account at most once")
    for code, value in postings:
        if isinstance(value, bool) or not isinstance(value, int) or value == 0:
            raise LedgerInvalid(f"the posting to {code} is not a non-zero integer")
        if abs(value) > MAX_AMOUNT:
            raise LedgerInvalid(f"the posting to {code} exceeds 2^63-1 minor units")
    if sum(value for _, value in postings) != 0:
        raise LedgerInvalid("the postings of an entry must sum to zero")
    accounts = _lock(session, codes)
    for code in codes:
        if accounts[code].currency != currency:
            raise LedgerInvalid(f"account {code} is not in {currency}: one currency per entry")
    legs = [(accounts[code], value) for code, value in postings]
    amount = sum(value for _, value in postings if value > 0)
    draft = _Draft(key, kind, currency, amount, legs, reference)
    return _write(session, draft, actor=actor, at=at)


def hold(
    session: Session,
    *,
    key: str,
    subscriber_account: str,
    amount: int,
    currency: str,
    expires_at: datetime,
    reference: str = "",
    actor: str,
    at: datetime | None = None,
) -> LedgerEntry:
    """Reserve ``amount``: debit the subscriber's account, credit ``holds:CUR``; pending.

    Raises:
        LedgerInvalid: a bad amount or currency, or a subscriber account of another currency.
        UnknownAccount: the subscriber's account does not exist.
        LedgerKeyConflict: ``key`` names another entry.
        InsufficientFunds: the subscriber's account would go beyond its floor.
    """
    _check_names(currency, key)
    _check_amount(amount, "a hold")
    holds_code = open_account(session, "holds", None, currency).code
    accounts = _lock(session, [subscriber_account, holds_code])
    subscriber = accounts[subscriber_account]
    if subscriber.currency != currency or subscriber.code == holds_code:
        raise LedgerInvalid(f"account {subscriber_account} cannot hold {currency}")
    legs = [(subscriber, amount), (accounts[holds_code], -amount)]
    draft = _Draft(
        key, "hold", currency, amount, legs, reference, status="pending", expires_at=expires_at
    )
    return _write(session, draft, actor=actor, at=at)


def _held(session: Session, hold_key: str) -> tuple[LedgerEntry, str, str]:
    """The hold named ``hold_key`` and the codes of its subscriber and holds accounts."""
    query = select(LedgerEntry).where(LedgerEntry.key == hold_key, LedgerEntry.kind == "hold")
    entry = session.scalars(query).first()
    if entry is None:
        raise UnknownHold(f"no hold has the key {hold_key!r}")
    rows = session.execute(
        select(LedgerAccount.code, LedgerPosting.amount)
        .join(LedgerPosting, LedgerPosting.account_id == LedgerAccount.id)
        .where(LedgerPosting.entry_id == entry.id)
    ).all()
    debited, credited = (next(code for code, value in rows if value * sign > 0) for sign in (1, -1))
    return entry, debited, credited


def _resolve(
    session: Session, *, key: str, hold_key: str, kind: str, payee_account: str | None,
    amount: int | None, reference: str, actor: str, now: datetime | None,
) -> LedgerEntry:  # fmt: skip
    """Post (part of) a pending hold to a payee and release the rest, or release all of it."""
    _check_names(None, key)
    held, subscriber_code, holds_code = _held(session, hold_key)
    if amount is not None:
        _check_amount(amount, "a posted amount")
        if amount > held.amount:
            raise LedgerInvalid(f"hold {hold_key!r} holds {held.amount}: cannot post {amount}")
    codes = [subscriber_code, holds_code] + ([payee_account] if payee_account else [])
    accounts = _lock(session, codes)
    legs: list[Leg] = [(accounts[holds_code], held.amount)]
    posted = 0
    if payee_account is not None:
        payee = accounts[payee_account]
        if payee.currency != held.currency or payee_account in (subscriber_code, holds_code):
            raise LedgerInvalid(f"account {payee_account} cannot be paid this hold")
        posted = held.amount if amount is None else amount
        legs.append((payee, -posted))
    if held.amount > posted:
        legs.append((accounts[subscriber_code], posted - held.amount))
    # a post's amount is what it posts; a void's or an expiry's, what it releases
    amount = posted or held.amount
    draft = _Draft(key, kind, held.currency, amount, legs, reference, linked_to=held.id)
    existing = _replay(session, draft)
    if existing is not None:
        return existing
    query = select(LedgerEntry).where(LedgerEntry.id == held.id).with_for_update()
    held = session.scalars(query.execution_options(populate_existing=True)).one()
    if held.status != "pending":
        raise HoldResolved(f"hold {hold_key!r} is already {held.status}")
    moment = as_utc(now) if now is not None else utcnow()
    if kind == "post" and held.expires_at is not None and held.expires_at <= moment:
        raise HoldResolved(f"hold {hold_key!r} expired at {held.expires_at.isoformat()}")
    entry = _write(session, draft, actor=actor, at=moment)
    held.status = {"post": "posted", "void": "voided", "expire": "expired"}[kind]
    session.flush()
    return entry


def post_hold(
    session: Session,
    *,
    key: str,
    hold_key: str,
    payee_account: str,
    amount: int | None = None,
    reference: str = "",
    actor: str,
    now: datetime | None = None,
) -> LedgerEntry:
    """Post at most the held amount to the payee and release the rest; resolves the hold.

    ``amount`` is 1 to the held amount (all of it when None); ``now`` is what the hold's
    expiry is compared with.

    Raises:
        UnknownHold: no hold has ``hold_key``.
        LedgerInvalid: more than held, a zero amount, a payee of another currency.
        HoldResolved: the hold was posted, voided or expired, or is past its expiry.
        LedgerKeyConflict: ``key`` names another entry.
    """
    return _resolve(
        session, key=key, hold_key=hold_key, kind="post", payee_account=payee_account,
        amount=amount, reference=reference, actor=actor, now=now,
    )  # fmt: skip


def void_hold(
    session: Session, *, key: str, hold_key: str, reference: str = "", actor: str
) -> LedgerEntry:
    """Release the whole of a pending hold to the subscriber; resolves the hold.

    Raises:
        UnknownHold: no hold has ``hold_key``.
        HoldResolved: the hold was already posted, voided or expired.
        LedgerKeyConflict: ``key`` names another entry.
    """
    return _resolve(
        session, key=key, hold_key=hold_key, kind="void", payee_account=None, amount=None,
        reference=reference, actor=actor, now=None,
    )  # fmt: skip


def expire_holds(
    session: Session, now: datetime | None = None, *, actor: str = "system"
) -> list[str]:
    """Release every pending hold whose expiry is at or before ``now``; their keys, in order.

    Each expiry is an entry of kind ``expire`` keyed ``expire:<hold key>``. A hold resolved
    by another transaction meanwhile is left alone.
    """
    moment = as_utc(now) if now is not None else utcnow()
    query = (
        select(LedgerEntry.key)
        .where(LedgerEntry.status == "pending", LedgerEntry.expires_at <= moment)
        .order_by(LedgerEntry.id)
    )
    expired: list[str] = []
    for hold_key in session.scalars(query).all():
        try:
            _resolve(
                session, key=f"expire:{hold_key}", hold_key=hold_key, kind="expire",
                payee_account=None, amount=None, reference="", actor=actor, now=moment,
            )  # fmt: skip
        except HoldResolved:
            continue
        expired.append(hold_key)
    return expired


def postings_of(session: Session, key: str) -> list[tuple[str, int]]:
    """The postings of the entry ``key`` as ``(account code, amount)``, by account code."""
    rows = session.execute(
        select(LedgerAccount.code, LedgerPosting.amount)
        .join(LedgerPosting, LedgerPosting.account_id == LedgerAccount.id)
        .join(LedgerEntry, LedgerEntry.id == LedgerPosting.entry_id)
        .where(LedgerEntry.key == key)
        .order_by(LedgerAccount.code)
    ).all()
    return [(code, value) for code, value in rows]


def unbalanced_entries(session: Session) -> list[str]:
    """Keys of entries whose postings do not sum to zero or are fewer than two (none, ever)."""
    query = (
        select(LedgerEntry.key)
        .outerjoin(LedgerPosting, LedgerPosting.entry_id == LedgerEntry.id)
        .group_by(LedgerEntry.id, LedgerEntry.key)
        .having(
            (func.count(LedgerPosting.id) < 2)
            | (func.coalesce(func.sum(LedgerPosting.amount), 0) != 0)
        )
        .order_by(LedgerEntry.key)
    )
    return list(session.scalars(query))


def check_balances(session: Session) -> list[str]:
    """Codes of accounts whose cached debits and credits differ from their postings (none)."""
    value = LedgerPosting.amount
    debits = func.coalesce(func.sum(case((value > 0, value), else_=0)), 0)
    credits = func.coalesce(func.sum(case((value < 0, -value), else_=0)), 0)
    rows = session.execute(
        select(LedgerAccount.code, LedgerAccount.debits, LedgerAccount.credits, debits, credits)
        .outerjoin(LedgerPosting, LedgerPosting.account_id == LedgerAccount.id)
        .group_by(LedgerAccount.id, LedgerAccount.code, LedgerAccount.debits, LedgerAccount.credits)
        .order_by(LedgerAccount.code)
    ).all()
    return [row[0] for row in rows if (row[1], row[2]) != (row[3], row[4])]


def in_transaction(
    url: str | None,
    fn: Callable[Concatenate[Session, P], T],
    /,
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """Run ``fn(session, ...)`` in its own transaction on ``url``; commit; return its result.

    A PostgreSQL serialization failure or deadlock is retried (three attempts in all): it
    means "try again", never "insufficient funds".
    """
    for attempt in range(3):
        try:
            with session_scope(url) as session:
                return fn(session, *args, **kwargs)
        except DBAPIError as err:
            sqlstate = getattr(err.orig, "sqlstate", None)
            if sqlstate not in _RETRIED_SQLSTATES or attempt == 2:
                raise
    raise AssertionError("unreachable")
