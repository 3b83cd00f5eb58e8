"""Which ISP to recommend to a subscriber: their stated preference, applied to live figures.

Pure: no database, no clock, no Flask. The portal (``webhooks/portal.py``) gathers each ISP's
current QoS (:func:`vpop.reports.current_qos`, figures at most 5 minutes old) and cheapest
plan, and this module picks one and says why in a sentence a subscriber can read.

The rule (also in ``docs/portal.md``):

1. Only *measured* ISPs are candidates: those with a current latency and loss figure. An ISP
   that nobody could measure in the last 5 minutes may be down; it is never recommended.
2. Among them, ISPs losing more than :data:`MAX_LOSS_PCT` percent of probes are left out,
   unless every measured ISP does.
3. The subscriber's ``profile["prefer"]`` picks the figure: ``latency`` (lowest),
   ``throughput`` (highest measured throughput), ``price`` (cheapest monthly plan) or
   ``loss`` (lowest loss). Without a valid preference, latency decides. Ties are broken by
   latency, then loss, then jitter, then the ISP id, so the pick is deterministic.
4. When the preferred figure is missing for every candidate (no throughput measured, no
   priced plan, or prices in different currencies), latency decides and the reason says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

PREFERENCES = ("latency", "throughput", "price", "loss")
DEFAULT_PREFERENCE = "latency"
# probes lost above this share mean the ISP is not carrying traffic well enough to suggest
MAX_LOSS_PCT = 5.0

_WISH = {
    "latency": "a quick response (low latency)",
    "throughput": "speed (high throughput)",
    "price": "a low price",
    "loss": "a steady connection (low loss)",
}


@dataclass(frozen=True)
class Candidate:
    """One ISP as the recommendation sees it: current figures and its cheapest plan.

    Attributes:
        isp: The ISP id (``isp-b``).
        name: The ISP's display name.
        latency_ms: Current mean round-trip time, or None when not measured recently.
        jitter_ms: Current jitter, or None.
        loss_pct: Current probe loss in percent, or None.
        throughput_mbps: Current measured throughput, or None.
        price_minor: Monthly price of the cheapest plan, in minor units, or None.
        currency: The currency of that price (ISO 4217), or None.
    """

    isp: str
    name: str
    latency_ms: float | None = None
    jitter_ms: float | None = None
    loss_pct: float | None = None
    throughput_mbps: float | None = None
    price_minor: int | None = None
    currency: str | None = None


class Recommendation(NamedTuple):
    """The recommended ISP id and the reason for the pick, as one sentence."""

    isp: str
    reason: str


def format_figure(value: float) -> str:
    """A measured figure with the precision its size deserves: ``0.083``, ``4.12``, ``12.3``,
    ``3411``; ``0`` for zero. (Lab latencies are a fraction of a millisecond: one fixed
    decimal would show every ISP as ``0.1``.)"""
    size = abs(value)
    if size == 0:
        return "0"
    digits = 0 if size >= 100 else 1 if size >= 10 else 2 if size >= 1 else 3
    return f"{value:.{digits}f}"


def preference(profile: Mapping[str, Any] | None) -> tuple[str, bool]:
    """The figure a subscriber prefers, and whether they said so themselves.

    Args:
        profile: The subscriber's profile (``{"prefer": "latency"}``), or None.

    Returns:
        ``(preference, explicit)``: one of :data:`PREFERENCES`, and False when the profile
        has no valid ``prefer`` (then the preference is :data:`DEFAULT_PREFERENCE`).
    """
    wanted = profile.get("prefer") if profile else None
    if isinstance(wanted, str) and wanted in PREFERENCES:
        return wanted, True
    return DEFAULT_PREFERENCE, False


def recommend(
    candidates: Sequence[Candidate], profile: Mapping[str, Any] | None = None
) -> Recommendation | None:
    """Pick the ISP to recommend (see the module docstring for the rule).

    Args:
        candidates: Every ISP on offer with its current figures.
        profile: The subscriber's profile, or None for an unknown visitor.

    Returns:
        The pick and its reason, or None when no ISP has current figures.
    """
    measured = [c for c in candidates if _known(c.latency_ms) and _known(c.loss_pct)]
    if not measured:
        return None
    healthy = [c for c in measured if _value(c.loss_pct) <= MAX_LOSS_PCT]
    pool = healthy or measured
    wanted, explicit = preference(profile)
    why = (
        f"you asked for {_WISH[wanted]}"
        if explicit
        else "no preference is set, so the quickest response decides"
    )
    pick, sentence = _pick(wanted, pool)
    if pick is None:
        pick, sentence = _pick("latency", pool)
        why = f"you asked for {_WISH[wanted]}, but {_missing(wanted)}, so latency decides"
    assert pick is not None  # every candidate in the pool has a latency figure
    left_out = len(measured) - len(pool)
    note = (
        f" {left_out} ISP{'s' if left_out > 1 else ''} losing more than "
        f"{MAX_LOSS_PCT:g} % of probes {'were' if left_out > 1 else 'was'} left out."
        if left_out
        else ""
    )
    return Recommendation(pick.isp, f"{pick.name} {sentence}; {why}.{note}")


@dataclass(frozen=True)
class _Rule:
    """How one preference ranks candidates (lower ``rank`` is better) and words the pick."""

    usable: Callable[[Candidate], bool]
    rank: Callable[[Candidate], float]
    describe: Callable[[Candidate], str]
    phrase: str


_RULES = {
    "latency": _Rule(
        usable=lambda c: True,
        rank=lambda c: _value(c.latency_ms),
        describe=lambda c: f"{format_figure(_value(c.latency_ms))} ms",
        phrase="answers fastest",
    ),
    "throughput": _Rule(
        usable=lambda c: _known(c.throughput_mbps),
        rank=lambda c: -_value(c.throughput_mbps),
        describe=lambda c: f"{format_figure(_value(c.throughput_mbps))} Mbit/s",
        phrase="has the highest measured throughput",
    ),
    "price": _Rule(
        usable=lambda c: c.price_minor is not None and bool(c.currency),
        rank=lambda c: float(c.price_minor or 0),
        describe=lambda c: _money(c.price_minor or 0, c.currency or ""),
        phrase="has the cheapest plan",
    ),
    "loss": _Rule(
        usable=lambda c: True,
        rank=lambda c: _value(c.loss_pct),
        describe=lambda c: f"{format_figure(_value(c.loss_pct))} % loss",
        phrase="loses the fewest probes",
    ),
}


def _pick(wanted: str, pool: Sequence[Candidate]) -> tuple[Candidate | None, str]:
    """The best candidate by ``wanted`` and the phrase that says why, or (None, "")."""
    rule = _RULES[wanted]
    usable = [c for c in pool if rule.usable(c)]
    # prices in different currencies are not comparable without an exchange rate
    if wanted == "price" and len({c.currency for c in usable}) > 1:
        usable = []
    if not usable:
        return None, ""
    ordered = sorted(usable, key=lambda c: (rule.rank(c), *_tie_break(c)))
    best = ordered[0]
    phrase = f"{rule.phrase} right now ({rule.describe(best)}"
    if len(ordered) > 1:
        phrase += f", against {rule.describe(ordered[1])} for {ordered[1].name}"
    return best, phrase + ")"


def _tie_break(c: Candidate) -> tuple[float, float, float, str]:
    return (
        _value(c.latency_ms),
        _value(c.loss_pct),
        _value(c.jitter_ms) if _known(c.jitter_ms) else math.inf,
        c.isp,
    )


def _missing(wanted: str) -> str:
    return {
        "throughput": "no ISP's throughput was measured recently",
        "price": "the plans cannot be compared by price",
    }.get(wanted, "that figure is missing")


def _known(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _value(value: float | None) -> float:
    """A figure already checked with :func:`_known` (infinity otherwise: sorts last)."""
    return float(value) if value is not None and math.isfinite(value) else math.inf


def _money(minor: int, currency: str) -> str:
    return f"{minor / 100:.2f} {currency} a month"
