"""The data of ``bench/billing.py``'s settlement bench: captured payments written in bulk
(Core executemany in chunks) in exactly the rows the payment code writes for an authorise and
a full capture, and the check that they are (:func:`check_shapes`).

Per payment: the ``payments`` row (CAPTURED), its ``authorised`` and ``captured`` events, the
hold (``payment:ID:hold``, posted: allowance +A, holds -A) and its post
(``payment:ID:capture``: holds +A, payee -A). Per subscriber, at its first payment of the
period: the allowance account ``subscriber:S.P:CUR``, its ``spending_periods`` row and the
grant of its limit (``limit:S:CUR:P:0``: clearing +L, allowance -L). The accounts' cached sums
are set from their postings at the end, and on PostgreSQL the id sequences moved past the ids
written here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session

from vpop.billing.service import (
    LedgerAccount,
    LedgerEntry,
    LedgerPosting,
    Payment,
    PaymentBody,
    PaymentEvent,
    SpendingPeriod,
    authorise,
    capture,
    ensure_isp_payee,
    in_transaction,
    open_account,
    register_merchant,
    update_payee,
)
from vpop.catalogue.service import Isp, Line, Subscriber
from vpop.core.db import dispose_engines, session_scope
from vpop.core.migrate import upgrade
from vpop.core.settings import load_settings
from vpop.selection.service import Caller

PERIOD, START, END = "2026-10", datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 2, 6, tzinfo=UTC)  # the final run, after the month
CUR = "EUR"
LIMIT = 10**9  # each subscriber's allowance: never the limit here
#: payee -> (kind, ISP, fee basis points, fixed fee, the caller acting for it)
PAYEES = {
    "isp-b": ("isp", "isp-b", 120, 0, Caller("token:1", "isp", isp="isp-b")),
    "shop-a": ("merchant", "isp-a", 250, 5, Caller("token:2", "merchant", isp="isp-a",
                                                     merchant="shop-a")),
    "shop-c": ("merchant", "isp-c", 90, 2, Caller("token:3", "merchant", isp="isp-c",
                                                    merchant="shop-c")),
}  # fmt: skip
CHUNK = 10_000
HOLD_DAYS = load_settings().hold_days


def catalogue(url: str, subscribers: int) -> None:
    """ISPs, subscribers (each with one line and a high limit), the three payees."""
    profile = {"spending_limit_minor": LIMIT}
    with session_scope(url) as session:
        session.execute(
            insert(Isp), [{"id": i, "name": f"ISP {i}"} for i in ("isp-a", "isp-b", "isp-c")]
        )
        session.execute(
            insert(Subscriber),
            [{"id": sub(k), "name": sub(k), "profile": profile} for k in range(subscribers)],
        )
        session.execute(
            insert(Line),
            [
                {"id": k + 1, "subscriber_id": sub(k), "router": "rc1", "interface": sub(k),
                 "prefix": f"2001:db8:{k >> 12:x}:{k & 0xFFF:x}::/64"}
                for k in range(subscribers)
            ],
        )  # fmt: skip
        for payee, (kind, isp, fee_bp, fixed, _) in PAYEES.items():
            if kind == "isp":
                ensure_isp_payee(session, isp)
                update_payee(session, payee, actor="bench", fee_bp=fee_bp, fee_fixed_minor=fixed)
            else:
                register_merchant(
                    session, payee, isp, payee, fee_bp=fee_bp, fee_fixed_minor=fixed,
                    actor="bench",
                )  # fmt: skip


def sub(k: int) -> str:
    return f"s{k + 1:05d}"


class Rows:
    """Rows to insert, table by table, in the order the foreign keys need."""

    ORDER = (Payment, PaymentEvent, SpendingPeriod, LedgerEntry, LedgerPosting)

    def __init__(self, accounts: dict[str, int]) -> None:
        self.accounts = accounts  # code -> id
        self.tables: dict[Any, list[dict[str, Any]]] = {model: [] for model in self.ORDER}

    def add(self, model: Any, **row: Any) -> None:
        self.tables[model].append(row)

    def entry(self, postings: list[tuple[str, int]], **row: Any) -> None:
        """A ledger entry and its postings (debit +, credit -), legs in the ledger's order."""
        self.add(LedgerEntry, currency=CUR, **row)
        for code, amount in postings:
            self.add(LedgerPosting, entry_id=row["id"], account_id=self.accounts[code],
                     currency=CUR, amount=amount)  # fmt: skip

    def write(self, session: Session) -> int:
        for model in self.ORDER:
            if self.tables[model]:
                session.execute(insert(model), self.tables[model])
        return sum(len(rows) for rows in self.tables.values())


