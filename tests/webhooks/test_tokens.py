"""vpop.tokens: clear tokens are shown once; only their SHA-256 is stored."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select

from vpop.core.audit import AuditEntry
from vpop.core.db import session_scope
from vpop.core.errors import BadInput, NotFound
from vpop.core.time import utcnow
from vpop.identity.models import ApiToken
from vpop.identity.tokens import create_token, lookup_token


def test_only_the_hash_is_stored(database_url: str) -> None:
    with session_scope(database_url) as session:
        clear = create_token(session, "isp", "isp-b", name="beta ops", actor="test")
    assert clear.startswith("vpop_") and len(clear) == 5 + 43
    with session_scope(database_url) as session:
        row = session.scalars(select(ApiToken)).one()
        assert row.token_hash == hashlib.sha256(clear.encode()).hexdigest()
        assert (row.role, row.isp_id, row.name) == ("isp", "isp-b", "beta ops")
        assert clear not in repr(session.scalars(select(AuditEntry)).one().details)
        found = lookup_token(session, clear)
        assert found is not None and found.id == row.id


def test_tokens_are_unique(database_url: str) -> None:
    with session_scope(database_url) as session:
        assert len({create_token(session, "noc") for _ in range(20)}) == 20


@pytest.mark.parametrize(
    "clear",
    ["", "vpop_", "vpop_short", "x" * 48, "vpop_" + "!" * 43, "vpop_" + "a" * 43 + "\n"],
    ids=["empty", "prefix-only", "short", "no-prefix", "bad-characters", "newline"],
)
def test_lookup_of_unknown_or_malformed_tokens_is_none(
    database_url: str, tokens: dict[str, str], clear: str
) -> None:
    with session_scope(database_url) as session:
        assert lookup_token(session, clear) is None


def test_a_revoked_token_is_not_found(database_url: str) -> None:
    with session_scope(database_url) as session:
        clear = create_token(session, "admin")
    with session_scope(database_url) as session:
        token = lookup_token(session, clear)
        assert token is not None
        token.revoked_at = utcnow()
    with session_scope(database_url) as session:
        assert lookup_token(session, clear) is None


@pytest.mark.parametrize(
    ("role", "isp", "error", "code"),
    [
        ("root", None, BadInput, "VPOP-400-ROLE"),
        ("isp", None, BadInput, "VPOP-400-ROLE"),
        ("admin", "isp-a", BadInput, "VPOP-400-ROLE"),
        ("isp", "isp-z", NotFound, "VPOP-404-ISP"),
    ],
    ids=["unknown-role", "isp-without-isp", "admin-with-isp", "unknown-isp"],
)
def test_bad_token_requests_are_refused(
    database_url: str, role: str, isp: str | None, error: type[Exception], code: str
) -> None:
    with pytest.raises(error) as err, session_scope(database_url) as session:
        create_token(session, role, isp)
    assert getattr(err.value, "code", None) == code
    with session_scope(database_url) as session:
        assert session.scalars(select(ApiToken)).all() == []
