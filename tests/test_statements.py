"""Statements: canonical JSON stored with its SHA-256, CSV and HTML rendered from it, the
same bytes every time; formula-safe CSV, escaped HTML."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_settlement import NOV, at, base
from vpop.billing.service import (
    Payee,
    Settlement,
    StatementFormatInvalid,
    render_statement,
    run_settlement,
    statement_sha,
)
from vpop.core.db import get_engine, session_scope
from vpop.core.migrate import upgrade


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    database = f"sqlite:///{tmp_path}/statements.sqlite"
    upgrade(database)
    yield database
    get_engine(database).dispose()


def settled(url: str) -> int:
    with session_scope(url) as session:
        shop = base(session)
        payee = session.get(Payee, "shop1")
        assert payee is not None
        payee.name = "<b>Shop</b> & Söhne"
        shop.captured("a", "shop1", 1000, at(3))
        shop.refunded("a", 400, at(4))
        (settlement,) = run_settlement(
            session, NOV, payee="shop1", now=at(1, 0, month=12), actor="noc"
        )
        return settlement.id


def test_json_is_canonical_and_hashed(url: str) -> None:
    settlement_id = settled(url)
    with session_scope(url) as session:
        settlement = session.get(Settlement, settlement_id)
        assert settlement is not None
        data = render_statement(settlement, "json")
        text = data.decode("utf-8")
        document = json.loads(text)
        canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert canonical == text
        assert "Söhne" in text  # UTF-8 kept, not escaped
        assert hashlib.sha256(data).hexdigest() == settlement.statement_sha256
        assert statement_sha(settlement, "json") == settlement.statement_sha256
        assert "created_at" not in text  # no generation time inside
        assert document["totals"]["net_minor"] == 1000 - 400 - 10
        assert sum(line[3] for line in document["lines"]) == document["totals"]["net_minor"]


def test_csv_and_html_render_the_same_bytes_every_time(url: str) -> None:
    settlement_id = settled(url)
    with session_scope(url) as session:
        settlement = session.get(Settlement, settlement_id)
        assert settlement is not None
        csv_bytes = render_statement(settlement, "csv")
        html_bytes = render_statement(settlement, "html")
        assert render_statement(settlement, "csv") == csv_bytes
        assert render_statement(settlement, "html") == html_bytes
    rows = csv_bytes.decode().splitlines()
    assert rows[0].startswith("line_no,kind,at,amount_minor,adjustment,event_id,payment_id")
    assert [row.split(",")[1] for row in rows[1:]] == ["capture", "fee", "refund"]
    assert [int(row.split(",")[3]) for row in rows[1:]] == [1000, -10, -400]
    page = html_bytes.decode()
    assert "&lt;b&gt;Shop&lt;/b&gt; &amp; Söhne" in page and "<b>Shop" not in page
    assert "default-src 'none'" in page and "<script" not in page


def test_csv_cells_a_spreadsheet_would_run_get_a_quote() -> None:
    document = {
        "columns": ["line_no", "kind", "description"],
        "lines": [[1, "carried", "=HYPERLINK(\"http://x\")"], [2, "lease", "@SUM(A1)"]],
        "payee": {}, "totals": {},
    }  # fmt: skip
    settlement = Settlement(statement_json=json.dumps(document))
    rows = render_statement(settlement, "csv").decode().splitlines()
    assert rows[1].endswith(',"\'=HYPERLINK(""http://x"")"')
    assert rows[2] == "2,lease,'@SUM(A1)"


def test_unknown_format_is_refused() -> None:
    with pytest.raises(StatementFormatInvalid, match="pdf"):
        render_statement(Settlement(statement_json="{}"), "pdf")