def allowance(rows: Rows, subscriber: str, *, entry: int, at: datetime, actor: str) -> None:
    """What the first authorisation of a subscriber in the period writes: the spending
    period and the grant of its limit (``limit:S:CUR:P:0``: clearing +L, allowance -L)."""
    rows.add(SpendingPeriod, subscriber_id=subscriber, currency=CUR, period=PERIOD,
             limit_minor=LIMIT, granted_minor=LIMIT, changes=1, updated_at=at,
             updated_by=actor)  # fmt: skip
    rows.entry(
        [(f"clearing:{CUR}", LIMIT), (f"subscriber:{subscriber}.{PERIOD}:{CUR}", -LIMIT)],
        id=entry, key=f"limit:{subscriber}:{CUR}:{PERIOD}:0", kind="limit", amount=LIMIT,
        at=at, reference=f"subscriber:{subscriber}", linked_to=None, status=None,
        expires_at=None, created_by=actor,
    )  # fmt: skip


def payment(
    rows: Rows, *, pid: int, subscriber: str, line: int, payee: str, amount: int,
    at: datetime, captured_at: datetime, entry: int,
) -> None:  # fmt: skip
    """What ``authorise`` then a full ``capture`` write for one payment: the payment, its
    ``authorised`` and ``captured`` events, the hold (posted) and its post."""
    _, isp, _, _, caller = PAYEES[payee]
    actor, hold_key, capture_key = caller.name, f"payment:{pid}:hold", f"payment:{pid}:capture"
    expires = at + timedelta(days=HOLD_DAYS)
    rows.add(
        Payment, id=pid, payee_id=payee, isp_id=isp, subscriber_id=subscriber, line_id=line,
        identified_by="subscriber", source_address=None, currency=CUR, amount_minor=amount,
        captured_minor=amount, refunded_minor=0, status="CAPTURED", decline_reason=None,
        item=f"item {pid % 100}", merchant_reference=f"order-{pid}", period=PERIOD,
        hold_key=hold_key, created_at=at, updated_at=captured_at, expires_at=expires,
        created_by=actor, disputed_at=None, dispute_reason=None,
    )  # fmt: skip
    for kind, moment, key in (("authorised", at, hold_key), ("captured", captured_at, capture_key)):
        rows.add(PaymentEvent, payment_id=pid, payee_id=payee, currency=CUR, kind=kind,
                 amount_minor=amount, at=moment, actor=actor, ledger_key=key, note="")  # fmt: skip
    allowance_code, holds = f"subscriber:{subscriber}.{PERIOD}:{CUR}", f"holds:{CUR}"
    rows.entry(
        [(allowance_code, amount), (holds, -amount)], id=entry, key=hold_key, kind="hold",
        amount=amount, at=at, reference=f"payment:{pid}", linked_to=None, status="posted",
        expires_at=expires, created_by=actor,
    )  # fmt: skip
    rows.entry(
        [(holds, amount), (f"payee:{payee}:{CUR}", -amount)], id=entry + 1, key=capture_key,
        kind="post", amount=amount, at=captured_at, reference=f"payment:{pid}",
        linked_to=entry, status=None, expires_at=None, created_by=actor,
    )  # fmt: skip


def open_accounts(url: str, subscribers: int) -> dict[str, int]:
    """The routing centre's and payees' accounts, and every subscriber's allowance account
    (bulk, as ``open_account`` writes them); their ids by code."""
    with session_scope(url) as session:
        for kind, owner in (("clearing", None), ("holds", None), *(("payee", p) for p in PAYEES)):
            open_account(session, kind, owner, CUR)
        moment = NOW
        session.execute(
            insert(LedgerAccount),
            [
                {"code": f"subscriber:{sub(k)}.{PERIOD}:{CUR}", "kind": "subscriber",
                 "owner": f"{sub(k)}.{PERIOD}", "currency": CUR,
                 "floor": "debits_must_not_exceed_credits", "debits": 0, "credits": 0,
                 "created_at": moment}
                for k in range(subscribers)
            ],
        )  # fmt: skip
        return dict(session.execute(select(LedgerAccount.code, LedgerAccount.id)).all())


def spread(i: int, count: int) -> tuple[datetime, datetime]:
    """When payment ``i`` of ``count`` is authorised and captured (a minute later)."""
    span = (END - START - timedelta(minutes=2)) / count
    at = START + span * i
    return at, at + timedelta(minutes=1)


