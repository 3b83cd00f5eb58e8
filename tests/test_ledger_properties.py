"""A stateful property test of the ledger: grants, transfers, holds, partial posts, voids,
expiries, replays and reused keys in random order, on SQLite, checked after every step against
a model kept here: entries balance per entry and per currency, no hold resolves twice, a post
takes at most what was held, no account goes beyond its floor, a replay changes nothing, and
every balance the ledger derives equals the model's."""

from __future__ import annotations

import atexit
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from sqlalchemy import func, select

from vpop.billing.service import (
    HoldResolved,
    InsufficientFunds,
    LedgerAccount,
    LedgerEntry,
    LedgerInvalid,
    LedgerKeyConflict,
    LedgerPosting,
    balance,
    check_balances,
    expire_holds,
    hold,
    in_transaction,
    open_account,
    post_hold,
    transfer,
    unbalanced_entries,
    void_hold,
)
from vpop.core.db import dispose_engines, session_scope
from vpop.core.migrate import upgrade

START = datetime(2026, 12, 1, tzinfo=UTC)
SUBSCRIBERS = {
    "subscriber:sub1:EUR": "EUR",
    "subscriber:sub2:EUR": "EUR",
    "subscriber:sub3:JPY": "JPY",
}
PAYEES = {"EUR": ["payee:isp-a:EUR", "payee:isp-b:EUR"], "JPY": ["payee:isp-a:JPY"]}
TEMPLATE = Path(tempfile.mkdtemp(prefix="vpop-ledger-props-"))
atexit.register(shutil.rmtree, TEMPLATE, True)  # nothing left behind


def _template() -> Path:
    """A migrated database with the accounts opened, made once and copied for each run."""
    path = TEMPLATE / "template.sqlite"
    if not path.exists():
        url = f"sqlite:///{TEMPLATE}/building.sqlite"
        upgrade(url)
        with session_scope(url) as session:
            for code in SUBSCRIBERS:
                kind, owner, currency = code.split(":")
                open_account(session, kind, owner, currency)
            for currency, payees in PAYEES.items():
                for code in payees:
                    open_account(session, "payee", code.split(":")[1], currency)
                open_account(session, "holds", None, currency)
                open_account(session, "clearing", None, currency)
        dispose_engines()
        (TEMPLATE / "building.sqlite").rename(path)
    return path


@dataclass
class Held:
    """The model of one hold."""

    subscriber: str
    currency: str
    amount: int
    expires_at: datetime
    status: str = "pending"


@dataclass
class Done:
    """A call that succeeded, to replay: it must return the same entry and change nothing."""

    call: Callable[..., LedgerEntry]
    kwargs: dict[str, Any]
    entry_id: int


amounts = st.integers(min_value=1, max_value=3000)


