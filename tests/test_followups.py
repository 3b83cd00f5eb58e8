"""A finished order's follow-ups (vpop.jobs.followups): in the caller until a worker starts
the thread, then off the caller's thread in order, and nothing queued is lost at stop."""

from __future__ import annotations

import threading

from vpop.jobs.followups import FollowUps


def test_before_the_thread_starts_a_follow_up_runs_in_the_caller() -> None:
    ran: list[int] = []
    FollowUps().submit(lambda: ran.append(threading.get_ident()))
    assert ran == [threading.get_ident()]


def test_started_follow_ups_run_on_their_thread_in_order_and_stop_runs_what_is_queued() -> None:
    followups = FollowUps()
    followups.start()
    release = threading.Event()
    seen: list[tuple[int, int]] = []

    def first() -> None:
        assert release.wait(30)  # the caller goes on meanwhile: it is not this thread
        seen.append((0, threading.get_ident()))

    followups.submit(first)
    for i in range(1, 50):
        followups.submit(lambda i=i: seen.append((i, threading.get_ident())))  # type: ignore[misc]
    assert seen == []  # all queued behind the first, none run by the caller
    release.set()
    followups.stop(30)  # drains the 49 still queued
    assert [i for i, _ in seen] == list(range(50))
    assert {thread for _, thread in seen} != {threading.get_ident()}
    assert len({thread for _, thread in seen}) == 1


def test_a_failing_follow_up_does_not_stop_the_others() -> None:
    followups = FollowUps()
    followups.start()
    done: list[str] = []

    def broken() -> None:
        raise RuntimeError("a callback could not be queued")

    followups.submit(broken)
    followups.submit(lambda: done.append("next"))
    followups.stop(30)
    assert done == ["next"]


def test_a_follow_up_submitted_after_the_stop_runs_in_its_caller() -> None:
    followups = FollowUps()
    followups.start()
    followups.stop(30)
    ran: list[int] = []
    followups.submit(lambda: ran.append(threading.get_ident()))
    assert ran == [threading.get_ident()]
