"""The poll's fast counter steps: the same answers as ``delta`` for every pair of readings,
and the poller stores, per series and poll, exactly what ``delta`` says."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from tasks.collect import COUNTER_NAMES
from tests.pg import PG_BIN
from tests.poll_answers import answering
from tests.test_postgres import pg_url  # noqa: F401 (fixture)
from vpop.core.db import dispose_engines, session_scope
from vpop.core.migrate import upgrade
from vpop.monitoring import counters, poller
from vpop.monitoring.counters import COUNTERS, Change, Last, Reading, Steps, delta
from vpop.monitoring.models import CounterSample, PollLog

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TOP32, TOP64 = 2**32, 2**64


def reference(
    last: Last | None,
    values: tuple[Any, ...],
    boot_id: str | None,
    at: datetime,
    width: int,
    interval: float,
    max_rate: dict[str, float] | None,
) -> Change | type[ValueError]:
    """What the poller stored before the fast path: a Reading each side and ``delta``."""
    try:
        previous = None
        if last is not None:
            previous = Reading(
                last.at, dict(zip(COUNTERS, last.values, strict=True)), last.width, last.boot_id
            )
        current = Reading(at, dict(zip(COUNTERS, values, strict=True)), width, boot_id)
        found = delta(previous, current, expected_interval=interval, max_rate=max_rate)
    except ValueError:
        return ValueError
    deltas = tuple(found.values[k] for k in COUNTERS) if found.values else None
    rates = tuple(found.rates[k] for k in COUNTERS) if found.values else None
    return Change(
        Last(at, values, width, boot_id), found.seconds, deltas, rates, found.note, found.usable
    )


def fast(
    last: Last | None,
    values: tuple[Any, ...],
    boot_id: str | None,
    at: datetime,
    width: int,
    interval: float,
    max_rate: dict[str, float] | None,
) -> Change | type[ValueError]:
    try:
        return Steps(at, width, expected_interval=interval, max_rate=max_rate).step(
            last, values, boot_id
        )
    except ValueError:
        return ValueError


# where a series' counters are: small, just below the top of 32 or of 64 bits, or anywhere
REGIONS = [(0, 10**6), (TOP32 - 10**4, TOP32 - 1), (TOP64 - 10**7, TOP64 - 1), (0, TOP64 - 1)]


def six(draw: st.DrawFn) -> tuple[int, ...]:
    low, high = draw(st.sampled_from(REGIONS))
    return tuple(draw(st.integers(low, high)) for _ in COUNTERS)


@st.composite
def pairs(draw: st.DrawFn) -> tuple[Any, ...]:
    width = draw(st.sampled_from([32, 64]))
    last_width = draw(st.sampled_from([width, width, 32, 64]))
    before = six(draw)
    # mostly increases (the common case), sometimes anything
    grow = draw(
        st.tuples(*(st.integers(0, draw(st.sampled_from([3_000, 10**7]))) for _ in COUNTERS))
    )
    after = tuple(b + g for b, g in zip(before, grow, strict=True))
    if draw(st.integers(0, 3)) == 0:
        after = six(draw)
    if draw(st.booleans()):  # now and then a value no counter holds
        index = draw(st.integers(0, 5))
        bad = draw(st.sampled_from([-1, True, 1.5, TOP64]))
        after = (*after[:index], bad, *after[index + 1 :])
    boot = st.sampled_from([None, "1", "2"])
    interval = draw(st.sampled_from([5.0, 5.0, 1.0, 0.0, -1.0]))
    # before, at and after the gap threshold (3 intervals), and duplicates
    factor = draw(st.sampled_from([0.2, 1.0, 2.0, 3.0, 3.0001, 50.0]))
    seconds = draw(st.sampled_from([-5.0, 0.0, factor * abs(interval or 1.0)]))
    max_rate = draw(
        st.sampled_from(
            [None, poller.MAX_RATE, {"rx_bytes": 100.0, "tx_packets": 10.0}, {"drops": 0.0}]
        )
    )
    valid_before = all(0 <= v < 1 << last_width for v in before)
    last = None
    if valid_before and draw(st.integers(0, 9)):  # the first reading of a series, now and then
        last = Last(T0, before, last_width, draw(boot))
    at = T0 + timedelta(seconds=seconds)
    return last, after, draw(boot), at, width, interval, max_rate


@settings(max_examples=3000, deadline=None)
@given(pairs())
def test_a_step_says_what_delta_says(case: tuple[Any, ...]) -> None:
    assert fast(*case) == reference(*case)


def test_the_common_case_does_not_build_readings(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return delta(*args, **kwargs)

    monkeypatch.setattr(counters, "delta", counted)
    steps = Steps(T0 + timedelta(seconds=5), 64, expected_interval=5, max_rate=poller.MAX_RATE)
    last = Last(T0, (100, 200, 1, 2, 0, 0), 64, "7")
    up = steps.step(last, (1100, 2200, 11, 22, 0, 1), "7")
    assert up.values == (1000, 2000, 10, 20, 0, 1) and up.rates == (200, 400, 2, 4, 0, 0.2)
    assert up.usable and up.note is None and calls == []
    down = steps.step(last, (50, 2200, 11, 22, 0, 1), "7")  # a reset: delta decides
    assert down.note == "reset" and len(calls) == 1


# -- the poller: every stored sample is what delta says ---------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        address = f"sqlite:///{tmp_path}/vpop.sqlite"
        upgrade(address)
        try:
            yield address
        finally:
            dispose_engines()
        return
    if not PG_BIN.exists():
        pytest.skip("PostgreSQL 15 is not installed")
    address = request.getfixturevalue("pg_url")
    upgrade(address)
    with session_scope(address) as session:  # the cluster is the module's: start clean
        for model in (CounterSample, PollLog):
            session.execute(delete(model))
    yield address


def answer(step: int, boot: str) -> dict[str, Any]:
    """A router's counters at poll ``step``: interfaces that grow, wrap, reset or stall."""

    def values(base: int) -> dict[str, int]:
        return {
            "rx_bytes": base,
            "tx_bytes": 3 * base,
            "rx_packets": base // 100,
            "tx_packets": base // 30,
            "errors": step,
            "drops": 0,
        }

    interfaces = {
        "grows": values(1_000 * step),
        "resets": values(1_000 * (step % 2)),  # goes down every other poll
        "stalls": values(5_000),
        "huge": values(10**17 * step),  # more than 50 GB/s: discarded
    }
    lines = {f"b{i}": values(10 * i * step) for i in range(5)}
    boot_ids = {"interface": {}, "line": {f"b{i}": boot for i in range(5)}}
    return {"interfaces": interfaces, "lines": lines, "width": 64, "boot_ids": boot_ids}


