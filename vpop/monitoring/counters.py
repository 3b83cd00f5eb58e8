"""Two consecutive raw counter readings in, per-second rates out: wraps, resets and gaps handled.

A router reports monotonically increasing counters (interface octets and packets, an nftables
rule's bytes). A rate is the difference of two readings over the time between them, and that
difference lies when the counter wrapped, the router restarted, a counter was cleared, a poll
was late, duplicated or answered out of order. :func:`delta` decides, for each pair, what the
difference really is, and says so in :attr:`Delta.note`. It never returns a negative delta, and
with ``max_rate`` it never returns one larger than the link could carry.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, NamedTuple

Note = Literal["wrap", "reset", "gap", "duplicate"]

WIDTHS = (32, 64)
# a poll later than this many expected intervals is a gap: its rates are averages over the gap
GAP_FACTOR = 3
#: The counters of every polled series, in the order :class:`Last` and :class:`Change` keep them.
COUNTERS = ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets", "errors", "drops")


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


class Last(NamedTuple):
    """A series' previous reading, compact: a :class:`Reading` of the six :data:`COUNTERS`.

    Attributes:
        at: When it was read (timezone-aware).
        values: The counters, in :data:`COUNTERS` order.
        width: Their bit width.
        boot_id: The source's identity, as :attr:`Reading.boot_id`.
    """

    at: datetime
    values: tuple[int, ...]
    width: int
    boot_id: str | None


class Change(NamedTuple):
    """A :class:`Delta` of the six :data:`COUNTERS`, compact (tuples in :data:`COUNTERS` order),
    with the reading to keep as the series' new :class:`Last`.

    ``values`` and ``rates`` are None where :class:`Delta` has none (a first sample, a
    duplicate); ``seconds``, ``note`` and ``usable`` are those of :class:`Delta`.
    """

    last: Last
    seconds: float
    values: tuple[int, ...] | None
    rates: tuple[float, ...] | None
    note: Note | None
    usable: bool


#: One series' step, as :meth:`Steps.each` yields it, flat: ``(name, values, seconds,
#: d0, .., d5, r0, .., r5, note, usable)``, a :class:`Change` without its ``last``, with the
#: series' name and reading, and its deltas and rates (in :data:`COUNTERS` order) spread out,
#: each None where the change has none. Flat, because a poll steps ~400 series: two tuples
#: fewer per series (with boot ids looked up by name and the cheaper Last below) took a
#: fifth off the stepping's cost.
Step = tuple[
    str,
    tuple[int, ...],
    float,
    int | None,
    int | None,
    int | None,
    int | None,
    int | None,
    int | None,
    float | None,
    float | None,
    float | None,
    float | None,
    float | None,
    float | None,
    Note | None,
    bool,
]
_NO_CHANGE = (None,) * 12  # the deltas and rates of a step that has none
_new = tuple.__new__  # a Last without NamedTuple's __new__ in Python: half the cost


class Steps:
    """:func:`delta` for the many series of one poll, read at the same time ``at``.

    A poll reads hundreds of series; building a :class:`Reading` and a :class:`Delta` for
    each was most of its cost. :meth:`step` decides the common case (a later reading of the
    same width and boot id, every counter up, every rate within ``max_rate``) with plain
    arithmetic on the six counters, and hands any other case to :func:`delta` itself, so
    the rules are only those of :func:`delta` (a property test holds the two equal).
    :meth:`each` does it for a whole table of series in one loop (what a poll calls);
    :meth:`step` is :meth:`each` for one.
    """

    def __init__(
        self,
        at: datetime,
        width: int,
        *,
        expected_interval: float,
        max_rate: Mapping[str, float] | None = None,
    ) -> None:
        """Prepare the steps of a poll read at ``at`` with counters ``width`` bits wide.

        Invalid arguments are not refused here but by :func:`delta` on the first
        :meth:`step` (as before: a poll that reads no series raises nothing).
        """
        self.at = at
        self.width = width
        self.expected_interval = expected_interval
        self.max_rate = max_rate
        limits = dict(max_rate or {})
        self._limits = tuple(limits.get(key, math.inf) for key in COUNTERS)
        # the common case only where delta() would accept every argument
        self._fast = (
            expected_interval > 0
            and all(ceiling >= 0 for ceiling in limits.values())
            and width in WIDTHS
            and at.tzinfo is not None
            and at.utcoffset() is not None
        )
        self._gap = GAP_FACTOR * expected_interval if self._fast else 0.0
        self._top = 1 << width if self._fast else 0
        self._seconds: dict[datetime, float] = {}  # most series share their previous time

    def step(self, last: Last | None, values: tuple[int, ...], boot_id: str | None) -> Change:
        """The reading ``values`` (:data:`COUNTERS` order) of one series, after ``last``.

        Returns:
            What changed since ``last``, and the reading to keep as the next ``last``.

        Raises:
            ValueError: a counter is not an int within the width, or an argument of the
                poll is invalid (see :func:`delta`).
        """
        kept = {} if last is None else {"": last}
        boot_ids = {} if boot_id is None else {"": boot_id}
        for found in self.each({"": values}, kept, boot_ids):
            seconds, note, usable = found[2], found[15], found[16]
            if found[3] is None:
                return Change(kept[""], seconds, None, None, note, usable)
            deltas, rates = found[3:9], found[9:15]
            return Change(kept[""], seconds, deltas, rates, note, usable)  # type: ignore[arg-type]
        raise AssertionError("unreachable: one series in, one step out")

    def each(
        self,
        series: Mapping[str, tuple[int, ...]],
        last: dict[str, Last],
        boot_ids: Mapping[str, str],
    ) -> Iterator[Step]:
        """:meth:`step` for every series of a table, updating ``last`` as it goes.

        Args:
            series: Each series' reading (:data:`COUNTERS` order) by name.
            last: Each series' previous reading by name; a series' entry is replaced by its
                new reading when it is stepped.
            boot_ids: Boot ids by series name (a series without one has none).

        Yields:
            A :data:`Step` per series, in ``series`` order.

        Raises:
            ValueError: as :meth:`step`.
        """
        at, width, top, gap, times = self.at, self.width, self._top, self._gap, self._seconds
        l0, l1, l2, l3, l4, l5 = self._limits
        fast = self._fast
        for name, values in series.items():
            before = last.get(name)
            boot_id = boot_ids.get(name)
            if (
                before is not None
                and fast
                and before.width == width
                and (before.boot_id is None or boot_id is None or before.boot_id == boot_id)
                and len(values) == 6  # noqa: PLR2004 (the six COUNTERS)
            ):
                seconds = times.get(before.at)
                if seconds is None:
                    seconds = times[before.at] = (at - before.at).total_seconds()
                # unrolled: this runs for every series of every poll
                a0, a1, a2, a3, a4, a5 = values
                b0, b1, b2, b3, b4, b5 = before.values
                d0, d1, d2, d3, d4, d5 = a0 - b0, a1 - b1, a2 - b2, a3 - b3, a4 - b4, a5 - b5
                if (
                    seconds > 0
                    and d0 >= 0 <= d1
                    and d2 >= 0 <= d3
                    and d4 >= 0 <= d5
                    and type(a0) is int  # a bool or a float is for Reading to refuse
                    and type(a1) is int
                    and type(a2) is int
                    and type(a3) is int
                    and type(a4) is int
                    and type(a5) is int
                    and a0 < top
                    and a1 < top
                    and a2 < top
                    and a3 < top
                    and a4 < top
                    and a5 < top
                ):
                    r0, r1, r2 = d0 / seconds, d1 / seconds, d2 / seconds
                    r3, r4, r5 = d3 / seconds, d4 / seconds, d5 / seconds
                    if r0 <= l0 and r1 <= l1 and r2 <= l2 and r3 <= l3 and r4 <= l4 and r5 <= l5:
                        last[name] = _new(Last, (at, values, width, boot_id))
                        note: Note | None = "gap" if seconds > gap else None
                        # fmt: off
                        yield (name, values, seconds, d0, d1, d2, d3, d4, d5,
                               r0, r1, r2, r3, r4, r5, note, True)
                        # fmt: on
                        continue
            change = self._general(before, values, boot_id)
            last[name] = change.last
            spread = _NO_CHANGE if change.values is None else (*change.values, *change.rates)  # type: ignore[misc]
            yield (name, values, change.seconds, *spread, change.note, change.usable)

    def _general(self, last: Last | None, values: tuple[int, ...], boot_id: str | None) -> Change:
        previous = None
        if last is not None:
            before = dict(zip(COUNTERS, last.values, strict=True))
            previous = Reading(last.at, before, last.width, last.boot_id)
        current = Reading(self.at, dict(zip(COUNTERS, values, strict=True)), self.width, boot_id)
        found = delta(
            previous, current, expected_interval=self.expected_interval, max_rate=self.max_rate
        )
        deltas = rates = None
        if found.values:
            deltas = tuple(found.values[key] for key in COUNTERS)
            rates = tuple(found.rates[key] for key in COUNTERS)
        return Change(
            Last(self.at, values, self.width, boot_id),
            found.seconds,
            deltas,
            rates,
            found.note,
            found.usable,
        )
