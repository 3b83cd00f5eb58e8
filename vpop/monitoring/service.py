"""The monitoring domain's entry point: what other domains, the API, the CLI, pages and jobs use.

Everything outside this package imports from here (import-linter holds it), so the
modules behind it can change shape without touching their callers.
"""

from __future__ import annotations

from vpop.monitoring import schemas
from vpop.monitoring.models import CounterSample, PollLog, QosSample, Rollup
from vpop.monitoring.poller import (
    MonitorSettings,
    poll_counters,
    poll_counters_many,
    probe_router,
    prune,
    routers,
)
from vpop.monitoring.qos import QOS_FIGURES, current_qos, empty_qos
from vpop.monitoring.signals import utilisation_event

__all__ = [
    "utilisation_event",
    "poll_counters",
    "poll_counters_many",
    "probe_router",
    "prune",
    "CounterSample",
    "MonitorSettings",
    "PollLog",
    "QOS_FIGURES",
    "QosSample",
    "Rollup",
    "current_qos",
    "empty_qos",
    "routers",
    "schemas",
]
