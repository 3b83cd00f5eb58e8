"""Reads on paths that run all the time do as much work with a long history as with a short
one: accepting a selection that names a subscriber (the lines of every other subscriber are
not read) and the sweep's look for runs left RUNNING (finished runs are not read).

The work is counted in SQLite's virtual machine steps, the same whatever the machine's speed.
The worker's claims have their own such test in tests/test_claims.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import insert

from tests.dbtemplate import migrated_sqlite
from tests.sqlite_work import vm_steps
from vpop.catalogue.models import Isp, Line, Subscriber
from vpop.core.db import dispose_engines, session_scope
from vpop.core.time import utcnow
from vpop.selection.models import Run, RunStatus
from vpop.selection.recovery import recover_abandoned
from vpop.selection.service import Caller, SelectionRequest, submit_selection


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    url = migrated_sqlite(tmp_path / "vpop.sqlite")
    with session_scope(url) as session:
        session.add(Isp(id="isp-b", name="Beta"))
    try:
        yield url
    finally:
        dispose_engines()


def add_lines(url: str, start: int, count: int) -> None:
    """Subscribers ``s<start>``... with one line each on rc1."""
    with session_scope(url) as session:
        session.execute(
            insert(Subscriber),
            [{"id": f"s{i}", "name": f"s{i}", "profile": {}} for i in range(start, start + count)],
        )
        session.execute(
            insert(Line),
            [
                {
                    "subscriber_id": f"s{i}",
                    "router": "rc1",
                    "interface": f"if{i}",
                    "prefix": f"2001:db8::{i:x}/128",
                }
                for i in range(start, start + count)
            ],
        )


def test_accepting_a_selection_reads_as_much_however_many_lines(url: str) -> None:
    caller = Caller("portal", "portal")

    def select(subscriber: str, key: str) -> Callable[[], object]:
        request = SelectionRequest(subscriber=subscriber, isp="isp-b", dry_run=True)
        return lambda: submit_selection(request, caller, key, url=url)

    # each time the subscriber named is the newest: a walk of the table meets it last
    add_lines(url, 0, 20)
    add_lines(url, 10_000, 1)
    few = vm_steps(url, select("s10000", "k1"))
    add_lines(url, 20, 4000)
    add_lines(url, 10_001, 1)
    many = vm_steps(url, select("s10001", "k2"))
    assert many <= few * 1.25, (few, many)


def test_the_sweep_reads_as_much_however_many_runs_ended(url: str) -> None:
    def finished_runs(count: int) -> None:
        with session_scope(url) as session:
            session.execute(
                insert(Run),
                [
                    {
                        "router": "rc1",
                        "kind": "dry_run",
                        "trigger": "history",
                        "requester": "history",
                        "status": RunStatus.SUCCESS.value,
                        "started_at": utcnow(),
                    }
                    for _ in range(count)
                ],
            )

    finished_runs(100)
    few = vm_steps(url, lambda: recover_abandoned(url))
    finished_runs(5000)
    many = vm_steps(url, lambda: recover_abandoned(url))
    assert many <= few * 1.25, (few, many)
