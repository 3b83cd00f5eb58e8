"""The leasing domain's entry point: what other domains, the API, the CLI, pages and jobs use.

Everything outside this package imports from here (import-linter holds it), so the
modules behind it can change shape without touching their callers.
"""

from __future__ import annotations

from vpop.leasing import schemas
from vpop.leasing.callbacks import send_event_callback
from vpop.leasing.leases import LeaseConflict, create_lease, end_lease, lease_view, provision
from vpop.leasing.models import Lease, LeaseVersion, UtilisationEvent, UtilisationSample
from vpop.leasing.schemas import (
    LEASE_DEFAULTS,
    LEASE_RANGES,
    LEASE_REQUIRED,
    LEASE_STATUSES,
    LeaseRequest,
)
from vpop.leasing.signals import lease_changed
from vpop.leasing.utilisation import KINDS, EventState, Rules, percentile_95, step, utilisation_pct

__all__ = [
    "EventState",
    "KINDS",
    "LEASE_DEFAULTS",
    "LEASE_RANGES",
    "LEASE_REQUIRED",
    "LEASE_STATUSES",
    "Lease",
    "LeaseConflict",
    "LeaseRequest",
    "LeaseVersion",
    "Rules",
    "UtilisationEvent",
    "UtilisationSample",
    "create_lease",
    "lease_changed",
    "end_lease",
    "lease_view",
    "percentile_95",
    "provision",
    "schemas",
    "send_event_callback",
    "step",
    "utilisation_pct",
]
