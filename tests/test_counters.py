"""vpop.counters: two readings in, honest deltas out; never negative, never huge."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from vpop.monitoring.counters import Delta, Reading, delta

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TOP32 = 2**32
TOP64 = 2**64
INTERVAL = 60.0


def reading(seconds: float, width: int = 32, boot_id: str | None = None, **values: int) -> Reading:
    return Reading(at=T0 + timedelta(seconds=seconds), values=values, width=width, boot_id=boot_id)


# id -> (previous, current, max_rate, note, usable, values)
CASES: dict[str, tuple[Reading | None, Reading, dict[str, float] | None, Any, bool, dict[str, int]]]
CASES = {
    "first-sample": (None, reading(0, rx_bytes=5), None, None, False, {}),
    "duplicate-same-at": (
        reading(0, rx_bytes=5),
        reading(0, rx_bytes=9),
        None,
        "duplicate",
        False,
        {},
    ),
    "out-of-order": (
        reading(60, rx_bytes=500),
        reading(30, rx_bytes=400),
        None,
        "duplicate",
        False,
        {},
    ),
    "plain-increase": (
        reading(0, rx_bytes=1000, tx_bytes=50),
        reading(60, rx_bytes=7000, tx_bytes=50),
        None,
        None,
        True,
        {"rx_bytes": 6000, "tx_bytes": 0},
    ),
    "32-bit-wrap": (
        reading(0, rx_bytes=TOP32 - 1000),
        reading(60, rx_bytes=500),
        None,
        "wrap",
        True,
        {"rx_bytes": 1500},
    ),
    "32-bit-wrap-within-max-rate": (
        reading(0, rx_bytes=TOP32 - 6000),
        reading(60, rx_bytes=0),
        {"rx_bytes": 100.0},
        "wrap",
        True,
        {"rx_bytes": 6000},
    ),
    "32-bit-wrap-from-top-value": (
        reading(0, rx_bytes=TOP32 - 1),
        reading(60, rx_bytes=0),
        None,
        "wrap",
        True,
        {"rx_bytes": 1},
    ),
    "32-bit-decrease-beyond-half-range-is-reset": (
        reading(0, rx_bytes=1_000_000),
        reading(60, rx_bytes=10),
        None,
        "reset",
        True,
        {"rx_bytes": 10},
    ),
    "32-bit-wrap-above-max-rate-is-reset": (
        reading(0, rx_bytes=TOP32 - 1_000_000),
        reading(60, rx_bytes=600),
        {"rx_bytes": 1000.0},
        "reset",
        True,
        {"rx_bytes": 600},
    ),
    "64-bit-wrap-near-top-is-reset": (
        reading(0, width=64, rx_bytes=TOP64 - 10),
        reading(60, width=64, rx_bytes=5),
        None,
        "reset",
        True,
        {"rx_bytes": 5},
    ),
    "64-bit-near-top-increase": (
        reading(0, width=64, rx_bytes=TOP64 - 100),
        reading(60, width=64, rx_bytes=TOP64 - 1),
        None,
        None,
        True,
        {"rx_bytes": 99},
    ),
    "64-bit-decrease-is-reset": (
        reading(0, width=64, rx_bytes=10**12, tx_bytes=10**9),
        reading(60, width=64, rx_bytes=10**6, tx_bytes=10**9 + 60),
        None,
        "reset",
        True,
        {"rx_bytes": 10**6, "tx_bytes": 60},
    ),
    "boot-id-change-is-reset-even-when-counter-grew": (
        reading(0, width=64, boot_id="up-1000", rx_bytes=1000),
        reading(60, width=64, boot_id="up-2000", rx_bytes=5000),
        None,
        "reset",
        True,
        {"rx_bytes": 5000},
    ),
    "boot-id-change-with-implausible-current": (
        reading(0, width=64, boot_id="a", rx_bytes=10**9),
        reading(60, width=64, boot_id="b", rx_bytes=10**12),
        {"rx_bytes": 1.25e8},
        "reset",
        False,
        {"rx_bytes": 0},
    ),
    "boot-id-unknown-before-is-not-a-reset": (
        reading(0, width=64, boot_id=None, rx_bytes=1000),
        reading(60, width=64, boot_id="up-2000", rx_bytes=5000),
        None,
        None,
        True,
        {"rx_bytes": 4000},
    ),
    "width-change-is-reset": (
        reading(0, width=32, rx_bytes=TOP32 - 5),
        reading(60, width=64, rx_bytes=TOP32 + 100),
        None,
        "reset",
        True,
        {"rx_bytes": TOP32 + 100},
    ),
    "gap": (
        reading(0, rx_bytes=0),
        reading(4 * INTERVAL, rx_bytes=2400),
        None,
        "gap",
        True,
        {"rx_bytes": 2400},
    ),
    "three-intervals-is-not-a-gap": (
        reading(0, rx_bytes=0),
        reading(3 * INTERVAL, rx_bytes=1800),
        None,
        None,
        True,
        {"rx_bytes": 1800},
    ),
    "reset-outranks-gap": (
        reading(0, width=64, rx_bytes=5000),
        reading(10 * INTERVAL, width=64, rx_bytes=100),
        None,
        "reset",
        True,
        {"rx_bytes": 100},
    ),
    "max-rate-guard-on-increase": (
        reading(0, width=64, rx_bytes=0, tx_bytes=0),
        reading(60, width=64, rx_bytes=10**15, tx_bytes=6000),
        {"rx_bytes": 1.25e9, "tx_bytes": 1.25e9},
        "reset",
        False,
        {"rx_bytes": 0, "tx_bytes": 6000},
    ),
    "max-rate-guard-at-exact-limit-passes": (
        reading(0, width=64, rx_bytes=0),
        reading(60, width=64, rx_bytes=6000),
        {"rx_bytes": 100.0},
        None,
        True,
        {"rx_bytes": 6000},
    ),
    "keys-in-one-reading-only-are-left-out": (
        reading(0, rx_bytes=0, drops=3),
        reading(60, rx_bytes=60, errors=1),
        None,
        None,
        True,
        {"rx_bytes": 60},
    ),
}


@pytest.mark.parametrize(
    ("previous", "current", "max_rate", "note", "usable", "values"),
    list(CASES.values()),
    ids=list(CASES),
)
def test_delta_rules(
    previous: Reading | None,
    current: Reading,
    max_rate: dict[str, float] | None,
    note: str | None,
    usable: bool,
    values: dict[str, int],
) -> None:
    result = delta(previous, current, expected_interval=INTERVAL, max_rate=max_rate)
    assert (result.note, result.usable, result.values) == (note, usable, values)
    assert result.rates == {key: value / result.seconds for key, value in values.items()}


def test_gap_rates_are_averages_over_the_gap() -> None:
    result = delta(reading(0, rx_bytes=0), reading(600, rx_bytes=6000), expected_interval=60)
    assert (result.note, result.seconds, result.rates) == ("gap", 600.0, {"rx_bytes": 10.0})


def test_first_and_duplicate_carry_no_rates() -> None:
    first = delta(None, reading(0, rx_bytes=1), expected_interval=60)
    assert first == Delta(seconds=0.0, values={}, rates={}, note=None, usable=False)
    late = delta(reading(60, rx_bytes=1), reading(45, rx_bytes=2), expected_interval=60)
    assert (late.seconds, late.rates) == (-15.0, {})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"at": datetime(2026, 3, 1), "values": {}, "width": 32}, "timezone-aware"),
        ({"at": T0, "values": {}, "width": 16}, "32 or 64"),
        ({"at": T0, "values": {"rx_bytes": TOP32}, "width": 32}, "outside a 32-bit"),
        ({"at": T0, "values": {"rx_bytes": -1}, "width": 64}, "outside a 64-bit"),
        ({"at": T0, "values": {"rx_bytes": 1.5}, "width": 64}, "must be an int"),
        ({"at": T0, "values": {"rx_bytes": True}, "width": 64}, "must be an int"),
    ],
    ids=["naive-time", "width-16", "above-32-bits", "negative", "float", "bool"],
)
def test_reading_refuses_impossible_values(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Reading(**kwargs)


def test_reading_keeps_its_own_copy_of_values() -> None:
    values = {"rx_bytes": 1}
    recorded = Reading(at=T0, values=values, width=64)
    values["rx_bytes"] = 99
    assert recorded.values == {"rx_bytes": 1}


@pytest.mark.parametrize(
    ("interval", "max_rate"),
    [(0.0, None), (-60.0, None), (60.0, {"rx_bytes": -1.0}), (60.0, {"rx_bytes": float("nan")})],
    ids=["zero-interval", "negative-interval", "negative-max-rate", "nan-max-rate"],
)
def test_delta_refuses_bad_arguments(interval: float, max_rate: dict[str, float] | None) -> None:
    with pytest.raises(ValueError):
        delta(None, reading(0), expected_interval=interval, max_rate=max_rate)


def _counter(rng: random.Random, width: int) -> int:
    top = 1 << width
    return rng.choice(
        [
            0,
            rng.randrange(1000),
            rng.randrange(top),
            top - 1 - rng.randrange(1000),
            top // 2 + rng.randrange(-1000, 1000),
        ]
    )


def test_never_negative_never_huge_over_random_pairs() -> None:
    rng = random.Random(20260301)
    keys = ("rx_bytes", "tx_bytes", "errors")
    for _ in range(10_000):
        width = rng.choice((32, 64))
        widths = (width, width if rng.random() < 0.95 else 96 - width)
        boots = [rng.choice((None, "a", "b")) for _ in range(2)]
        seconds = rng.choice((0.0, -5.0, 1.0, 60.0, 61.5, 250.0, 3600.0))
        limit = rng.choice((None, 1e3, 1.25e8, 1.25e10))
        previous = Reading(
            at=T0,
            values={key: _counter(rng, widths[0]) for key in keys},
            width=widths[0],
            boot_id=boots[0],
        )
        current = Reading(
            at=T0 + timedelta(seconds=seconds),
            values={key: _counter(rng, widths[1]) for key in keys},
            width=widths[1],
            boot_id=boots[1],
        )
        max_rate = None if limit is None else dict.fromkeys(keys, limit)
        result = delta(previous, current, expected_interval=60.0, max_rate=max_rate)
        assert result.note in (None, "wrap", "reset", "gap", "duplicate")
        if seconds <= 0:
            assert (result.note, result.usable, result.values) == ("duplicate", False, {})
            continue
        for key, value in result.values.items():
            before, now = previous.values[key], current.values[key]
            # the only values delta() may produce: growth, one 32-bit wrap, current, nothing
            allowed = {now - before, 2**32 - before + now, now, 0}
            assert value >= 0 and value in allowed, (previous, current, result)
            assert value < 2 ** widths[1]
            if limit is not None:
                assert value / seconds <= limit, (previous, current, result)
            if now < before and widths == (64, 64):
                assert value in (now, 0), "a 64-bit decrease is a reset, never a wrap"
            if now < before and value == 2**32 - before + now:
                assert widths == (32, 32) and value <= 2**31
            assert result.rates[key] == value / seconds
        if not result.usable:
            assert result.note == "reset" and 0 in result.values.values()