class LedgerMachine(RuleBasedStateMachine):
    """Random ledger calls against a model of every balance and hold."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(dir=TEMPLATE))
        shutil.copy(_template(), self.dir / "ledger.sqlite")
        self.url = f"sqlite:///{self.dir}/ledger.sqlite"
        self.now = START
        self.balances: dict[str, int] = {}
        self.holds: dict[str, Held] = {}
        self.done: list[Done] = []
        self.serial = 0

    def teardown(self) -> None:
        dispose_engines()
        shutil.rmtree(self.dir, ignore_errors=True)

    def key(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}:{self.serial}:{uuid.uuid4().hex[:6]}"

    def move(self, legs: list[tuple[str, int]]) -> None:
        for code, amount in legs:
            self.balances[code] = self.balances.get(code, 0) + amount

    def available(self, subscriber: str) -> int:
        return -self.balances.get(subscriber, 0)

    def run(self, call: Callable[..., LedgerEntry], **kwargs: Any) -> LedgerEntry:
        entry = in_transaction(self.url, call, **kwargs)
        self.done.append(Done(call, kwargs, entry.id))
        return entry

    @initialize(subscriber=st.sampled_from(sorted(SUBSCRIBERS)), amount=amounts)
    def start_with_a_grant(self, subscriber: str, amount: int) -> None:
        self.grant(subscriber, amount)

    @rule(subscriber=st.sampled_from(sorted(SUBSCRIBERS)), amount=amounts)
    def grant(self, subscriber: str, amount: int) -> None:
        currency = SUBSCRIBERS[subscriber]
        legs = [(f"clearing:{currency}", amount), (subscriber, -amount)]
        self.run(
            transfer,
            key=self.key("limit"),
            kind="limit",
            currency=currency,
            postings=legs,
            actor="noc",
        )
        self.move(legs)

    @rule(subscriber=st.sampled_from(sorted(SUBSCRIBERS)), amount=amounts, data=st.data())
    def spend(self, subscriber: str, amount: int, data: st.DataObject) -> None:
        currency = SUBSCRIBERS[subscriber]
        payee = data.draw(st.sampled_from(PAYEES[currency]))
        legs = [(subscriber, amount), (payee, -amount)]
        kwargs: dict[str, Any] = {
            "key": self.key("capture"),
            "kind": "capture",
            "currency": currency,
            "postings": legs,
            "actor": "t",
        }
        if amount > self.available(subscriber):
            with pytest.raises(InsufficientFunds):
                in_transaction(self.url, transfer, **kwargs)
            return
        self.run(transfer, **kwargs)
        self.move(legs)

    @rule(amount=amounts)
    def mix_currencies(self, amount: int) -> None:
        legs = [("subscriber:sub1:EUR", amount), ("payee:isp-a:JPY", -amount)]
        with pytest.raises(LedgerInvalid):
            in_transaction(
                self.url,
                transfer,
                key=self.key("mixed"),
                kind="capture",
                currency="EUR",
                postings=legs,
                actor="t",
            )

    @rule(subscriber=st.sampled_from(sorted(SUBSCRIBERS)), amount=amounts, ttl=st.integers(1, 90))
    def authorise(self, subscriber: str, amount: int, ttl: int) -> None:
        currency = SUBSCRIBERS[subscriber]
        key = self.key("auth")
        expires_at = self.now + timedelta(minutes=ttl)
        kwargs: dict[str, Any] = {
            "key": key,
            "subscriber_account": subscriber,
            "amount": amount,
            "currency": currency,
            "expires_at": expires_at,
            "actor": "t",
            "at": self.now,
        }
        if amount > self.available(subscriber):
            with pytest.raises(InsufficientFunds):
                in_transaction(self.url, hold, **kwargs)
            return
        self.run(hold, **kwargs)
        self.move([(subscriber, amount), (f"holds:{currency}", -amount)])
        self.holds[key] = Held(subscriber, currency, amount, expires_at)

    @precondition(lambda self: bool(self.holds))
    @rule(data=st.data(), part=st.one_of(st.none(), st.integers(1, 3500)))
    def capture(self, data: st.DataObject, part: int | None) -> None:
        hold_key = data.draw(st.sampled_from(sorted(self.holds)))
        held = self.holds[hold_key]
        payee = data.draw(st.sampled_from(PAYEES[held.currency]))
        kwargs: dict[str, Any] = {
            "key": self.key("post"),
            "hold_key": hold_key,
            "payee_account": payee,
            "amount": part,
            "actor": "t",
            "now": self.now,
        }
        expected: type[Exception] | None = None
        if part is not None and part > held.amount:
            expected = LedgerInvalid
        elif held.status != "pending" or held.expires_at <= self.now:
            expected = HoldResolved
        if expected is not None:
            with pytest.raises(expected):
                in_transaction(self.url, post_hold, **kwargs)
            return
        posted = held.amount if part is None else part
        entry = self.run(post_hold, **kwargs)
        assert (entry.amount, entry.kind) == (posted, "post")
        self.move([(f"holds:{held.currency}", held.amount), (payee, -posted)])
        self.move([(held.subscriber, posted - held.amount)])
        held.status = "posted"

    @precondition(lambda self: bool(self.holds))
    @rule(data=st.data())
    def void(self, data: st.DataObject) -> None:
        hold_key = data.draw(st.sampled_from(sorted(self.holds)))
        held = self.holds[hold_key]
        kwargs: dict[str, Any] = {"key": self.key("void"), "hold_key": hold_key, "actor": "t"}
        if held.status != "pending":
            with pytest.raises(HoldResolved):
                in_transaction(self.url, void_hold, **kwargs)
            return
        self.run(void_hold, **kwargs)
        self.move([(f"holds:{held.currency}", held.amount), (held.subscriber, -held.amount)])
        held.status = "voided"

    @rule(minutes=st.integers(1, 60))
    def time_passes(self, minutes: int) -> None:
        self.now += timedelta(minutes=minutes)

    @rule()
    def expire(self) -> None:
        due = [
            k for k, h in self.holds.items() if h.status == "pending" and h.expires_at <= self.now
        ]
        assert in_transaction(self.url, expire_holds, self.now) == sorted(
            due, key=lambda k: int(k.split(":")[1])
        )
        for key in due:
            held = self.holds[key]
            self.move([(f"holds:{held.currency}", held.amount), (held.subscriber, -held.amount)])
            held.status = "expired"

    @precondition(lambda self: bool(self.done))
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        done = data.draw(st.sampled_from(self.done))
        before = self.snapshot()
        assert in_transaction(self.url, done.call, **done.kwargs).id == done.entry_id
        assert self.snapshot() == before

    @precondition(lambda self: bool(self.done))
    @rule(data=st.data())
    def reuse_a_key(self, data: st.DataObject) -> None:
        done = data.draw(st.sampled_from(self.done))
        before = self.snapshot()
        legs = [("clearing:EUR", 1), ("subscriber:sub2:EUR", -1)]
        with pytest.raises(LedgerKeyConflict):
            in_transaction(
                self.url,
                transfer,
                key=done.kwargs["key"],
                kind="adjustment",
                currency="EUR",
                postings=legs,
                actor="t",
            )
        assert self.snapshot() == before

    def snapshot(self) -> tuple[int, int, tuple[tuple[str, int, int], ...]]:
        with session_scope(self.url) as session:
            entries = session.scalar(select(func.count(LedgerEntry.id))) or 0
            postings = session.scalar(select(func.count(LedgerPosting.id))) or 0
            rows = session.execute(
                select(LedgerAccount.code, LedgerAccount.debits, LedgerAccount.credits).order_by(
                    LedgerAccount.code
                )
            ).all()
        return entries, postings, tuple((c, d, k) for c, d, k in rows)

    @invariant()
    def the_ledger_holds_together(self) -> None:
        with session_scope(self.url) as session:
            assert unbalanced_entries(session) == []
            assert check_balances(session) == []
            per_currency = session.execute(
                select(LedgerPosting.currency, func.sum(LedgerPosting.amount)).group_by(
                    LedgerPosting.currency
                )
            ).all()
            assert all(total == 0 for _, total in per_currency)
            accounts = session.scalars(select(LedgerAccount)).all()
            for account in accounts:
                assert balance(session, account.code) == self.balances.get(account.code, 0)
                if account.floor == "debits_must_not_exceed_credits":
                    assert account.debits <= account.credits
            holds = {
                e.id: e
                for e in session.scalars(select(LedgerEntry).where(LedgerEntry.kind == "hold"))
            }
            resolutions = session.execute(
                select(LedgerEntry.linked_to, LedgerEntry.kind, LedgerEntry.amount).where(
                    LedgerEntry.linked_to.is_not(None)
                )
            ).all()
            linked = [row[0] for row in resolutions]
            assert len(linked) == len(set(linked))  # no hold resolved twice
            resolved = {"post": "posted", "void": "voided", "expire": "expired"}
            for hold_id, kind, amount in resolutions:
                assert hold_id is not None
                assert amount <= holds[hold_id].amount  # posted (or released) <= held
                assert holds[hold_id].status == resolved[kind]
            assert {e.key: e.status for e in holds.values()} == {
                k: h.status for k, h in self.holds.items()
            }


LedgerMachine.TestCase.settings = settings(max_examples=500, stateful_step_count=20, deadline=None)
test_the_ledger_against_its_model = LedgerMachine.TestCase
