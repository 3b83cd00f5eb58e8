"""The double-entry ledger: balanced transfers, idempotency keys, floors, two-phase holds, and
what the database itself refuses; on SQLite and (the key rules) on a real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from tests.pg import PG_BIN, postgres_cluster
from vpop.billing.service import (
    BillingError,
    HoldResolved,
    InsufficientFunds,
    LedgerEntry,
    LedgerInvalid,
    LedgerKeyConflict,
    LedgerPosting,
    UnknownAccount,
    UnknownHold,
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
from vpop.core.db import get_engine, session_scope
from vpop.core.errors import BadInput, NotFound
from vpop.core.migrate import upgrade

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=7)
SUB, PAYEE, CLEARING, HOLDS = "subscriber:sub1:EUR", "payee:isp-b:EUR", "clearing:EUR", "holds:EUR"


@pytest.fixture(scope="module")
def pg_server() -> Iterator[str]:
    """One throwaway PostgreSQL cluster for this module."""
    if not PG_BIN.exists():
        pytest.skip("PostgreSQL 15 is not installed (apt-get install postgresql)")
    with postgres_cluster("ledger") as server:
        yield server


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/ledger.sqlite"


def _postgres(server: str) -> str:
    name = f"ledger_{uuid.uuid4().hex[:10]}"
    with get_engine(server).connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    return server.replace("/postgres?", f"/{name}?")


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    """A migrated SQLite database."""
    database = _sqlite(tmp_path)
    upgrade(database)
    yield database
    get_engine(database).dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated database on SQLite, then on PostgreSQL (a fresh database in the cluster)."""
    if request.param == "sqlite":
        database = _sqlite(tmp_path)
    else:
        database = _postgres(request.getfixturevalue("pg_server"))
    upgrade(database)
    yield database
    get_engine(database).dispose()


def funded(url: str, limit: int = 5000) -> None:
    """sub1 may spend ``limit`` (granted from clearing); isp-b is a payee."""
    with session_scope(url) as session:
        open_account(session, "subscriber", "sub1", "EUR")
        open_account(session, "payee", "isp-b", "EUR")
        open_account(session, "clearing", None, "EUR")
        open_account(session, "revenue", None, "EUR")
        open_account(session, "holds", None, "EUR")
        transfer(
            session,
            key="limit:sub1",
            kind="limit",
            currency="EUR",
            postings=[(CLEARING, limit), (SUB, -limit)],
            actor="noc",
        )


def balances(url: str, *codes: str) -> list[int]:
    """The balances of ``codes``, read in one transaction."""
    with session_scope(url) as session:
        return [balance(session, code) for code in codes]


def counts(url: str) -> tuple[int, int]:
    """How many entries and postings the database holds."""
    with session_scope(url) as session:
        entries = session.scalar(select(func.count(LedgerEntry.id)))
        postings = session.scalar(select(func.count(LedgerPosting.id)))
    return int(entries or 0), int(postings or 0)


def consistent(url: str) -> None:
    """No unbalanced entry, and every cached balance equals its postings."""
    with session_scope(url) as session:
        assert unbalanced_entries(session) == []
        assert check_balances(session) == []


def spend(url: str, key: str, amount: int, kind: str = "capture") -> LedgerEntry:
    """sub1 pays isp-b ``amount`` directly (one transaction)."""
    return in_transaction(
        url,
        transfer,
        key=key,
        kind=kind,
        currency="EUR",
        postings=[(SUB, amount), (PAYEE, -amount)],
        actor="test",
    )


def test_accounts_are_opened_once_by_code_and_validated(url: str) -> None:
    with session_scope(url) as session:
        first = open_account(session, "subscriber", "sub1", "EUR")
        again = open_account(session, "subscriber", "sub1", "EUR")
        holds = open_account(session, "holds", None, "EUR")
        assert (first.id, first.code, first.floor) == (
            again.id,
            SUB,
            "debits_must_not_exceed_credits",
        )
        assert holds.code == HOLDS and balance(session, SUB) == 0
        with pytest.raises(LedgerKeyConflict):
            open_account(session, "subscriber", "sub1", "EUR", floor="none")
    for args in [
        ("wallet", "sub1", "EUR"),
        ("subscriber", None, "EUR"),
        ("revenue", "sub1", "EUR"),
        ("payee", "isp b", "EUR"),
        ("payee", "isp-b", "eur"),
        ("payee", "isp-b", "EURO"),
    ]:
        with session_scope(url) as session, pytest.raises(LedgerInvalid) as err:
            open_account(session, *args)
        assert isinstance(err.value, BadInput) and err.value.code == "VPOP-400-LEDGER"
    with session_scope(url) as session, pytest.raises(UnknownAccount) as missing:
        balance(session, "payee:nobody:EUR")
    assert isinstance(missing.value, NotFound) and missing.value.code == "VPOP-404-ACCOUNT"


