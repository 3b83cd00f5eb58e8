"""A settlement's statement as JSON (the stored bytes), CSV or a self-contained HTML page.

Every format is a pure function of the stored canonical JSON (``Settlement.statement_json``),
so a statement renders to the same bytes every time: the JSON is the stored text itself, and
its SHA-256 is ``statement_sha256``. CSV cells that a spreadsheet would run as a formula get
a leading ``'``; the HTML page escapes every value and loads nothing from outside.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
from typing import Any

from vpop.billing.errors import BillingError
from vpop.billing.payment_models import Settlement
from vpop.core.errors import BadInput
from vpop.core.time import iso
from vpop.reports.service import csv_cell

#: The formats a statement renders to.
STATEMENT_FORMATS = ("json", "csv", "html")
_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}"
    "table{border-collapse:collapse;font-size:.9rem;margin-bottom:1rem}"
    "th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}"
    "th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}"
)


class StatementFormatInvalid(BillingError, BadInput):
    """A statement format that is not json, csv or html."""

    code = "VPOP-400-STATEMENT-FORMAT"
    status = 422


def _csv_cell(value: Any) -> Any:
    """The reports' formula-safe cell (:func:`vpop.reports.service.csv_cell`); booleans as
    ``true``/``false``, as in the JSON statement."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return csv_cell(value)


def _csv(document: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(document["columns"])
    for line in document["lines"]:
        writer.writerow([_csv_cell(value) for value in line])
    return buffer.getvalue()


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return f"<td>{'yes' if value else ''}</td>"
    if isinstance(value, int):
        return f'<td class="num">{value}</td>'
    return f"<td>{html.escape('' if value is None else str(value))}</td>"


def _html(document: dict[str, Any]) -> str:
    esc = html.escape
    payee = document["payee"]
    title = (
        f"Settlement {payee['id']} {document['currency']} {document['period']}"
        f" #{document['seq']} ({document['kind']})"
    )
    facts = [
        ("payee", f"{payee['name']} ({payee['id']}, {payee['kind']} of {payee['isp']})"),
        ("fees", f"{payee['fee_bp']} bp + {payee['fee_fixed_minor']} per captured payment"),
        ("cutoff", document["cutoff"]),
        *sorted(document["totals"].items()),
    ]
    head = "".join(f"<tr><th>{esc(str(name))}</th>{_cell(value)}</tr>" for name, value in facts)
    columns = "".join(f"<th>{esc(name)}</th>" for name in document["columns"])
    rows = "\n".join(
        "<tr>" + "".join(_cell(value) for value in line) + "</tr>" for line in document["lines"]
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'\">\n"
        f"<title>{esc(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{esc(title)}</h1>\n<table>{head}</table>\n"
        f"<table>\n<tr>{columns}</tr>\n{rows}\n</table>\n</body>\n</html>\n"
    )


def render_statement(settlement: Settlement, fmt: str) -> bytes:
    """The settlement's statement as ``json`` (the stored bytes), ``csv`` or ``html``.

    Raises:
        StatementFormatInvalid: ``fmt`` is none of :data:`STATEMENT_FORMATS`.
    """
    if fmt not in STATEMENT_FORMATS:
        raise StatementFormatInvalid(
            f"statement format {str(fmt)[:20]!r} is not one of {', '.join(STATEMENT_FORMATS)}"
        )
    if fmt == "json":
        return settlement.statement_json.encode("utf-8")
    document = json.loads(settlement.statement_json)
    text = _csv(document) if fmt == "csv" else _html(document)
    return text.encode("utf-8")


def statement_sha(settlement: Settlement, fmt: str) -> str:
    """The SHA-256 (hex) of the statement rendered as ``fmt``; for json, the stored hash's."""
    return hashlib.sha256(render_statement(settlement, fmt)).hexdigest()


def settlement_view(settlement: Settlement) -> dict[str, Any]:
    """The public JSON shape of a settlement (its statement is fetched on its own)."""
    return {
        "id": settlement.id,
        "payee": settlement.payee_id,
        "currency": settlement.currency,
        "period": settlement.period,
        "seq": settlement.seq,
        "kind": settlement.kind,
        "cutoff": iso(settlement.cutoff),
        "created_at": iso(settlement.created_at),
        "created_by": settlement.created_by,
        "captured_minor": settlement.captured_minor,
        "refunded_minor": settlement.refunded_minor,
        "fees_minor": settlement.fees_minor,
        "lease_minor": settlement.lease_minor,
        "adjustments_minor": settlement.adjustments_minor,
        "carried_in_minor": settlement.carried_in_minor,
        "net_minor": settlement.net_minor,
        "payout_minor": settlement.payout_minor,
        "lines_count": settlement.lines_count,
        "statement_sha256": settlement.statement_sha256,
    }
