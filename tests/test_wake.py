"""Wake-ups between processes (:mod:`vpop.core.wake`) and the order dispatcher that runs on
them (:mod:`vpop.jobs.dispatch`): a router announced is run at once, once per burst of
announcements while it runs, and waiting orders nobody announced are found by the safety look.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from vpop.core.wake import Listener, Waiter, notify
from vpop.jobs.dispatch import Dispatcher, announce


def _listen_in_child(base: Path, ready: multiprocessing.synchronize.Event, out: Path) -> None:
    listener = Listener("news", base)
    ready.set()
    out.write_bytes(b"|".join(listener.wait(30)))
    listener.close()


def test_a_datagram_reaches_a_listener_in_another_process(tmp_path: Path) -> None:
    ready = multiprocessing.get_context("fork").Event()
    out = tmp_path / "got"
    child = multiprocessing.get_context("fork").Process(
        target=_listen_in_child, args=(tmp_path, ready, out)
    )
    child.start()
    try:
        assert ready.wait(30)
        assert notify("news", b"rc7", tmp_path) == 1
        child.join(30)
        assert out.read_bytes() == b"rc7"
    finally:
        child.kill()
        child.join()


def test_every_listener_hears_and_a_dead_ones_socket_is_removed(tmp_path: Path) -> None:
    first, second, dead = (Listener("news", tmp_path) for _ in range(3))
    dead.sock.close()  # its process died without closing: the file stays behind
    assert dead.path.exists()
    assert notify("news", b"x", tmp_path) == 2
    assert first.wait(5) == [b"x"] and second.wait(5) == [b"x"]
    assert not dead.path.exists()
    assert notify("nobody-listens", b"x", tmp_path) == 0
    first.close()
    second.close()
    assert notify("news", b"x", tmp_path) == 0


def test_listeners_that_come_and_go_after_a_listing_was_kept_are_seen(tmp_path: Path) -> None:
    first = Listener("news", tmp_path)
    folder = first.path.parent
    os.utime(folder, ns=(1_000_000_000, 1_000_000_000))  # long unchanged: the listing is kept
    assert notify("news", b"a", tmp_path) == 1
    second = Listener("news", tmp_path)  # binding changes the directory
    assert notify("news", b"b", tmp_path) == 2
    assert second.drain() == [b"b"]
    os.utime(folder, ns=(2_000_000_000, 2_000_000_000))
    assert notify("news", b"c", tmp_path) == 2  # the listing kept for this mtime
    first.close()  # removing changes it again
    assert notify("news", b"d", tmp_path) == 1
    assert second.drain() == [b"c", b"d"]
    second.close()


def test_a_waiter_wakes_the_threads_waiting_for_news(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VPOP_STATE_DIR", str(tmp_path))
    waiter = Waiter("done")
    seen = waiter.generation()  # its listener exists from here on
    woken: list[int] = []
    thread = threading.Thread(target=lambda: woken.append(waiter.wait(seen, 30)))
    thread.start()
    notify("done", b"5", tmp_path / "wake")
    thread.join(30)
    assert woken and woken[0] > seen
    assert waiter.wait(woken[0], 0.01) == woken[0]  # nothing new: back at its timeout


@pytest.fixture
def dispatcher_runs(tmp_path: Path) -> Iterator[tuple[Dispatcher, list[str], threading.Event]]:
    """A dispatcher whose runs are recorded; a run of ``slow`` holds until released."""
    runs: list[str] = []
    release = threading.Event()
    started = threading.Event()

    def run(router: str) -> None:
        runs.append(router)
        if router == "slow":
            started.set()
            release.wait(30)

    dispatcher = Dispatcher(2, run=run, base=tmp_path, check_seconds=60, waiting=set)
    dispatcher.started_slow = started  # type: ignore[attr-defined]
    dispatcher.start()
    try:
        yield dispatcher, runs, release
    finally:
        release.set()
        dispatcher.stop(5)


def _until(predicate: object, seconds: float = 10) -> None:
    done = threading.Event()
    for _ in range(int(seconds * 100)):
        if callable(predicate) and predicate():
            return
        done.wait(0.01)
    raise AssertionError("not reached in time")


def test_an_announced_router_is_run_at_once(
    dispatcher_runs: tuple[Dispatcher, list[str], threading.Event], tmp_path: Path
) -> None:
    dispatcher, runs, _ = dispatcher_runs
    announce("rc1", tmp_path)
    _until(lambda: runs == ["rc1"])  # the safety look is 60 s away: only the wake-up did it


def test_announcements_during_a_run_make_one_more_run_not_one_each(
    dispatcher_runs: tuple[Dispatcher, list[str], threading.Event], tmp_path: Path
) -> None:
    dispatcher, runs, release = dispatcher_runs
    announce("slow", tmp_path)
    assert dispatcher.started_slow.wait(10)  # type: ignore[attr-defined]
    for _ in range(5):
        announce("slow", tmp_path)
    announce("rc2", tmp_path)  # another router is not held up by the slow one
    _until(lambda: "rc2" in runs)
    release.set()
    _until(lambda: runs.count("slow") == 2)
    announce("rc2", tmp_path)
    _until(lambda: runs.count("rc2") == 2)
    assert runs.count("slow") == 2


def test_waiting_orders_nobody_announced_are_found_by_the_safety_look(tmp_path: Path) -> None:
    runs: list[str] = []
    dispatcher = Dispatcher(
        1, run=runs.append, base=tmp_path, check_seconds=0.05, waiting=lambda: {"rc9"}
    )
    dispatcher.start()
    try:
        _until(lambda: runs.count("rc9") >= 2)  # at the start, then on a quiet look
    finally:
        dispatcher.stop(5)
    assert not dispatcher.is_alive()


def test_a_process_that_sent_a_wake_up_ends_with_its_socket_closed(tmp_path: Path) -> None:
    """The sender socket a process keeps for its wake-ups is closed when the process ends:
    no ResourceWarning at exit (it was one at the end of every test run)."""
    listener = Listener("exit", tmp_path)
    try:
        script = (
            "import sys; from pathlib import Path; from vpop.core.wake import notify\n"
            "print(notify('exit', b'bye', Path(sys.argv[1])))\n"
        )
        done = subprocess.run(
            [sys.executable, "-W", "error::ResourceWarning", "-c", script, str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0 and done.stdout.strip() == "1", done.stderr
        assert "ResourceWarning" not in done.stderr, done.stderr
        assert listener.wait(10) == [b"bye"]
    finally:
        listener.close()