def as_tuples(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with each series' counters a tuple in COUNTERS order, as collect_counters
    returns them (``answer`` gives mappings by name, as the poller also accepts)."""
    tables = {
        kind: {name: tuple(values[k] for k in COUNTERS) for name, values in data[kind].items()}
        for kind in ("interfaces", "lines")
    }
    return {**data, **tables}


def test_the_counters_are_in_the_same_order_on_both_sides() -> None:
    assert COUNTER_NAMES == COUNTERS  # tasks may not import vpop: two names, one order


@pytest.mark.parametrize("shape", [as_tuples, dict], ids=["tuples", "mappings"])
def test_the_poller_stores_what_delta_says(
    url: str, monkeypatch: pytest.MonkeyPatch, shape: Any
) -> None:
    replies = iter([shape(answer(s, "a" if s < 3 else "b")) for s in (1, 2, 3, 4)])
    answering(monkeypatch, replies)
    monkeypatch.setattr(poller, "_last", {})
    monkeypatch.setattr(poller, "_polled", {})
    settings = poller.MonitorSettings(counters_seconds=60)
    summaries = [poller.poll_counters("rc1", url, settings) for _ in range(4)]
    with session_scope(url) as session:
        rows = session.scalars(select(CounterSample).order_by(CounterSample.id)).all()
        stored = [
            (r.kind, r.name, r.at, tuple(getattr(r, k) for k in COUNTERS), r.seconds, r.rx_bps,
             r.tx_bps, r.rx_pps, r.tx_pps, r.new_errors, r.new_drops, r.note, r.session_id)
            for r in rows
        ]  # fmt: skip
    assert len(stored) == 4 * 9 and [s["samples"] for s in summaries] == [9] * 4
    expected = []
    previous: dict[tuple[str, str], Reading] = {}
    times = sorted({row[2] for row in stored})
    for step, at in enumerate(times, start=1):
        data = answer(step, "a" if step < 3 else "b")
        for kind, table in (("interface", data["interfaces"]), ("line", data["lines"])):
            for name, values in table.items():
                boot = data["boot_ids"][kind].get(name)
                reading = Reading(at, values, 64, boot)
                found = delta(
                    previous.get((kind, name)),
                    reading,
                    expected_interval=60,
                    max_rate=poller.MAX_RATE,
                )
                previous[(kind, name)] = reading
                rates: tuple[Any, ...] = (None,) * 7
                if found.usable:
                    r, v = found.rates, found.values
                    rates = (
                        found.seconds,
                        r["rx_bytes"] * 8,
                        r["tx_bytes"] * 8,
                        r["rx_packets"],
                        r["tx_packets"],
                        v["errors"],
                        v["drops"],
                    )
                counts = tuple(values[k] for k in COUNTERS)
                expected.append((kind, name, at, counts, *rates, found.note, None))
    assert stored == expected
    notes = {(s["notes"].get("interface:resets"), s["notes"].get("line:b1")) for s in summaries}
    assert ("reset", None) in notes and (None, "reset") in notes  # the boot id changed


def test_rows_beyond_one_statement_are_all_inserted_in_order(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vpop.monitoring import bulk

    per_row = len(bulk.SAMPLE_COLUMNS)
    monkeypatch.setattr(bulk, "MAX_PARAMETERS", 7 * per_row + 3)  # 7 rows per statement
    table = bulk.Table_(CounterSample)
    with session_scope(url) as session:
        at = bulk.bound_time(session, table.c.at, T0)
        rows = [
            ["rc1", "line", f"b{i}", at, i, 2 * i, 3, 4, 0, 0, *(None,) * 7, None, None]
            for i in range(50)
        ]
        assert all(len(row) == per_row for row in rows)
        bulk._insert_many(session, table, rows, bulk.SAMPLE_COLUMNS)  # noqa: SLF001
    with session_scope(url) as session:
        stored = session.execute(
            select(CounterSample.name, CounterSample.tx_bytes, CounterSample.at).order_by(
                CounterSample.id
            )
        ).all()
    assert [tuple(r) for r in stored] == [(f"b{i}", 2 * i, T0) for i in range(50)]