def test_a_transfer_moves_money_and_a_replay_changes_nothing(any_url: str) -> None:
    funded(any_url)
    first = spend(any_url, "capture:1", 1200)
    before = counts(any_url)
    again = spend(any_url, "capture:1", 1200)
    assert again.id == first.id and counts(any_url) == before
    assert balances(any_url, SUB, PAYEE, CLEARING) == [-3800, -1200, 5000]
    with session_scope(any_url) as session:
        assert postings_of(session, "capture:1") == [(PAYEE, -1200), (SUB, 1200)]
    with pytest.raises(LedgerKeyConflict) as err:
        spend(any_url, "capture:1", 1300)
    assert err.value.code == "VPOP-409-LEDGER-KEY" and err.value.status == 409
    with pytest.raises(LedgerKeyConflict):
        spend(any_url, "capture:1", 1200, kind="fee")
    assert counts(any_url) == before
    consistent(any_url)


@pytest.mark.parametrize(
    ("postings", "error"),
    [
        ([], LedgerInvalid),
        ([(SUB, 100)], LedgerInvalid),
        ([(SUB, 100), (PAYEE, -99)], LedgerInvalid),
        ([(SUB, 100), (PAYEE, -100), (CLEARING, 0)], LedgerInvalid),
        ([(SUB, 100), (SUB, -100)], LedgerInvalid),
        ([(SUB, 100), ("payee:isp-b:USD", -100)], LedgerInvalid),
        ([(SUB, 2**63), (PAYEE, -(2**63))], LedgerInvalid),
        ([(SUB, 100), ("payee:nobody:EUR", -100)], UnknownAccount),
    ],
    ids=["empty", "one", "unbalanced", "zero", "same-account", "mixed", "too-large", "unknown"],
)
def test_a_bad_transfer_is_refused_and_writes_nothing(
    url: str, postings: list[tuple[str, int]], error: type[BillingError]
) -> None:
    funded(url)
    with session_scope(url) as session:
        open_account(session, "payee", "isp-b", "USD")
    before = counts(url)
    with pytest.raises(error):
        in_transaction(
            url,
            transfer,
            key="bad",
            kind="capture",
            currency="EUR",
            postings=postings,
            actor="test",
        )
    assert counts(url) == before
    assert balances(url, SUB, PAYEE) == [-5000, 0]


@pytest.mark.parametrize("kind", ["hold", "post", "void", "expire", "gift"])
def test_hold_kinds_and_unknown_kinds_are_not_plain_transfers(url: str, kind: str) -> None:
    funded(url)
    with session_scope(url) as session, pytest.raises(LedgerInvalid):
        transfer(
            session,
            key="k",
            kind=kind,
            currency="EUR",
            postings=[(SUB, 1), (PAYEE, -1)],
            actor="test",
        )


def test_a_transfer_beyond_the_floor_is_refused_and_writes_nothing(any_url: str) -> None:
    funded(any_url, limit=1000)
    spend(any_url, "capture:1", 600)
    before = counts(any_url)
    with pytest.raises(InsufficientFunds) as err:
        spend(any_url, "capture:2", 401)
    assert err.value.code == "VPOP-422-FUNDS" and err.value.status == 422
    assert "subscriber:sub1:EUR" in err.value.message
    assert counts(any_url) == before and balances(any_url, SUB) == [-400]
    spend(any_url, "capture:2", 400)  # the key was not used up by the refusal
    assert balances(any_url, SUB, PAYEE) == [0, -1000]
    consistent(any_url)


def hold_in(url: str, key: str, amount: int, expires_at: datetime = LATER) -> LedgerEntry:
    """sub1's hold of ``amount`` (one transaction)."""
    return in_transaction(
        url,
        hold,
        key=key,
        subscriber_account=SUB,
        amount=amount,
        currency="EUR",
        expires_at=expires_at,
        actor="test",
        at=NOW,
    )


def post_in(url: str, key: str, hold_key: str, amount: int | None = None) -> LedgerEntry:
    """Post (part of) a hold to isp-b at NOW (one transaction)."""
    return in_transaction(
        url,
        post_hold,
        key=key,
        hold_key=hold_key,
        payee_account=PAYEE,
        amount=amount,
        actor="test",
        now=NOW,
    )


