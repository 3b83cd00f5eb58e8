"""Scheduled monitoring: counters, ISP probes, lease utilisation and events, retention.

A counter poll asks a batch of routers at once (one Nornir run) and stores what they answer
in one database transaction (:func:`poll_counters_many`); a router's failure costs the
others nothing. Jobs are enqueued on the huey queue by :class:`Monitor` (a thread in
``vpop serve`` / ``vpop worker``) at intervals of seconds (huey's own periodic tasks tick
once a minute, too coarse here):

* counters (``VPOP_POLL_COUNTERS_SECONDS``, lab default 5; ``VPOP_POLL_BATCH`` routers per
  job, default 8): interface and per-line counters
  -> raw samples, rates (wraps, resets, duplicates and gaps handled by
  :mod:`vpop.counters`), lease utilisation and under/over-utilisation events, and in the
  same transaction the service sessions' traffic and the usage rollups
  (``vpop.accounting.service.record_poll``);
* probes (``VPOP_POLL_PROBES_SECONDS``, default 10): latency, jitter, loss, throughput of
  every ISP through its routing instance on every router -> QoS samples;
* prune (``VPOP_PRUNE_SECONDS``, default 3600): raw samples older than
  ``VPOP_RETENTION_RAW_DAYS`` (7), rollups older than ``VPOP_RETENTION_ROLLUP_DAYS`` (400).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from nornir.core.inventory import Host
from nornir.core.task import Result, Task
from pydantic import BaseModel, ConfigDict
from sqlalchemy import bindparam, func, select
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.orm import Session

from tasks.collect import collect_counters
from tasks.probe import probe_isps
from vpop.accounting.service import record_poll
from vpop.catalogue.service import Isp, Line
from vpop.core.db import get_engine, session_scope
from vpop.core.prepared import Prepared, raw_transaction
from vpop.core.settings import load_settings
from vpop.core.signals import emit
from vpop.core.time import utcnow
from vpop.lab.service import SERVICE_ADDRESS
from vpop.leasing.service import (
    EventState,
    Lease,
    Rules,
    UtilisationEvent,
    UtilisationSample,
    step,
    utilisation_pct,
)
from vpop.monitoring import rollups
from vpop.monitoring.bulk import SAMPLE_COLUMNS, PollSeries, Table_, _insert_many, bound_time
from vpop.monitoring.counters import COUNTERS, Last, Reading, Steps
from vpop.monitoring.models import CounterSample, PollLog, QosSample
from vpop.monitoring.signals import utilisation_event
from vpop.network.service import open_nornir, routers_nornir

log = logging.getLogger(__name__)


# never believe a delta implying more than this (bytes/s, packets/s): a reset, not traffic
MAX_RATE = {
    "rx_bytes": 50e9,
    "tx_bytes": 50e9,
    "rx_packets": 1e9,
    "tx_packets": 1e9,
    "errors": 1e9,
    "drops": 1e9,
}


class MonitorSettings(BaseModel):
    """Intervals and probe parameters: the monitoring part of the settings.

    A field not given as a keyword argument comes from :func:`load_settings` when the
    object is built (``VPOP_POLL_COUNTERS_SECONDS`` for ``counters_seconds``, and so on),
    so ``MonitorSettings()`` is what the operator configured and tests override one field.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    counters_seconds: float
    batch: int
    probes_seconds: float
    prune_seconds: float
    raw_days: float
    rollup_days: float
    probe_count: int
    probe_interval: float
    throughput_seconds: float
    throughput_every_seconds: float
    probe_target: str

    def __init__(self, **overrides: Any) -> None:
        """Build from the settings read now, with ``overrides`` (field names) on top.

        Raises:
            ConfigError: a monitoring variable (or any other setting) is invalid.
            pydantic.ValidationError: an override is not a field or not of its type.
        """
        settings = load_settings()
        configured = {
            "counters_seconds": settings.poll_counters_seconds,
            "batch": settings.poll_batch,
            "probes_seconds": settings.poll_probes_seconds,
            "prune_seconds": settings.prune_seconds,
            "raw_days": settings.retention_raw_days,
            "rollup_days": settings.retention_rollup_days,
            "probe_count": settings.probe_count,
            "probe_interval": settings.probe_interval,
            "throughput_seconds": settings.probe_throughput_seconds,
            "throughput_every_seconds": settings.probe_throughput_every_seconds,
            "probe_target": settings.probe_target or SERVICE_ADDRESS,
        }
        super().__init__(**{**configured, **overrides})


# per (router, kind), the previous reading of each series by name
_last: dict[tuple[str, str], dict[str, Last]] = {}


