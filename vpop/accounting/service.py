"""The accounting domain's entry: what other packages, the API, CLI, pages and jobs use."""

from __future__ import annotations

from vpop.accounting.buckets import WIDTH, bucket_of, buckets
from vpop.accounting.models import (
    END_REASONS,
    LEVELS,
    PERIODS,
    SOURCES,
    ServiceSession,
    UsageRollup,
)
from vpop.accounting.radius import mirror_radius
from vpop.accounting.sessions import (
    LIST_MAX,
    VIEW_KEYS,
    LineSwitch,
    end_line,
    list_sessions,
    session_view,
    switch_line,
    switch_lines_on,
)
from vpop.accounting.usage import (
    Cut,
    Measured,
    cut_of,
    measured,
    measured_counts,
    record_poll,
    split,
)

__all__ = [
    "END_REASONS",
    "Cut",
    "LEVELS",
    "LIST_MAX",
    "LineSwitch",
    "PERIODS",
    "SOURCES",
    "VIEW_KEYS",
    "Measured",
    "ServiceSession",
    "UsageRollup",
    "WIDTH",
    "bucket_of",
    "cut_of",
    "buckets",
    "end_line",
    "list_sessions",
    "measured",
    "measured_counts",
    "mirror_radius",
    "record_poll",
    "session_view",
    "split",
    "switch_line",
    "switch_lines_on",
]
