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

__all__ = [
    "END_REASONS",
    "LEVELS",
    "PERIODS",
    "SOURCES",
    "ServiceSession",
    "UsageRollup",
    "WIDTH",
    "bucket_of",
    "buckets",
]
