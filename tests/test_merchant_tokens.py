"""Merchant tokens: made only for a registered merchant, scoped to that merchant's ISP, and
known as such when presented (the API refuses them outside the payments routes)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from vpop.billing.service import Payee
from vpop.catalogue.models import Isp
from vpop.core.audit import AuditEntry
from vpop.core.db import dispose_engines, session_scope
from vpop.core.errors import BadInput, NotFound
from vpop.core.migrate import upgrade
from vpop.identity.service import create_token, lookup_token, token_view


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    """A migrated database with isp-a and isp-b, isp-b's payee and merchant shop-b under it."""
    database = f"sqlite:///{tmp_path}/merchants.sqlite"
    upgrade(database)
    with session_scope(database) as session:
        session.add_all([Isp(id="isp-a", name="ISP A"), Isp(id="isp-b", name="ISP B")])
        session.flush()
        session.add_all(
            [
                Payee(id="isp-b", kind="isp", isp_id="isp-b", name="ISP B"),
                Payee(id="shop-b", kind="merchant", isp_id="isp-b", name="Shop B"),
            ]
        )
    yield database
    dispose_engines()


def test_a_merchant_token_is_scoped_to_its_merchant_and_the_merchants_isp(url: str) -> None:
    with session_scope(url) as session:
        clear = create_token(session, "merchant", name="shop", merchant="shop-b", actor="t")
    with session_scope(url) as session:
        token = lookup_token(session, clear)
        assert token is not None
        assert (token.role, token.isp_id, token.merchant_id) == ("merchant", "isp-b", "shop-b")
        assert token_view(token)["merchant"] == "shop-b"
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "token.create")).one()
        assert entry.details["merchant"] == "shop-b"


@pytest.mark.parametrize(
    ("role", "isp", "merchant", "error", "words"),
    [
        ("merchant", None, None, BadInput, "needs the merchant"),
        ("merchant", None, "nobody", NotFound, "unknown merchant"),
        ("merchant", None, "isp-b", NotFound, "unknown merchant"),  # an ISP is no merchant
        ("merchant", "isp-a", "shop-b", BadInput, "registered under 'isp-b'"),
        ("isp", "isp-b", "shop-b", BadInput, "does not act for a merchant"),
        ("noc", None, "shop-b", BadInput, "does not act for a merchant"),
    ],
)
def test_a_token_that_does_not_fit_its_merchant_is_refused_and_nothing_is_made(
    url: str,
    role: str,
    isp: str | None,
    merchant: str | None,
    error: type[Exception],
    words: str,
) -> None:
    with pytest.raises(error, match=words), session_scope(url) as session:
        create_token(session, role, isp, merchant=merchant, actor="t")
    with session_scope(url) as session:
        assert session.scalars(select(AuditEntry)).all() == []