# per router, the time of the last poll this process stored: when the poll log names a later
# one, another process (another `vpop worker`) polled the router since, and the cached
# readings are stale (deltas from them would count that process's interval twice)
_polled: dict[str, datetime] = {}


_states: dict[int, EventState] = {}


_state_lock = threading.Lock()


def _refresh_previous(session: Session, cursor: Any, dialect: Dialect, router: str) -> None:
    """Make the reading cache of ``router`` hold its newest stored readings.

    Kept as it is when this process stored the router's latest successful counter poll (the
    common case: one indexed read of the poll log); reloaded from the samples otherwise.
    """
    mine = _polled.get(router)
    if mine is not None:
        params = {"router": router, "since": mine}
        if _POLLED_SINCE.run(cursor, dialect, params).fetchone() is None:
            return
    _load_previous(session, router)


# a successful counter poll of the router stored after ``since``: another process polled it.
# Statements of every poll are compiled once and run on the driver's cursor (Prepared).
_POLLED_SINCE = Prepared(
    select(PollLog.id)
    .where(
        PollLog.job == "counters",
        PollLog.at > bindparam("since"),
        PollLog.router == bindparam("router"),
        PollLog.ok.is_(True),
    )
    .limit(1),
    {"since": PollLog.__table__.c.at.type},
)
# the interfaces of a router's lines (what the router counts per line)
_LINES = Prepared(select(Line.interface).where(Line.router == bindparam("router")), {})
# whether the router has active leases (their objects are loaded only then)
_ACTIVE_LEASE = Prepared(
    select(Lease.id).where(Lease.router == bindparam("router"), Lease.status == "active").limit(1),
    {},
)
_INSERT_POLL_LOG = Prepared.inserting(PollLog, ("job", "router", "at", "ok", "seconds", "error"))
_SAMPLES = Table_(CounterSample)


def _load_previous(session: Session, router: str) -> None:
    """Fill the reading cache for a router from its newest stored samples (one query): a
    reading that was never stored (its transaction rolled back) is no base for a delta."""
    for kind in ("interface", "line"):
        _last.pop((router, kind), None)
    recent = utcnow() - timedelta(hours=1)  # older readings would be gaps anyway
    newest = (
        select(func.max(CounterSample.id))
        .where(CounterSample.at > recent, CounterSample.router == router)
        .group_by(CounterSample.kind, CounterSample.name)
    )
    for row in session.scalars(select(CounterSample).where(CounterSample.id.in_(newest))):
        values = tuple(getattr(row, k) for k in COUNTERS)
        # checked as any reading is; the boot id is not stored: a restart since is caught
        # by the decrease rules
        Reading(at=row.at, values=dict(zip(COUNTERS, values, strict=True)), width=64)
        _last.setdefault((router, row.kind), {})[row.name] = Last(row.at, values, 64, None)


def _poll_routers(
    job: str,
    routers: Sequence[str],
    url: str | None,
    started: float,
    task: Callable[..., Result],
    arguments: Callable[[Host], dict[str, Any]],
) -> dict[str, Any]:
    """Run one monitoring task on ``routers`` at once (:func:`_ask`).

    Returns each router's :class:`Answer`, or the exception its run ended with (not in the
    inventory, unreachable, task error): every failure is recorded in the poll log, never
    fatal to the others, never silent.
    """
    outcome = _ask(routers, task, arguments)
    _log_failures(job, outcome, started, url)
    return outcome


def _ask(
    routers: Sequence[str], task: Callable[..., Result], arguments: Callable[[Host], dict[str, Any]]
) -> dict[str, Any]:
    """``task`` on each of ``routers`` at once, in a kept Nornir of those routers: per router
    its :class:`Answer` or the exception its run ended with."""
    outcome: dict[str, Any] = {}
    try:
        with routers_nornir(routers) as nr:
            hosts = nr.inventory.hosts
            ran = nr.run(task=_with_arguments, on_failed=True, run=task, arguments=arguments)
        for router in routers:
            multi = ran.get(router) if router in hosts else None
            if multi is None:
                outcome[router] = LookupError(f"router {router!r} is not in the inventory")
            elif multi.failed:
                outcome[router] = RuntimeError(str(multi[0].exception))
            else:
                outcome[router] = multi[0].result
    except Exception as err:  # the inventory itself (ConfigError): every router failed
        outcome = dict.fromkeys(routers, err)
    return outcome


class Answer(NamedTuple):
    """A router's answer to a monitoring task, and when it came: the time of its readings.
    In a batch, a router that answers late does not make the others' readings late."""

    at: datetime
    data: Any