def generate(url: str, *, payments: int, subscribers: int) -> int:
    """Write ``payments`` captured payments of :data:`PERIOD`, spread evenly over the month,
    round robin over the payees and subscribers; the rows written."""
    catalogue(url, subscribers)
    accounts = open_accounts(url, subscribers)
    names = list(PAYEES)
    written = 0
    for first in range(0, payments, CHUNK):
        rows = Rows(accounts)
        for i in range(first, min(first + CHUNK, payments)):
            k = i % subscribers
            at, captured_at = spread(i, payments)
            payee = names[i % len(names)]
            if i < subscribers:  # the subscriber's first payment of the period
                allowance(rows, sub(k), entry=k + 1, at=at, actor=PAYEES[payee][4].name)
            payment(
                rows, pid=i + 1, subscriber=sub(k), line=k + 1, payee=payee,
                amount=1 + (i * 7919) % 999, at=at, captured_at=captured_at,
                entry=subscribers + 2 * i + 1,
            )  # fmt: skip
        with session_scope(url) as session:
            if session.get_bind().dialect.name == "postgresql":
                # as pg_restore loads: no per-row triggers (the deferred balance check of
                # every posting) nor foreign-key checks during the load; the bench checks
                # the loaded ledger afterwards (unbalanced_entries, check_balances)
                session.execute(text("SET LOCAL session_replication_role = replica"))
            written += rows.write(session)
    with session_scope(url) as session:
        settle_accounts(session)
    return written


def settle_accounts(session: Session) -> None:
    """The accounts' cached sums from their postings (what each entry's write kept), and on
    PostgreSQL the id sequences past the ids written here."""
    sums = {
        column: "(SELECT coalesce(abs(sum(amount)), 0) FROM ledger_postings"
        f" WHERE account_id = ledger_accounts.id AND amount {sign} 0)"
        for column, sign in (("debits", ">"), ("credits", "<"))
    }
    session.execute(
        text(f"UPDATE ledger_accounts SET debits = {sums['debits']}, credits = {sums['credits']}")
    )
    if session.get_bind().dialect.name == "postgresql":
        for table in ("payments", "ledger_entries", "ledger_accounts"):
            session.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}"
                )
            )


def check_shapes(url: str) -> None:
    """One payment by the real ``authorise`` and ``capture``, and the generator's rows for
    it: equal, column by column (the surrogate ids of events and postings aside)."""
    upgrade(url)
    catalogue(url, 1)
    payee, amount = "shop-a", 321
    caller = PAYEES[payee][4]
    at, captured_at = spread(0, 1)
    body = PaymentBody.parse({"subscriber": sub(0), "amount_minor": amount, "currency": CUR,
                              "item": "item 1", "merchant_reference": "order-1"})  # fmt: skip
    pid = in_transaction(url, authorise, caller, body, now=at).id
    in_transaction(url, capture, caller, pid, None, now=captured_at)
    with session_scope(url) as session:
        accounts = dict(session.execute(select(LedgerAccount.code, LedgerAccount.id)).all())
        rows = Rows(accounts)
        allowance(rows, sub(0), entry=1, at=at, actor=caller.name)
        payment(rows, pid=pid, subscriber=sub(0), line=1, payee=payee, amount=amount, at=at,
                captured_at=captured_at, entry=2)  # fmt: skip
        for model, mine in rows.tables.items():
            columns = [c for c in model.__table__.columns if c.name in mine[0]]
            missing = {c.name for c in model.__table__.columns} - set(mine[0]) - {"id"}
            stored = [
                dict(r._mapping) for r in session.execute(select(*columns).order_by(*columns[:1]))
            ]
            if missing or normal(stored) != normal(mine):
                raise SystemExit(
                    f"{model.__tablename__}: the generator writes\n{mine}\n"
                    f"the payment code wrote\n{stored}\n(missing {missing})"
                )
    dispose_engines()


def normal(rows: list[dict[str, Any]]) -> list[str]:
    """Rows in a comparable form: each row's items sorted by column, the rows sorted."""
    return sorted(repr(sorted(row.items())) for row in rows)


def settle_peer(url: str) -> tuple[int, int]:
    """The peer: count and sum the period's captured events (what any settlement reads)."""
    e = PaymentEvent
    query = select(func.count(), func.sum(e.amount_minor)).where(
        e.kind == "captured", e.at >= START, e.at < END
    )
    with session_scope(url) as session:
        count, total = session.execute(query).one()
    return int(count), int(total or 0)
