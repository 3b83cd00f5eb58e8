"""Orders accepted together by one API process are decided and written in one batch
(vpop.core.group_commit, vpop.selection.orders): each caller still gets its own order or its
own refusal, a refusal costs the others nothing, and two requests with one idempotency key
in one batch make one order."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.dbtemplate import migrated_sqlite
from tests.test_group_commit import Watched
from vpop.catalogue.models import Isp, Line, Subscriber
from vpop.core import group_commit
from vpop.core.db import dispose_engines, get_engine, session_scope, write_gate
from vpop.core.errors import NotFound
from vpop.selection.models import IdempotencyRecord, Order
from vpop.selection.orders import (
    Accepted,
    Caller,
    Forbidden,
    IdempotencyConflict,
    SelectionRequest,
    submit_selection,
)
from vpop.selection.signals import order_accepted

PORTAL = Caller(name="token:1", role="portal")
ISP_A = Caller(name="token:2", role="isp", isp="isp-a")


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    url = migrated_sqlite(tmp_path / "vpop.sqlite")
    with session_scope(url) as session:
        session.add_all([Isp(id="isp-a", name="Alpha"), Isp(id="isp-b", name="Beta")])
        session.flush()
        for n in (1, 2, 3):
            session.add(Subscriber(id=f"sub{n}", name=f"Subscriber {n}"))
            session.flush()
            session.add(
                Line(
                    subscriber_id=f"sub{n}",
                    router="rc2" if n == 2 else "rc1",
                    interface=f"sub{n}",
                    prefix=f"192.0.2.{4 * n + 2}/32",
                )
            )
    try:
        yield url
    finally:
        dispose_engines()


Call = tuple[SelectionRequest, Caller, str | None]


def accept_together(url: str, calls: list[Call]) -> tuple[list[object], Watched]:
    """Submit ``calls`` from threads of their own while the write gate is held, so the first
    leads a batch of itself and all the others queue behind it; each one's answer."""
    engine = get_engine(url)
    group = Watched(len(calls))
    key = f"{os.getpid()}:{engine.url}"  # the process's queue (group_for)
    group_commit._groups[key] = group
    answers: list[object] = [None] * len(calls)

    def one(index: int) -> None:
        req, caller, idem = calls[index]
        try:
            answers[index] = submit_selection(req, caller, idem, url)
        except Exception as err:  # noqa: BLE001 - the answer this caller got
            answers[index] = err

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(calls))]
    try:
        with write_gate(engine):
            for thread in threads:
                thread.start()
            assert group.all_queued.wait(timeout=30), "the writers never queued"
        for thread in threads:
            thread.join(timeout=60)
    finally:
        del group_commit._groups[key]
    assert not any(thread.is_alive() for thread in threads), "a caller never got its answer"
    return answers, group


def count(url: str, model: Any) -> int:
    with session_scope(url) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_a_batch_gives_each_caller_its_own_order_or_refusal(url: str) -> None:
    wanted = SelectionRequest(isp="isp-b", subscriber="sub1")
    calls: list[Call] = [
        (SelectionRequest(isp="isp-b", subscriber="sub3"), PORTAL, None),
        (wanted, PORTAL, "key-1"),
        (SelectionRequest(isp="isp-b", subscriber="nobody"), PORTAL, None),
        (wanted, PORTAL, "key-1"),  # the same key and body: the same order
        (SelectionRequest(isp="isp-b", subscriber="sub2"), PORTAL, "key-1"),  # another body
        (SelectionRequest(isp="isp-b", subscriber="sub2"), ISP_A, None),  # another ISP's
        (SelectionRequest(isp="isp-x", subscriber="sub2"), PORTAL, None),
        (SelectionRequest(isp="isp-a", subscriber="sub2", dry_run=True), PORTAL, None),
        (SelectionRequest(isp="isp-b", subscriber="sub1", dry_run=True), PORTAL, None),
    ]
    announced: list[str] = []
    with order_accepted.connected_to(announced.append):
        answers, group = accept_together(url, calls)

    first, key_1, unknown, replayed, reused, forbidden, no_isp, sub2, sub1_dry = answers
    assert isinstance(unknown, NotFound) and unknown.code == "VPOP-404-SUBSCRIBER"
    assert isinstance(reused, IdempotencyConflict)
    assert isinstance(forbidden, Forbidden)
    assert isinstance(no_isp, NotFound) and no_isp.code == "VPOP-404-ISP"
    orders = {}
    for answer in (first, key_1, replayed, sub2, sub1_dry):
        assert isinstance(answer, tuple), answer
        order, created = answer
        assert isinstance(order, Accepted)
        orders[order.id] = order
    assert key_1[1] is True and replayed[1] is False  # type: ignore[index]
    assert key_1[0] == replayed[0]  # type: ignore[index]
    assert first[0].line_id != sub2[0].line_id  # type: ignore[index]
    assert sub2[0].dry_run is True and sub2[0].isp_id == "isp-a"  # type: ignore[index]
    assert group.batches == 1  # all but the first in one transaction, refusals included
    assert count(url, Order) == 4 == len(orders)
    assert count(url, IdempotencyRecord) == 1
    # the workers are woken once per router per batch: rc1 for the first order's batch,
    # then rc1 (two new orders there) and rc2 for the other
    assert sorted(announced) == ["rc1", "rc1", "rc2"]


def test_a_batch_that_fails_is_written_again_order_by_order(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure that is not a refusal (here the database refusing one order's insert) rolls
    the batch back; every other order of it is written alone and its caller gets it."""
    from vpop.selection import orders

    real_insert = orders._insert

    def insert(cursor: Any, dialect: Any, order: Accepted, *rest: Any) -> int:
        if order.line_id == 2:  # sub2's line
            raise RuntimeError("the disk is full")
        return real_insert(cursor, dialect, order, *rest)

    monkeypatch.setattr(orders, "_insert", insert)
    calls: list[Call] = [
        (SelectionRequest(isp="isp-b", subscriber=f"sub{n}"), PORTAL, None) for n in (1, 2, 3, 1)
    ]
    answers, group = accept_together(url, calls)
    assert isinstance(answers[1], RuntimeError)
    written = [answer for answer in answers if isinstance(answer, tuple)]
    assert len(written) == 3
    assert group.batches == 0
    assert count(url, Order) == 3