def _with_arguments(
    task: Task, run: Callable[..., Result], arguments: Callable[[Host], dict[str, Any]]
) -> Result:
    """``run`` on the task's host with that host's ``arguments``; its result as an
    :class:`Answer` stamped when it came."""
    answered = run(task, **arguments(task.host))
    answered.result = Answer(utcnow(), answered.result)
    return answered


def _log_failures(job: str, outcome: dict[str, Any], started: float, url: str | None) -> None:
    """Record each router whose ``outcome`` is an exception in the poll log (best effort: the
    failure may be the database's, and it is raised or returned anyway)."""
    failed = {r: err for r, err in outcome.items() if isinstance(err, BaseException)}
    for router, err in failed.items():
        log.warning("%s poll of %s failed: %s: %s", job, router, type(err).__name__, err)
    if not failed:
        return
    try:
        with session_scope(url) as session:
            for router, err in failed.items():
                session.add(
                    PollLog(
                        job=job,
                        router=router,
                        seconds=time.perf_counter() - started,
                        ok=False,
                        error=f"{type(err).__name__}: {err}",
                    )
                )
    except Exception:
        log.exception("could not record the failed %s polls of %s", job, ", ".join(failed))


def _poll_router(
    job: str,
    router: str,
    url: str | None,
    started: float,
    task: Callable[..., Result],
    arguments: Callable[[Host], dict[str, Any]],
) -> Any:
    """:func:`_poll_routers` of one router: its answer's data, or its failure raised."""
    found = _poll_routers(job, (router,), url, started, task, arguments)[router]
    if isinstance(found, BaseException):
        raise found
    return found.data


def poll_counters(
    router: str, url: str | None = None, settings: MonitorSettings | None = None
) -> dict[str, Any]:
    """Poll one router's counters; store samples, rates, utilisation, events and usage.

    Returns a summary: samples stored, notes (wrap/reset/gap), events opened/closed.

    Raises:
        Exception: the poll failed (it is in the poll log too).
    """
    found: dict[str, Any] | Exception = _poll_counters((router,), url, settings)[router]
    if isinstance(found, Exception):
        raise found
    return found


def poll_counters_many(
    routers: Sequence[str], url: str | None = None, settings: MonitorSettings | None = None
) -> dict[str, dict[str, Any]]:
    """Poll several routers' counters as one job: the routers are asked at once, and what
    they answer is stored in one transaction (:func:`poll_counters` for each, at a fraction
    of the cost per router: one commit, one Nornir run).

    One router's failure costs the others nothing: a router that cannot be polled is left
    out (and logged), and when storing one router's poll fails, each is stored in a
    transaction of its own, so only that one is lost.

    Returns:
        Per router, in the order given, its :func:`poll_counters` summary, or ``{"error":
        "<type>: <message>"}`` when its poll failed.
    """
    return {
        router: {"error": f"{type(found).__name__}: {found}"}
        if isinstance(found, BaseException)
        else found
        for router, found in _poll_counters(routers, url, settings).items()
    }


def _poll_counters(
    routers: Sequence[str], url: str | None, settings: MonitorSettings | None
) -> dict[str, Any]:
    """Poll and store ``routers``' counters; per router its summary or its exception."""
    settings = settings or MonitorSettings()
    started = time.perf_counter()
    engine = get_engine(url)
    dialect = engine.dialect
    with raw_transaction(engine) as (cursor, _):  # a read
        lines = {
            router: [row[0] for row in _LINES.run(cursor, dialect, {"router": router}).fetchall()]
            for router in routers
        }
    outcome = _poll_routers(
        "counters",
        routers,
        url,
        started,
        collect_counters,
        lambda host: {"lines": lines[host.name]},
    )
    read = {r: answer for r, answer in outcome.items() if isinstance(answer, Answer)}
    if read:
        outcome.update(_store_counters(read, url, settings, started))
    return outcome


def _store_counters(
    read: dict[str, Answer], url: str | None, settings: MonitorSettings, started: float
) -> dict[str, Any]:
    """Store what ``read`` holds (per router, what ``collect_counters`` gave, and when) in
    one transaction; when that fails with several routers, each in its own. Per router its
    summary or the exception that lost its poll (in the poll log too)."""
    summaries: dict[str, Any] = {}
    event_ids: list[int] = []
    stepped: list[int] = []  # the leases whose event state was stepped
    try:
        with session_scope(url) as session:  # one transaction per batch
            cursor = session.connection().connection.cursor()
            try:
                for router, (now, data) in read.items():
                    summaries[router] = _store_poll(
                        session, cursor, router, data, now, settings, started, stepped
                    )
                    event_ids += summaries[router].pop("event_ids")
            finally:
                cursor.close()
    except Exception as err:
        with _state_lock:  # steps of a poll never stored: read the leases' events again
            for lease_id in stepped:
                _states.pop(lease_id, None)
        if len(read) > 1:  # one router's poll spoilt the others': store each alone
            outcome: dict[str, Any] = {}
            for router, answer in read.items():
                outcome.update(_store_counters({router: answer}, url, settings, started))
            return outcome
        failed = dict.fromkeys(read, err)
        _log_failures("counters", failed, started, url)
        return failed
    for router, answer in read.items():
        _polled[router] = answer.at
    for event_id in event_ids:
        emit(utilisation_event, event_id)
    return summaries


