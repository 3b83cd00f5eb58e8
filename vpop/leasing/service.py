"""The leasing domain's entry point: what other domains, the API, the CLI, pages and jobs use.

Everything outside this package imports from here (import-linter holds it), so the
modules behind it can change shape without touching their callers.
"""

from __future__ import annotations

from vpop.leasing import schemas
from vpop.leasing.callbacks import send_event_callback
from vpop.leasing.leases import (
    PAST_START_LIMIT,
    START_LEEWAY,
    LeaseConflict,
    create_lease,
    end_lease,
    lease_view,
    provision,
)
from vpop.leasing.lifecycle import SCHEDULE_ACTOR, change_lease, enforce_schedule
from vpop.leasing.models import Lease, LeaseVersion, UtilisationEvent, UtilisationSample
from vpop.leasing.schemas import (
    LEASE_DEFAULTS,
    LEASE_RANGES,
    LEASE_REQUIRED,
    LEASE_STATUSES,
    LeaseChangeRequest,
    LeaseRequest,
)
from vpop.leasing.signals import lease_changed
from vpop.leasing.utilisation import KINDS, EventState, Rules, percentile_95, step, utilisation_pct
from vpop.leasing.versions import VERSION_REASONS, list_versions, version_view, versions_between

__all__ = [
    "EventState",
    "KINDS",
    "LEASE_DEFAULTS",
    "LEASE_RANGES",
    "LEASE_REQUIRED",
    "LEASE_STATUSES",
    "Lease",
    "LeaseChangeRequest",
    "LeaseConflict",
    "LeaseRequest",
    "LeaseVersion",
    "PAST_START_LIMIT",
    "Rules",
    "SCHEDULE_ACTOR",
    "START_LEEWAY",
    "UtilisationEvent",
    "UtilisationSample",
    "VERSION_REASONS",
    "change_lease",
    "create_lease",
    "lease_changed",
    "end_lease",
    "enforce_schedule",
    "lease_view",
    "list_versions",
    "percentile_95",
    "provision",
    "schemas",
    "send_event_callback",
    "step",
    "utilisation_pct",
    "version_view",
    "versions_between",
]
