"""Two consecutive raw counter readings in, per-second rates out: wraps, resets and gaps handled.

A router reports monotonically increasing counters (interface octets and packets, an nftables
rule's bytes). A rate is the difference of two readings over the time between them, and that
difference lies when the counter wrapped, the router restarted, a counter was cleared, a poll
was late, duplicated or answered out of order. :func:`delta` decides, for each pair, what the
difference really is, and says so in :attr:`Delta.note`. It never returns a negative delta, and
with ``max_rate`` it never returns one larger than the link could carry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

Note = Literal["wrap", "reset", "gap", "duplicate"]

WIDTHS = (32, 64)
# a poll later than this many expected intervals is a gap: its rates are averages over the gap
GAP_FACTOR = 3


@dataclass(frozen=True)
class Reading:
    """One poll of one counter source.

    Attributes:
        at: When the counters were read (timezone-aware).
        values: Counter values by name, e.g. ``rx_bytes``, ``tx_bytes``, ``rx_packets``,
            ``tx_packets``, ``errors``, ``drops``; each in ``0 .. 2**width - 1``.
        width: The counters' bit width as the platform reports them: 32 or 64.
        boot_id: An identity of the counter source (router boot time, nftables table handle);
            a change between two readings means the counters restarted. None when unknown.
    """

    at: datetime
    values: Mapping[str, int]
    width: int
    boot_id: str | None = None

    def __post_init__(self) -> None:
        if self.at.tzinfo is None or self.at.utcoffset() is None:
            raise ValueError("Reading.at must be timezone-aware")
        if self.width not in WIDTHS:
            raise ValueError(f"Reading.width must be 32 or 64, not {self.width!r}")
        top = 1 << self.width
        for key, value in self.values.items():
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"counter {key!r} must be an int, not {value!r}")
            if not 0 <= value < top:
                raise ValueError(f"counter {key!r}={value} is outside a {self.width}-bit counter")
        # a private copy: a caller mutating its dict later must not change a recorded reading
        object.__setattr__(self, "values", dict(self.values))


@dataclass(frozen=True)
class Delta:
    """What happened between two readings.

    Attributes:
        seconds: Time between the readings (zero or negative for a duplicate or out-of-order
            reading, 0.0 for a first sample).
        values: Non-negative increase of each counter present in both readings.
        rates: ``values`` per second.
        note: None, ``"wrap"``, ``"reset"``, ``"gap"`` or ``"duplicate"`` (see :func:`delta`).
        usable: Whether ``rates`` are measurements that may be stored and acted on.
    """

    seconds: float
    values: dict[str, int] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)
    note: Note | None = None
    usable: bool = False


def delta(
    previous: Reading | None,
    current: Reading,
    *,
    expected_interval: float,
    max_rate: Mapping[str, float] | None = None,
) -> Delta:
    """Turn two consecutive readings of one counter source into deltas and rates.

    Rules, in order:

    1. **First sample** (``previous`` is None): nothing to compare; ``usable`` False, ``note``
       None.
    2. **Duplicate** (``current.at <= previous.at``: the same poll answered twice, or an answer
       arriving out of order): ``note`` ``"duplicate"``, ``usable`` False, no values. The
       caller keeps ``previous`` as its baseline.
    3. **Reset of the source**: when both readings carry a ``boot_id`` and they differ, or the
       width changed (the poller moved from 32- to 64-bit counters), every counter restarted
       from zero after ``previous``: each delta is ``current`` itself (counting since the
       restart), unless ``max_rate`` says that is implausible (rule 7). ``note`` ``"reset"``.
    4. **Counter went down, 64 bits**: a 64-bit counter takes decades to wrap even at 100
       Gbit/s, so a decrease is a reset (cleared counters, a restart nobody told us about),
       even when ``previous`` is close to ``2**64``: the delta is ``current`` (rule 7 applies),
       never ``2**64 - previous + current``. ``note`` ``"reset"``.
    5. **Counter went down, 32 bits**: a single wrap gives ``2**32 - previous + current``. It is
       accepted as a wrap (``note`` ``"wrap"``) only when it is at most half the counter's range
       (a poller must sample a counter at least twice per wrap period to see wraps at all, so a
       real wrap between two polls never covers more than half the range) and, when
       ``max_rate`` has the key, its rate is at most ``max_rate``. Otherwise ``current`` is
       small relative to ``previous`` in a way only a restart explains: a reset, as in rule 4.
    6. **Counter went up**: the delta is ``current - previous``.
    7. **Plausibility guard**: any key whose delta (from rules 3 to 6) implies a rate above
       ``max_rate[key]`` is treated as a reset whose size is unknown: its delta is 0, ``note``
       ``"reset"``, and ``usable`` is False, because a rate of 0 there would be made up. Keys
       without a ``max_rate`` are trusted (after a reset, ``current`` is what the source
       counted since restarting, as Prometheus's ``rate()`` assumes); pass ``max_rate`` (e.g.
       link speed in bytes per second, with a margin) to rule out huge bogus values.
    8. **Gap** (more than ``3 * expected_interval`` since ``previous``): the deltas are computed
       as above and the rates are averages over the whole gap; ``usable`` stays True. A 32-bit
       counter may have wrapped more than once during a long gap; rule 5 then undercounts
       rather than invents traffic.

    ``note`` names the most significant finding across keys: ``"reset"`` over ``"wrap"`` over
    ``"gap"``. Keys present in only one of the readings are left out.

    Args:
        previous: The reading before ``current``, or None for the first poll of a source.
        current: The reading just taken.
        expected_interval: The poll interval in seconds (positive).
        max_rate: Optional ceiling per key, in counter units per second.

    Returns:
        The deltas, rates, note and whether the rates are usable.

    Raises:
        ValueError: When ``expected_interval`` is not positive or a ``max_rate`` is negative.
    """
    if not expected_interval > 0:
        raise ValueError(f"expected_interval must be positive, not {expected_interval!r}")
    limits = dict(max_rate or {})
    for key, ceiling in limits.items():
        if not ceiling >= 0:
            raise ValueError(f"max_rate[{key!r}] must be non-negative, not {ceiling!r}")
    if previous is None:
        return Delta(seconds=0.0)
    seconds = (current.at - previous.at).total_seconds()
    if seconds <= 0:
        return Delta(seconds=seconds, note="duplicate")

    source_reset = current.width != previous.width or (
        previous.boot_id is not None
        and current.boot_id is not None
        and previous.boot_id != current.boot_id
    )
    values: dict[str, int] = {}
    wrapped = reset = discarded = False
    for key in current.values.keys() & previous.values.keys():
        now, before = current.values[key], previous.values[key]
        limit = limits.get(key)
        if source_reset:
            value, reset = now, True
        elif now >= before:
            value = now - before
        else:
            wrap = _wrapped(before, now, current.width, seconds, limit)
            if wrap is None:
                value, reset = now, True
            else:
                value, wrapped = wrap, True
        if limit is not None and value / seconds > limit:
            value, reset, discarded = 0, True, True
        values[key] = value

    note: Note | None = None
    if reset:
        note = "reset"
    elif wrapped:
        note = "wrap"
    elif seconds > GAP_FACTOR * expected_interval:
        note = "gap"
    return Delta(
        seconds=seconds,
        values=values,
        rates={key: value / seconds for key, value in values.items()},
        note=note,
        usable=not discarded,
    )


def _wrapped(before: int, now: int, width: int, seconds: float, limit: float | None) -> int | None:
    """The wrapped delta of a counter that went down, or None when only a reset explains it."""
    if width == 64:
        return None
    wrapped = (1 << width) - before + now
    if wrapped > 1 << (width - 1):
        return None
    if limit is not None and wrapped / seconds > limit:
        return None
    return wrapped