def status(url: str, key: str) -> str | None:
    """The status of the entry ``key``."""
    with session_scope(url) as session:
        return session.scalars(select(LedgerEntry.status).where(LedgerEntry.key == key)).one()


def test_a_partial_post_pays_the_payee_and_releases_the_rest_once(any_url: str) -> None:
    funded(any_url)
    held = hold_in(any_url, "auth:1", 1500)
    assert held.status == "pending" and held.expires_at == LATER
    assert balances(any_url, SUB, HOLDS, PAYEE) == [-3500, -1500, 0]
    posted = post_in(any_url, "capture:1", "auth:1", 1000)
    assert (posted.kind, posted.amount, posted.linked_to) == ("post", 1000, held.id)
    assert balances(any_url, SUB, HOLDS, PAYEE) == [-4000, 0, -1000]
    assert status(any_url, "auth:1") == "posted"
    assert post_in(any_url, "capture:1", "auth:1", 1000).id == posted.id  # a replay
    before = counts(any_url)
    with pytest.raises(HoldResolved) as err:
        post_in(any_url, "capture:2", "auth:1", 500)
    assert err.value.code == "VPOP-409-HOLD"
    with pytest.raises(HoldResolved):
        in_transaction(any_url, void_hold, key="void:1", hold_key="auth:1", actor="test")
    with pytest.raises(LedgerKeyConflict):
        post_in(any_url, "capture:1", "auth:1", 900)
    assert counts(any_url) == before
    consistent(any_url)


def test_a_post_takes_at_most_the_held_amount(url: str) -> None:
    funded(url)
    hold_in(url, "auth:1", 1500)
    for amount in (1501, 0, -5):
        with pytest.raises(LedgerInvalid):
            post_in(url, f"capture:{amount}", "auth:1", amount)
    with pytest.raises(UnknownHold):
        post_in(url, "capture:x", "auth:none")
    with pytest.raises(UnknownHold):
        post_in(url, "capture:y", "limit:sub1")  # a transfer is not a hold
    assert post_in(url, "capture:1", "auth:1").amount == 1500  # no amount: all of it
    assert balances(url, SUB, HOLDS, PAYEE) == [-3500, 0, -1500]


def test_a_hold_beyond_the_limit_holds_nothing(url: str) -> None:
    funded(url, limit=1000)
    before = counts(url)
    with pytest.raises(InsufficientFunds):
        hold_in(url, "auth:1", 1001)
    assert counts(url) == before and balances(url, SUB, HOLDS) == [-1000, 0]


def test_void_releases_everything_and_expiry_releases_what_is_due(any_url: str) -> None:
    funded(any_url)
    hold_in(any_url, "auth:1", 1000)
    hold_in(any_url, "auth:2", 700, expires_at=NOW + timedelta(hours=1))
    hold_in(any_url, "auth:3", 300, expires_at=NOW + timedelta(hours=2))
    voided = in_transaction(any_url, void_hold, key="void:1", hold_key="auth:1", actor="t")
    assert (voided.kind, voided.amount, status(any_url, "auth:1")) == ("void", 1000, "voided")
    assert balances(any_url, SUB, HOLDS) == [-4000, -1000]
    with pytest.raises(HoldResolved):  # past its expiry: may no longer be posted
        in_transaction(
            any_url,
            post_hold,
            key="capture:2",
            hold_key="auth:2",
            payee_account=PAYEE,
            actor="t",
            now=NOW + timedelta(hours=1),
        )
    at = NOW + timedelta(hours=1, minutes=30)
    assert in_transaction(any_url, expire_holds, at) == ["auth:2"]
    assert in_transaction(any_url, expire_holds, at) == []
    assert status(any_url, "auth:2") == "expired" and status(any_url, "auth:3") == "pending"
    assert balances(any_url, SUB, HOLDS) == [-4700, -300]
    assert in_transaction(any_url, expire_holds, LATER) == ["auth:3"]
    assert balances(any_url, SUB, HOLDS, PAYEE) == [-5000, 0, 0]
    consistent(any_url)


def test_many_threads_posting_one_hold_post_it_once(any_url: str) -> None:
    funded(any_url)
    hold_in(any_url, "auth:1", 2000)

    def attempt(n: int) -> str:
        try:
            post_in(any_url, f"capture:{n}", "auth:1", 100 + n)
        except HoldResolved:
            return "resolved"
        return "posted"

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(attempt, range(20)))
    assert outcomes.count("posted") == 1 and outcomes.count("resolved") == 19
    winner = 100 + outcomes.index("posted")
    with session_scope(any_url) as session:
        resolutions = session.scalars(
            select(LedgerEntry.amount).where(LedgerEntry.kind == "post")
        ).all()
    assert resolutions == [winner]
    assert balances(any_url, SUB, HOLDS, PAYEE) == [-5000 + winner, 0, -winner]
    consistent(any_url)


