"""Lease utilisation: percent of the committed rate, under/over events, the 95th percentile.

The event detector is a pure state machine: :func:`step` takes the state saved after the
previous poll and returns the new state and what opened or closed, so the monitoring job can
keep the state anywhere (it is plain JSON through :meth:`EventState.to_dict`) and reports can
:func:`replay` stored samples through the very same rules.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, NamedTuple

Kind = Literal["under", "over"]
KINDS: tuple[Kind, ...] = ("under", "over")


def utilisation_pct(rx_bps: float, tx_bps: float, committed_mbps: int) -> float:
    """The busier direction's rate as a percentage of the committed rate.

    Args:
        rx_bps: Received bits per second.
        tx_bps: Transmitted bits per second.
        committed_mbps: The lease's committed rate in Mbit/s (10**6 bits per second).

    Returns:
        ``max(rx_bps, tx_bps) / (committed_mbps * 10**6) * 100``; above 100 for a burstable
        lease used beyond its committed rate.

    Raises:
        ValueError: When a rate is negative or not a number, or the committed rate is not
            positive.
    """
    for name, rate in (("rx_bps", rx_bps), ("tx_bps", tx_bps)):
        if not rate >= 0:
            raise ValueError(f"{name} must be a non-negative number, not {rate!r}")
    if committed_mbps <= 0:
        raise ValueError(f"committed_mbps must be positive, not {committed_mbps!r}")
    return max(rx_bps, tx_bps) / (committed_mbps * 10**6) * 100


@dataclass(frozen=True)
class Rules:
    """When utilisation is an event (the lease's ``under_pct`` .. ``event_seconds``).

    Attributes:
        under_pct: Below this percentage the lease is under-utilised.
        over_pct: Above this percentage the lease is over-utilised.
        hysteresis_pct: How far back inside the band a rate must be before an event may close.
        event_seconds: How long a condition must hold to open an event, and how long the rate
            must be back inside the band to close it.
    """

    under_pct: float
    over_pct: float
    hysteresis_pct: float
    event_seconds: float

    def __post_init__(self) -> None:
        if not 0 <= self.under_pct < self.over_pct:
            raise ValueError("need 0 <= under_pct < over_pct")
        if not self.hysteresis_pct >= 0:
            raise ValueError("hysteresis_pct must be non-negative")
        if not self.event_seconds >= 0:
            raise ValueError("event_seconds must be non-negative")

    def condition(self, pct: float) -> Kind | None:
        """The condition a percentage is in: ``"over"``, ``"under"`` or None (inside)."""
        if pct > self.over_pct:
            return "over"
        if pct < self.under_pct:
            return "under"
        return None

    def cleared(self, kind: str, pct: float) -> bool:
        """Whether ``pct`` is back inside the band by the hysteresis margin for ``kind``."""
        if kind == "over":
            return pct < self.over_pct - self.hysteresis_pct
        return pct > self.under_pct + self.hysteresis_pct


class Transition(NamedTuple):
    """An event opening or closing.

    Attributes:
        action: ``"open"`` or ``"close"``.
        kind: ``"under"`` or ``"over"``.
        at: The poll at which it happened.
        extreme_pct: The event's peak (over) or lowest (under) percentage so far.
    """

    action: Literal["open", "close"]
    kind: Kind
    at: datetime
    extreme_pct: float


@dataclass
class EventState:
    """What the detector remembers between polls of one lease; ``EventState()`` to start.

    Attributes:
        kind: The open event's kind (``"under"``/``"over"``), or None.
        candidate: The condition currently held that has not (yet) opened an event, or None.
        candidate_since: The first poll of the current ``candidate`` run.
        clearing_since: The first poll of the current run back inside the band while an event
            is open, or None.
        extreme: The open event's peak (over) or lowest (under) percentage.
        candidate_extreme: The same for the candidate run, handed to the event it opens, so an
            event's extreme covers the whole episode and not only the polls after it opened.
    """

    kind: str | None = None
    candidate: str | None = None
    candidate_since: datetime | None = None
    clearing_since: datetime | None = None
    extreme: float | None = None
    candidate_extreme: float | None = None

    def to_dict(self) -> dict[str, str | float | None]:
        """The state as JSON-ready values (times as ISO 8601 strings)."""
        return {
            "kind": self.kind,
            "candidate": self.candidate,
            "candidate_since": _iso(self.candidate_since),
            "clearing_since": _iso(self.clearing_since),
            "extreme": self.extreme,
            "candidate_extreme": self.candidate_extreme,
        }

    @classmethod
    def from_dict(cls, data: dict[str, str | float | None]) -> EventState:
        """Rebuild a state saved by :meth:`to_dict`.

        Raises:
            ValueError: When a field has the wrong type or an unknown kind.
        """
        kind, candidate = data.get("kind"), data.get("candidate")
        for name, value in (("kind", kind), ("candidate", candidate)):
            if value is not None and value not in KINDS:
                raise ValueError(f"EventState.{name} must be under, over or null: {value!r}")
        return cls(
            kind=_opt_str(kind),
            candidate=_opt_str(candidate),
            candidate_since=_from_iso(data.get("candidate_since")),
            clearing_since=_from_iso(data.get("clearing_since")),
            extreme=_opt_float(data.get("extreme")),
            candidate_extreme=_opt_float(data.get("candidate_extreme")),
        )


def step(
    state: EventState, at: datetime, pct: float, rules: Rules
) -> tuple[EventState, list[Transition]]:
    """Advance the detector by one poll.

    A poll is in the ``"over"`` condition when ``pct > over_pct`` and ``"under"`` when
    ``pct < under_pct``. An event opens at the poll where the condition has held on every poll
    since the first poll of the run and at least ``event_seconds`` have passed since that first
    poll (at once when ``event_seconds`` is 0). An open event closes at the poll where ``pct``
    has been back inside the band by ``hysteresis_pct`` (over: ``pct < over_pct -
    hysteresis_pct``; under: ``pct > under_pct + hysteresis_pct``) on every poll for at least
    ``event_seconds``. So a rate flapping around a threshold neither opens an event per poll
    (the run restarts each time it leaves the condition) nor closes and reopens one (it never
    gets below the hysteresis margin). Between two polls the rate is assumed to be what the
    polls say: a missed poll does not break a run.

    While an event is open, the other condition builds its own run; switching from over to
    under closes the first event and opens the second once each has lasted its duration (at
    the same poll when both started together: close first, then open).

    Args:
        state: The state after the previous poll (not modified).
        at: This poll's time; polls must come in time order.
        pct: This poll's utilisation percentage.
        rules: The lease's event rules.

    Returns:
        The new state and the transitions at this poll (usually none).

    Raises:
        ValueError: When ``at`` is naive or earlier than a time the state remembers.
    """
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("step() needs a timezone-aware time")
    for since in (state.candidate_since, state.clearing_since):
        if since is not None and at < since:
            raise ValueError(f"poll at {at.isoformat()} is older than the state ({since})")
    new = EventState(**vars(state))
    transitions: list[Transition] = []
    duration = timedelta(seconds=rules.event_seconds)
    condition = rules.condition(pct)

    if condition is None or condition == new.kind:
        new.candidate = new.candidate_since = new.candidate_extreme = None
    elif condition == new.candidate:
        new.candidate_extreme = _worse(condition, new.candidate_extreme, pct)
    else:
        new.candidate, new.candidate_since, new.candidate_extreme = condition, at, pct

    if new.kind is not None:
        new.extreme = _worse(new.kind, new.extreme, pct)
        if rules.cleared(new.kind, pct):
            new.clearing_since = new.clearing_since or at
            if at - new.clearing_since >= duration:
                transitions.append(Transition("close", _kind(new.kind), at, _value(new.extreme)))
                new.kind = new.extreme = new.clearing_since = None
        else:
            new.clearing_since = None

    if (
        new.kind is None
        and new.candidate is not None
        and new.candidate_since is not None
        and at - new.candidate_since >= duration
    ):
        extreme = _value(new.candidate_extreme)
        transitions.append(Transition("open", _kind(new.candidate), at, extreme))
        new.kind, new.extreme = new.candidate, extreme
        new.candidate = new.candidate_since = new.candidate_extreme = None
    return new, transitions


def replay(samples: Iterable[tuple[datetime, float]], rules: Rules) -> list[Transition]:
    """Run time-ordered ``(at, pct)`` samples through :func:`step` from a fresh state.

    An event still open after the last sample has an ``"open"`` transition and no ``"close"``.

    Args:
        samples: ``(at, pct)`` pairs in time order.
        rules: The event rules.

    Returns:
        Every transition, in order.
    """
    state = EventState()
    transitions: list[Transition] = []
    for at, pct in samples:
        state, happened = step(state, at, pct, rules)
        transitions.extend(happened)
    return transitions


def percentile_95(rates: Sequence[float]) -> float:
    """The 95th-percentile rate, picked the way LibreNMS bills it.

    LibreNMS ``LibreNMS/Billing.php`` (librenms/librenms; ``get95thIn``, ``get95thout`` and
    ``get95thagg``, called by ``getRates``) counts the bill's samples ``n``, computes the index
    ``round(n / 100 * 95) - 1``, selects every sample's rate (``delta / period * 8``) ordered
    ascending and takes the rate at that index (then rounds it to 2 decimals for display,
    which is not done here). The older ``includes/billing.php`` does the same on ordered
    deltas. PHP's ``round()`` rounds halves away from zero; the index is computed here in
    exact integer arithmetic (``(95 * n + 50) // 100 - 1``), so ties such as n = 10 or 230 go
    up as the decimal arithmetic says, where ``n / 100 * 95`` in binary floating point can land
    just below the half (230 / 100 * 95 == 218.49999999999997).

    This is not ``ceil(0.95 * n) - 1``: for n = 11..19 (mod 20) LibreNMS takes the sample one
    below, e.g. the 10th of 11 rather than the largest. For n = 1 it is the only sample, for
    n = 20 the 19th, for n = 100 the 95th.

    Args:
        rates: Per-sample rates (one per poll interval), in any order.

    Returns:
        The selected rate.

    Raises:
        ValueError: When ``rates`` is empty or holds a NaN.
    """
    if not rates:
        raise ValueError("percentile_95 needs at least one rate")
    if any(math.isnan(rate) for rate in rates):
        raise ValueError("percentile_95 got a NaN rate")
    ordered = sorted(rates)
    return ordered[percentile_95_index(len(ordered))]


def percentile_95_index(n: int) -> int:
    """LibreNMS's index of the 95th-percentile sample among ``n`` ascending samples.

    Raises:
        ValueError: When ``n`` is not positive.
    """
    if n <= 0:
        raise ValueError(f"need at least one sample, not {n}")
    return (95 * n + 50) // 100 - 1


def _worse(kind: str, extreme: float | None, pct: float) -> float:
    if extreme is None:
        return pct
    return max(extreme, pct) if kind == "over" else min(extreme, pct)


def _kind(value: str) -> Kind:
    if value == "over":
        return "over"
    if value == "under":
        return "under"
    raise ValueError(f"unknown event kind {value!r}")


def _value(extreme: float | None) -> float:
    if extreme is None:  # unreachable through step(); a hand-made state could lack it
        raise ValueError("an event without an extreme")
    return extreme


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def _from_iso(value: str | float | None) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO 8601 time, not {value!r}")
    at = datetime.fromisoformat(value)
    if at.tzinfo is None:
        raise ValueError(f"expected a timezone-aware time, not {value!r}")
    return at


def _opt_str(value: str | float | None) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"expected a string, not {value!r}")
    return value


def _opt_float(value: str | float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, not {value!r}")
    return float(value)
