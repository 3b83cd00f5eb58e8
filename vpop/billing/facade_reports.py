"""The billing domain's reports names, re-exported by :mod:`vpop.billing.service`."""

from __future__ import annotations

from vpop.billing.reports import (
    PAYMENTS_REPORT_COLUMNS,
    payments_report,
    payments_report_csv,
    payments_report_for_period,
    report_totals,
)

__all__: list[str] = [
    "PAYMENTS_REPORT_COLUMNS",
    "payments_report",
    "payments_report_csv",
    "payments_report_for_period",
    "report_totals",
]
