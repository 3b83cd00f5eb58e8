"""The recommendation rule (vpop.recommend): preference, live figures, and the reason."""

from __future__ import annotations

import math
from typing import Any

import pytest

from vpop.selection.recommend import MAX_LOSS_PCT, Candidate, format_figure, preference, recommend

A = Candidate("isp-a", "Alpha", 12.0, 1.0, 0.0, 90.0, 2900, "EUR")
B = Candidate("isp-b", "Beta", 4.0, 0.5, 0.0, 400.0, 4500, "EUR")
C = Candidate("isp-c", "Gamma", 30.0, 4.0, 1.0, 900.0, 1900, "EUR")


@pytest.mark.parametrize(
    ("profile", "expected", "words"),
    [
        ({"prefer": "latency"}, "isp-b", "answers fastest right now (4.00 ms, against 12.0 ms"),
        ({"prefer": "throughput"}, "isp-c", "highest measured throughput right now (900 Mbit/s"),
        ({"prefer": "price"}, "isp-c", "cheapest plan right now (19.00 EUR a month"),
        ({"prefer": "loss"}, "isp-b", "loses the fewest probes"),
        ({}, "isp-b", "no preference is set"),
        (None, "isp-b", "no preference is set"),
        ({"prefer": "colour"}, "isp-b", "no preference is set"),
        ({"prefer": ["latency"]}, "isp-b", "no preference is set"),
    ],
    ids=["latency", "throughput", "price", "loss", "empty", "none", "unknown", "not-a-string"],
)
def test_the_preference_picks_the_figure(
    profile: dict[str, Any] | None, expected: str, words: str
) -> None:
    pick = recommend([A, B, C], profile)
    assert pick is not None
    assert pick.isp == expected
    assert words in pick.reason
    assert pick.reason.endswith(".")


def test_an_explicit_preference_is_named_in_the_reason() -> None:
    pick = recommend([A, B, C], {"prefer": "price"})
    assert pick is not None
    assert "you asked for a low price" in pick.reason
    assert pick.reason.startswith("Gamma has the cheapest plan")


def test_nothing_measured_means_no_recommendation() -> None:
    unmeasured = [Candidate("isp-a", "Alpha", price_minor=100, currency="EUR")]
    assert recommend(unmeasured, {"prefer": "price"}) is None
    assert recommend([], None) is None


def test_an_unmeasured_isp_is_never_recommended() -> None:
    cheap_but_silent = Candidate("isp-z", "Zed", None, None, None, None, 1, "EUR")
    pick = recommend([A, cheap_but_silent], {"prefer": "price"})
    assert pick is not None and pick.isp == "isp-a"


def test_isps_losing_many_probes_are_left_out_and_the_reason_says_so() -> None:
    lossy = Candidate("isp-b", "Beta", 1.0, 0.1, MAX_LOSS_PCT + 20, 400.0, 4500, "EUR")
    pick = recommend([A, lossy], {"prefer": "latency"})
    assert pick is not None and pick.isp == "isp-a"
    assert "1 ISP losing more than 5 % of probes was left out" in pick.reason


def test_when_every_isp_is_lossy_the_least_bad_is_still_shown() -> None:
    lossy_a = Candidate("isp-a", "Alpha", 10.0, 1.0, 50.0)
    lossy_b = Candidate("isp-b", "Beta", 20.0, 1.0, 30.0)
    pick = recommend([lossy_a, lossy_b], {"prefer": "loss"})
    assert pick is not None and pick.isp == "isp-b"


def test_a_missing_figure_falls_back_to_latency() -> None:
    no_throughput = [
        Candidate("isp-a", "Alpha", 12.0, 1.0, 0.0),
        Candidate("isp-b", "Beta", 4.0, 1.0, 0.0),
    ]
    pick = recommend(no_throughput, {"prefer": "throughput"})
    assert pick is not None and pick.isp == "isp-b"
    assert "no ISP's throughput was measured recently, so latency decides" in pick.reason


def test_prices_in_different_currencies_are_not_compared() -> None:
    usd = Candidate("isp-c", "Gamma", 30.0, 4.0, 0.0, 900.0, 100, "USD")
    pick = recommend([A, B, usd], {"prefer": "price"})
    assert pick is not None and pick.isp == "isp-b"  # latency decides
    assert "cannot be compared by price" in pick.reason


def test_ties_are_broken_deterministically() -> None:
    twin_1 = Candidate("isp-y", "Y", 5.0, 1.0, 0.0)
    twin_2 = Candidate("isp-x", "X", 5.0, 1.0, 0.0)
    assert recommend([twin_1, twin_2], None) == recommend([twin_2, twin_1], None)
    pick = recommend([twin_1, twin_2], None)
    assert pick is not None and pick.isp == "isp-x"


def test_non_finite_figures_count_as_missing() -> None:
    broken = Candidate("isp-a", "Alpha", math.nan, 1.0, 0.0)
    pick = recommend([broken, B], None)
    assert pick is not None and pick.isp == "isp-b"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0.0, "0"),
        (0.0834, "0.083"),
        (4.0, "4.00"),
        (12.34, "12.3"),
        (3411.4, "3411"),
        (-2.5, "-2.50"),
    ],
    ids=["zero", "sub-ms", "units", "tens", "thousands", "negative"],
)
def test_figures_keep_their_precision(value: float, shown: str) -> None:
    assert format_figure(value) == shown


def test_sub_millisecond_latencies_stay_distinguishable() -> None:
    fast = Candidate("isp-a", "Alpha", 0.081, 0.01, 0.0)
    slow = Candidate("isp-b", "Beta", 0.124, 0.01, 0.0)
    pick = recommend([slow, fast], None)
    assert pick is not None and "(0.081 ms, against 0.124 ms for Beta)" in pick.reason


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        ({"prefer": "throughput"}, ("throughput", True)),
        ({"prefer": "fast"}, ("latency", False)),
        (None, ("latency", False)),
    ],
    ids=["valid", "unknown", "none"],
)
def test_preference(profile: dict[str, Any] | None, expected: tuple[str, bool]) -> None:
    assert preference(profile) == expected
