"""The billing domain's settlement names, re-exported by :mod:`vpop.billing.service`."""

from __future__ import annotations

from vpop.billing.bills import bill_view, close_bills, running_bill
from vpop.billing.lease_charges import LeaseCharge, lease_charges
from vpop.billing.sepa import (
    SEPA_CURRENCY,
    MandateInvalid,
    NothingToSend,
    add_mandate,
    collection_file,
    payout_file,
    stored_payout_file,
    uncollected_bills,
)
from vpop.billing.settlement import list_settlements, run_settlement, settlement_for
from vpop.billing.settlement_lines import COLUMNS as STATEMENT_COLUMNS
from vpop.billing.settlement_lines import canonical_json, fee_of
from vpop.billing.statements import (
    STATEMENT_FORMATS,
    StatementFormatInvalid,
    render_statement,
    settlement_view,
    statement_sha,
)

__all__: list[str] = [
    "SEPA_CURRENCY",
    "STATEMENT_COLUMNS",
    "STATEMENT_FORMATS",
    "LeaseCharge",
    "MandateInvalid",
    "NothingToSend",
    "StatementFormatInvalid",
    "add_mandate",
    "bill_view",
    "canonical_json",
    "close_bills",
    "collection_file",
    "fee_of",
    "lease_charges",
    "list_settlements",
    "payout_file",
    "stored_payout_file",
    "render_statement",
    "run_settlement",
    "settlement_for",
    "running_bill",
    "settlement_view",
    "statement_sha",
    "uncollected_bills",
]