def _store_poll(
    session: Session,
    cursor: Any,
    router: str,
    data: dict[str, Any],
    now: datetime,
    settings: MonitorSettings,
    started: float,
    stepped: list[int],
) -> dict[str, Any]:
    """One router's poll in the batch's transaction: samples, rates, usage, utilisation,
    events and its poll log, all at ``now`` (when its answer came). Its summary holds
    ``event_ids`` (to emit once committed); ``stepped`` gets the leases whose event state
    it stepped."""
    dialect = session.get_bind().dialect
    _refresh_previous(session, cursor, dialect, router)
    # until this transaction commits, the cache holds readings that may never be stored
    _polled.pop(router, None)
    summary: dict[str, Any] = {"samples": 0, "notes": {}, "events": [], "event_ids": []}
    leases: list[Lease] = []
    if _ACTIVE_LEASE.run(cursor, dialect, {"router": router}).fetchone() is not None:
        leases = list(
            session.scalars(select(Lease).where(Lease.router == router, Lease.status == "active"))
        )
    steps = Steps(
        now, data["width"], expected_interval=settings.counters_seconds, max_rate=MAX_RATE
    )
    poll = PollSeries(router, bound_time(session, _SAMPLES.c.at, now), summary["notes"], _last)
    uplinks = {lease.uplink for lease in leases}
    boot_ids = data["boot_ids"]
    poll.read("interface", data["interfaces"], boot_ids["interface"], steps, uplinks)
    poll.read("line", data["lines"], boot_ids["line"], steps, None)
    sessions = record_poll(
        session, router=router, at=now, lines=poll.used_lines, uplinks=poll.used_uplinks
    )
    poll.attribute(sessions)
    _insert_many(session, _SAMPLES, poll.rows, SAMPLE_COLUMNS)
    summary["samples"] = len(poll.rows)
    for lease in leases:
        uplink_rate = poll.uplink_rates.get(lease.uplink)
        if uplink_rate is None:
            continue
        rx_bps, tx_bps = uplink_rate
        pct = utilisation_pct(rx_bps, tx_bps, lease.committed_mbps)
        rate_mbps = max(rx_bps, tx_bps) / 1e6
        session.add(
            UtilisationSample(lease_id=lease.id, at=now, rate_mbps=rate_mbps, utilisation_pct=pct)
        )
        rollups.add_to_rollup(
            session, rollups.series_name("util", "lease", str(lease.id)), now, pct
        )
        rollups.add_to_rollup(
            session, rollups.series_name("util_mbps", "lease", str(lease.id)), now, rate_mbps
        )
        stepped.append(lease.id)
        summary["event_ids"] += _step_events(session, lease, now, pct, summary)
    _INSERT_POLL_LOG.run(
        cursor,
        dialect,
        {
            "job": "counters",
            "router": router,
            "at": now,
            "ok": True,
            "seconds": time.perf_counter() - started,
            "error": None,
        },
    )
    return summary


def _state_for(session: Session, lease: Lease) -> EventState:
    with _state_lock:
        state = _states.get(lease.id)
    if state is None:
        open_event = session.scalars(
            select(UtilisationEvent).where(
                UtilisationEvent.lease_id == lease.id, UtilisationEvent.closed_at.is_(None)
            )
        ).first()
        state = EventState(
            kind=open_event.kind if open_event else None,
            candidate=None,
            candidate_since=None,
            clearing_since=None,
            extreme=open_event.extreme_pct if open_event else None,
        )
    return state