def test_concurrent_spending_never_overdraws(any_url: str) -> None:
    funded(any_url, limit=5000)

    def attempt(n: int) -> bool:
        try:
            spend(any_url, f"capture:{n}", 1000)
        except InsufficientFunds:
            return False
        return True

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(attempt, range(20)))
    assert outcomes.count(True) == 5
    assert balances(any_url, SUB, PAYEE) == [0, -5000]
    consistent(any_url)


RawRun = Callable[[Session], object]


def refused(url: str, statement: str) -> None:
    """``statement`` (raw SQL, past the code) fails and changes nothing."""
    before = counts(url)
    with pytest.raises((IntegrityError, DBAPIError)), session_scope(url) as session:
        session.execute(text(statement))
    assert counts(url) == before


def test_the_database_refuses_what_the_code_never_writes(any_url: str) -> None:
    funded(any_url)
    hold_in(any_url, "auth:1", 1000)
    post_in(any_url, "capture:1", "auth:1", 400)
    with session_scope(any_url) as session:
        entry, hold_id = (
            session.scalars(select(LedgerEntry.id).where(LedgerEntry.key == key)).one()
            for key in ("capture:1", "auth:1")
        )
        account = session.scalars(
            select(LedgerPosting.account_id).where(LedgerPosting.entry_id == entry)
        ).first()
    refused(any_url, "UPDATE ledger_postings SET amount = amount + 1")
    refused(any_url, "DELETE FROM ledger_postings")
    refused(any_url, f"DELETE FROM ledger_entries WHERE id = {entry}")
    refused(any_url, f"UPDATE ledger_entries SET amount = 5 WHERE id = {entry}")
    refused(any_url, f"UPDATE ledger_entries SET status = 'pending' WHERE id = {hold_id}")
    refused(any_url, "UPDATE ledger_accounts SET debits = credits + 1 WHERE code = 'holds:EUR'")
    refused(any_url, f"UPDATE ledger_accounts SET debits = -1 WHERE id = {account}")
    insert = (
        "INSERT INTO ledger_entries (key, kind, currency, amount, at, reference, linked_to,"
        " status, created_by) VALUES ('{key}', '{kind}', '{cur}', {amount}, '2026-12-01',"
        " '', {linked}, {status}, 'raw')"
    )
    refused(
        any_url,
        insert.format(
            key="capture:1", kind="fee", cur="EUR", amount=1, linked="NULL", status="NULL"
        ),
    )
    refused(
        any_url,
        insert.format(key="v", kind="void", cur="EUR", amount=1, linked=hold_id, status="NULL"),
    )
    refused(
        any_url,
        insert.format(key="e", kind="fee", cur="EURO", amount=1, linked="NULL", status="NULL"),
    )
    refused(
        any_url,
        insert.format(key="z", kind="fee", cur="EUR", amount=0, linked="NULL", status="NULL"),
    )
    refused(
        any_url,
        insert.format(key="s", kind="fee", cur="EUR", amount=1, linked="NULL", status="'pending'"),
    )
    refused(
        any_url,
        "INSERT INTO ledger_postings (entry_id, account_id, currency, amount)"
        f" VALUES ({entry}, {account}, 'USD', 0)",
    )
    consistent(any_url)


def test_postgresql_refuses_an_unbalanced_entry_at_commit(pg_server: str) -> None:
    url = _postgres(pg_server)
    upgrade(url)
    funded(url)
    with session_scope(url) as session:
        sub, payee = (
            session.scalars(text(f"SELECT id FROM ledger_accounts WHERE code = '{c}'")).one()
            for c in (SUB, PAYEE)
        )
    before = counts(url)
    with pytest.raises(DBAPIError, match="unbalanced"), session_scope(url) as session:
        session.execute(
            text(
                "WITH e AS (INSERT INTO ledger_entries (key, kind, currency, amount, at,"
                " reference, created_by) VALUES ('raw', 'fee', 'EUR', 5, now(), '', 'raw')"
                " RETURNING id) INSERT INTO ledger_postings (entry_id, account_id, currency,"
                f" amount) SELECT id, {sub}, 'EUR', 5 FROM e UNION ALL"
                f" SELECT id, {payee}, 'EUR', -4 FROM e"
            )
        )
    assert counts(url) == before
    get_engine(url).dispose()
