"""vpop.utilisation: percent of committed rate, the event state machine, LibreNMS's 95th."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import pytest

from vpop.leasing.utilisation import (
    EventState,
    Rules,
    Transition,
    percentile_95,
    percentile_95_index,
    replay,
    step,
    utilisation_pct,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RULES = Rules(under_pct=10, over_pct=100, hysteresis_pct=5, event_seconds=60)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def polls(
    values: Iterable[float], every: float = 10, start: float = 0
) -> list[tuple[datetime, float]]:
    return [(at(start + i * every), pct) for i, pct in enumerate(values)]


def summary(transitions: list[Transition]) -> list[tuple[str, str, float, float]]:
    """(action, kind, seconds after T0, extreme) per transition: easy to read in asserts."""
    return [(t.action, t.kind, (t.at - T0).total_seconds(), t.extreme_pct) for t in transitions]


@pytest.mark.parametrize(
    ("rx", "tx", "committed", "expected"),
    [
        (50e6, 10e6, 100, 50.0),
        (10e6, 120e6, 100, 120.0),
        (0.0, 0.0, 100, 0.0),
        (1e9, 0.0, 1000, 100.0),
        (2.5e6, 0.0, 10, 25.0),
    ],
    ids=["rx-busier", "tx-busier-over-committed", "idle", "gigabit-full", "small-lease"],
)
def test_utilisation_pct(rx: float, tx: float, committed: int, expected: float) -> None:
    assert utilisation_pct(rx, tx, committed) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("rx", "tx", "committed"),
    [(1.0, 1.0, 0), (1.0, 1.0, -10), (-1.0, 0.0, 100), (float("nan"), 0.0, 100)],
    ids=["zero-committed", "negative-committed", "negative-rate", "nan-rate"],
)
def test_utilisation_pct_refuses_nonsense(rx: float, tx: float, committed: int) -> None:
    with pytest.raises(ValueError):
        utilisation_pct(rx, tx, committed)


def test_over_opens_exactly_at_event_seconds_not_one_poll_early() -> None:
    samples = polls([110.0] * 7)  # t = 0, 10, ..., 60
    assert replay(samples[:-1], RULES) == []  # 50 s of over: not yet
    assert summary(replay(samples, RULES)) == [("open", "over", 60.0, 110.0)]


def test_opens_at_first_poll_reaching_the_duration_when_polls_do_not_align() -> None:
    samples = polls([120.0] * 4, every=25)  # t = 0, 25, 50, 75
    assert summary(replay(samples, RULES)) == [("open", "over", 75.0, 120.0)]


def test_zero_event_seconds_opens_and_closes_at_once() -> None:
    rules = Rules(under_pct=10, over_pct=100, hysteresis_pct=5, event_seconds=0)
    transitions = replay(polls([50.0, 101.0, 97.0, 94.0, 50.0]), rules)
    assert summary(transitions) == [("open", "over", 10.0, 101.0), ("close", "over", 30.0, 101.0)]


def test_sustained_over_is_one_event_closed_after_traffic_returns_to_normal() -> None:
    samples = polls([50.0] * 3 + [115.0] * 60 + [60.0] * 12)
    # over from t=30: opens at 90; back inside from t=630: closes at 690
    assert summary(replay(samples, RULES)) == [
        ("open", "over", 90.0, 115.0),
        ("close", "over", 690.0, 115.0),
    ]


def test_traffic_stopping_closes_over_and_opens_under() -> None:
    samples = polls([120.0] * 10 + [0.0] * 10)  # traffic stops at t=100
    assert summary(replay(samples, RULES)) == [
        ("open", "over", 60.0, 120.0),
        ("close", "over", 160.0, 120.0),
        ("open", "under", 160.0, 0.0),
    ]


def test_switch_over_to_under_opens_under_after_its_own_duration() -> None:
    # over, then 30 s inside the band (clearing starts), then idle: the over event closes
    # 60 s after clearing began, the under event 60 s after idling began
    samples = polls([130.0] * 8 + [50.0] * 3 + [2.0] * 10)
    assert summary(replay(samples, RULES)) == [
        ("open", "over", 60.0, 130.0),
        ("close", "over", 140.0, 130.0),
        ("open", "under", 170.0, 2.0),
    ]


def test_idle_lease_opens_under_and_tracks_lowest() -> None:
    samples = polls([40.0, 8.0, 3.0, 5.0, 1.5, 4.0, 6.0, 9.0, 9.5])
    # under from t=10, so it opens at t=70 with the lowest of the run so far
    assert summary(replay(samples, RULES)) == [("open", "under", 70.0, 1.5)]


def test_under_closes_only_above_hysteresis_margin() -> None:
    samples = polls([5.0] * 7 + [12.0] * 20 + [16.0] * 7)  # 12 is inside, not past 10 + 5
    assert summary(replay(samples, RULES)) == [
        ("open", "under", 60.0, 5.0),
        ("close", "under", 330.0, 5.0),
    ]


def test_extreme_covers_the_run_before_opening_and_the_whole_event() -> None:
    samples = polls([130.0, 105.0, 102.0, 101.0, 110.0, 101.0, 104.0, 140.0, 120.0])
    samples += polls([50.0] * 7, start=90)
    assert summary(replay(samples, RULES)) == [
        ("open", "over", 60.0, 130.0),
        ("close", "over", 150.0, 140.0),
    ]


@pytest.mark.parametrize("event_seconds", [0, 30, 60], ids=["at-once", "30s", "60s"])
@pytest.mark.parametrize(
    ("low", "high"),
    [(99.0, 101.0), (96.0, 104.0), (9.0, 11.0)],
    ids=["over-99-101", "over-96-104", "under-9-11"],
)
def test_flapping_around_a_threshold_opens_at_most_one_event(
    event_seconds: float, low: float, high: float
) -> None:
    rules = Rules(under_pct=10, over_pct=100, hysteresis_pct=5, event_seconds=event_seconds)
    samples = polls([high if i % 2 else low for i in range(100)])
    transitions = replay(samples, rules)
    opens = [t for t in transitions if t.action == "open"]
    assert len(opens) <= 1
    assert [t for t in transitions if t.action == "close"] == []
    if event_seconds > 10:  # the run restarts at every poll back inside: never opens
        assert opens == []


def test_flapping_after_opening_does_not_close_inside_hysteresis() -> None:
    samples = polls([120.0] * 7 + [94.0 if i % 2 else 96.0 for i in range(100)])
    assert summary(replay(samples, RULES)) == [("open", "over", 60.0, 120.0)]


def test_missing_polls_do_not_break_a_run() -> None:
    samples = [(at(0), 120.0), (at(45), 125.0), (at(61), 121.0)]
    assert summary(replay(samples, RULES)) == [("open", "over", 61.0, 125.0)]


def test_step_returns_a_new_state_and_keeps_the_old() -> None:
    start = EventState()
    state, transitions = step(start, at(0), 150.0, RULES)
    assert start == EventState()
    assert transitions == []
    assert state == EventState(candidate="over", candidate_since=at(0), candidate_extreme=150.0)


def test_state_survives_json_between_every_poll() -> None:
    rng = random.Random(7)
    levels = [0.0, 3.0, 12.0, 50.0, 96.0, 99.0, 104.0, 150.0]
    runs = [[rng.choice(levels)] * rng.randint(1, 12) for _ in range(100)]
    samples = polls([pct for run in runs for pct in run])
    state, through_json = EventState(), []
    for when, pct in samples:
        state, happened = step(state, when, pct, RULES)
        through_json.extend(happened)
        state = EventState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert through_json == replay(samples, RULES)
    assert {(t.action, t.kind) for t in through_json} == {
        ("open", "over"),
        ("close", "over"),
        ("open", "under"),
        ("close", "under"),
    }


def test_transition_is_a_plain_tuple() -> None:
    (transition,) = replay(polls([200.0] * 7), RULES)
    assert tuple(transition) == ("open", "over", at(60), 200.0)


@pytest.mark.parametrize(
    "data",
    [
        {"kind": "sideways"},
        {"candidate": 3},
        {"candidate_since": "2026-03-01T12:00:00"},
        {"clearing_since": 12},
        {"extreme": "high"},
    ],
    ids=["unknown-kind", "candidate-not-text", "naive-time", "time-not-text", "extreme-text"],
)
def test_state_from_dict_refuses_bad_fields(data: dict[str, str | float | None]) -> None:
    with pytest.raises(ValueError):
        EventState.from_dict(data)


def test_step_refuses_naive_and_backwards_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        step(EventState(), datetime(2026, 3, 1), 50.0, RULES)
    state, _ = step(EventState(), at(60), 150.0, RULES)
    with pytest.raises(ValueError, match="older"):
        step(state, at(30), 150.0, RULES)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"under_pct": 100, "over_pct": 100, "hysteresis_pct": 5, "event_seconds": 60},
        {"under_pct": -1, "over_pct": 100, "hysteresis_pct": 5, "event_seconds": 60},
        {"under_pct": 10, "over_pct": 100, "hysteresis_pct": -5, "event_seconds": 60},
        {"under_pct": 10, "over_pct": 100, "hysteresis_pct": 5, "event_seconds": -1},
    ],
    ids=["under-equals-over", "negative-under", "negative-hysteresis", "negative-duration"],
)
def test_rules_refuse_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Rules(**kwargs)


@pytest.mark.parametrize(
    ("n", "expected"),
    [(1, 1.0), (20, 19.0), (100, 95.0), (11, 10.0), (10, 10.0), (230, 219.0)],
    ids=["n1", "n20", "n100", "n11-not-ceil", "n10-tie-rounds-up", "n230-float-tie"],
)
def test_percentile_95_librenms_examples(n: int, expected: float) -> None:
    rates = [float(i) for i in range(1, n + 1)]
    random.Random(n).shuffle(rates)
    assert percentile_95(rates) == expected


def test_percentile_95_single_sample() -> None:
    assert percentile_95([123.4]) == 123.4


def test_percentile_95_of_a_month_of_5_minute_samples() -> None:
    # 30 days x 288 samples: LibreNMS takes index round(8640 * 0.95) - 1 = 8207
    rates = [0.0] * 8207 + [1e6] + [9e9] * 432
    random.Random(1).shuffle(rates)
    assert percentile_95(rates) == 1e6


@pytest.mark.parametrize(
    ("n", "index"),
    [(1, 0), (2, 1), (10, 9), (11, 9), (19, 17), (20, 18), (30, 28), (100, 94), (230, 218)],
)
def test_percentile_95_index_is_php_round_minus_one(n: int, index: int) -> None:
    assert percentile_95_index(n) == index


@pytest.mark.parametrize("rates", [[], [1.0, float("nan")]], ids=["empty", "nan"])
def test_percentile_95_refuses_empty_and_nan(rates: list[float]) -> None:
    with pytest.raises(ValueError):
        percentile_95(rates)