def _step_events(
    session: Session, lease: Lease, now: datetime, pct: float, summary: dict[str, Any]
) -> list[int]:
    rules = Rules(
        under_pct=lease.under_pct,
        over_pct=lease.over_pct,
        hysteresis_pct=lease.hysteresis_pct,
        event_seconds=lease.event_seconds,
    )
    state, transitions = step(_state_for(session, lease), now, pct, rules)
    with _state_lock:
        _states[lease.id] = state
    ids: list[int] = []
    for action, kind, at, extreme in transitions:
        if action == "open":
            event = UtilisationEvent(
                lease_id=lease.id, isp_id=lease.isp_id, kind=kind, opened_at=at, extreme_pct=extreme
            )
            session.add(event)
            session.flush()
        else:
            found = session.scalars(
                select(UtilisationEvent).where(
                    UtilisationEvent.lease_id == lease.id,
                    UtilisationEvent.kind == kind,
                    UtilisationEvent.closed_at.is_(None),
                )
            ).first()
            if found is None:
                continue
            event = found
            event.closed_at = at
            event.extreme_pct = extreme
        log.warning(
            "lease %s (%s %s %s): %s-utilisation event %s %s at %.1f%%",
            lease.id,
            lease.isp_id,
            lease.router,
            lease.uplink,
            kind,
            event.id,
            "opened" if action == "open" else "closed",
            extreme,
        )
        summary["events"].append((action, kind, event.id))
        ids.append(event.id)
    return ids


def probe_router(
    router: str, url: str | None = None, settings: MonitorSettings | None = None
) -> dict[str, Any]:
    """Probe every ISP with an uplink on ``router``; store one QoS sample per ISP.

    Latency, jitter and loss are measured on every probe; throughput (traffic at full speed
    through each uplink) only when the router's last throughput test is at least
    ``throughput_every_seconds`` old (:func:`throughput_due`)."""
    settings = settings or MonitorSettings()
    started = time.perf_counter()
    with session_scope(url) as session:
        known = set(session.scalars(select(Isp.id)))
        throughput = (
            settings.throughput_seconds
            if throughput_due(session, router, settings.throughput_every_seconds, utcnow())
            else 0.0
        )
    measured: dict[str, dict[str, Any]] = _poll_router(
        "probes",
        router,
        url,
        started,
        probe_isps,
        lambda host: {
            "isps": sorted(set(host.get("uplinks", {})) & known),
            "target": settings.probe_target,
            "count": settings.probe_count,
            "interval": settings.probe_interval,
            "throughput_seconds": throughput,
        },
    )
    now = utcnow()
    with session_scope(url) as session:
        for isp, figures in measured.items():
            if "error" in figures:
                log.warning("probe %s via %s: %s", router, isp, figures["error"])
                continue
            session.add(
                QosSample(
                    isp_id=isp,
                    router=router,
                    at=now,
                    latency_ms=figures["latency_ms"],
                    jitter_ms=figures["jitter_ms"],
                    loss_pct=figures["loss_pct"],
                    throughput_mbps=figures["throughput_mbps"],
                    sent=figures["sent"] or 0,
                    received=figures["received"] or 0,
                )
            )
            for metric in ("latency_ms", "jitter_ms", "loss_pct", "throughput_mbps"):
                if figures.get(metric) is not None:
                    rollups.add_to_rollup(
                        session,
                        rollups.series_name("qos", isp, router, metric),
                        now,
                        float(figures[metric]),
                    )
        session.add(
            PollLog(
                job="probes", router=router, at=now, ok=True, seconds=time.perf_counter() - started
            )
        )
    return measured


def throughput_due(session: Session, router: str, every: float, now: datetime) -> bool:
    """Whether ``router``'s ISPs get a throughput test now: its newest QoS sample with a
    throughput is at least ``every`` seconds old, or it has none (``every`` 0: always).

    A throughput test fills each uplink for its duration: on a leased uplink that traffic
    counts in the lease's utilisation, and on a shared machine (the lab) it takes a core.
    Latency, jitter and loss stay on every probe; the shown throughput is the newest
    measured (:func:`vpop.monitoring.qos.current_qos` takes each figure's newest sample)."""
    if every <= 0:
        return True
    # within the last ``every`` seconds only, per ISP: ix_qos_isp_at's ranges, not the table
    recent = session.scalar(
        select(QosSample.id)
        .where(
            QosSample.isp_id.in_(select(Isp.id)),
            QosSample.at > now - timedelta(seconds=every),
            QosSample.router == router,
            QosSample.throughput_mbps.is_not(None),
        )
        .limit(1)
    )
    return recent is None


def prune(url: str | None = None, settings: MonitorSettings | None = None) -> dict[str, int]:
    """Apply retention: raw samples and rollups older than their limits are deleted."""
    settings = settings or MonitorSettings()
    with session_scope(url) as session:
        return rollups.prune(
            session, now=utcnow(), raw_days=settings.raw_days, rollup_days=settings.rollup_days
        )


def routers() -> list[str]:
    """The routers in the inventory."""
    with open_nornir() as nr:
        return sorted(nr.inventory.hosts)
