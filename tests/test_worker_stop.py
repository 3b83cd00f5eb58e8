"""A worker's stop that takes long says what it waited for.

``vpop serve``'s stop line says how long each child took (``worker 1.27 s``), but not why: a
stop waits for the router runs and queued jobs in progress (up to its deadline), so the
worker names them. Found in issue 13's eleventh sitting, where two stops of the worker took
1.07 s and 1.27 s while the others took 0.03-0.06 s."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from vpop.jobs import runner
from vpop.jobs.dispatch import Dispatcher, announce
from vpop.jobs.queue import huey, running_jobs

seen_inside: list[list[str]] = []


@huey.task()  # type: ignore[untyped-decorator]
def _look_inside(router: str, poll: int) -> None:
    seen_inside.append(running_jobs())


@pytest.fixture
def immediate() -> Iterator[None]:
    huey.immediate = True
    try:
        yield
    finally:
        huey.immediate = False


def test_a_job_is_named_with_its_arguments_while_it_runs(immediate: None) -> None:
    seen_inside.clear()
    _look_inside("rc1", 2)
    assert len(seen_inside) == 1
    (inside,) = seen_inside[0]
    assert inside.startswith("_look_inside('rc1', 2) for ") and inside.endswith(" s"), inside
    assert running_jobs() == []  # ended: no longer named


@pytest.fixture
def worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[runner.Worker]:
    """A worker whose router runs are faked: a run of ``rc9`` takes 0.8 s (its queue's
    consumer is not started here: what it waits for is the router run)."""
    started = threading.Event()

    def run(router: str) -> None:
        if router == "rc9":
            started.set()
            threading.Event().wait(0.8)  # the run's own length, not a synchronisation

    worker = runner.Worker(2)
    worker.dispatcher.listener.close()  # never started: replaced by one with the fake runs
    worker.dispatcher = Dispatcher(2, run=run, base=tmp_path, check_seconds=60, waiting=set)
    worker.dispatcher.started_slow = started  # type: ignore[attr-defined]
    monkeypatch.setattr(runner, "stop_background", lambda consumer, timeout: None)
    worker.dispatcher.start()
    try:
        yield worker
    finally:
        worker.dispatcher.stop(5)


def test_a_slow_stop_names_the_router_run_it_waited_for(
    worker: runner.Worker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    announce("rc9", tmp_path)
    assert worker.dispatcher.started_slow.wait(30)  # type: ignore[attr-defined]
    with caplog.at_level(logging.WARNING, logger="vpop.jobs.runner"):
        worker.stop(runner.STOP_SECONDS)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "vpop.jobs.runner"]
    assert line.startswith("vpop worker: stopped in "), line
    assert line.endswith("running at the stop: orders of rc9"), line


def test_a_quick_stop_says_nothing(worker: runner.Worker, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="vpop.jobs.runner"):
        worker.stop(runner.STOP_SECONDS)
    assert [r for r in caplog.records if r.name == "vpop.jobs.runner"] == []
