"""Fault drills (issue 9): SIGKILL of `vpop serve` or of a `vpop worker` mid-burst, and CLI
selects racing API orders, in the real lab; each drill repeated (10 trials in CI, more under
``-m soak``). Every trial prints its outcome: lost, duplicated, stuck and false success must
all be 0, and every accepted order must be final within ``drills.FINAL_BOUND`` seconds.
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.lab import drills
from tests.lab.helpers import Server, start_server, stop_server

pytestmark = pytest.mark.lab

TRIALS = 10  # per drill in CI (about a minute each on 2 cores)
SOAK_TRIALS = 40  # more, under -m soak
BURST, REPLAYS = 40, 10


def trials() -> list[Any]:
    """Trial numbers: the CI slice, then the soak ones."""
    return [pytest.param(i, id=f"trial{i}") for i in range(TRIALS)] + [
        pytest.param(i, id=f"trial{i}", marks=pytest.mark.soak)
        for i in range(TRIALS, TRIALS + SOAK_TRIALS)
    ]


@dataclass
class Stage:
    """The drill's current processes (a trial replaces the ones it kills)."""

    server: Server
    workdir: Path
    worker: subprocess.Popen[bytes] | None = None


def _stage(lab: dict[str, Any], workdir: Path) -> Server:
    server = start_server(workdir, lab, extra_env={"VPOP_LOCK_TTL_SECONDS": str(drills.LOCK_TTL)})
    # the routers may carry earlier modules' selections: converge them to this database
    done = server.cli("reconcile")
    if done.returncode != 0:
        stop_server(server)
        raise AssertionError(done.stdout + done.stderr)
    return server


@pytest.fixture(scope="module")
def serve_stage(lab: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    workdir = tmp_path_factory.mktemp("drill-serve")
    stage = Stage(_stage(lab, workdir), workdir)
    try:
        yield stage
    finally:
        stop_server(stage.server)


@pytest.fixture(scope="module")
def worker_stage(lab: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    workdir = tmp_path_factory.mktemp("drill-worker")
    # one worker thread in `vpop serve`, four in `vpop worker`: the worker takes most runs
    server = drills.launch_server(workdir, lab, "--workers", "1")
    done = server.cli("reconcile")
    if done.returncode != 0:
        stop_server(server)
        raise AssertionError(done.stdout + done.stderr)
    stage = Stage(server, workdir)
    stage.worker = drills.start_worker(stage.server, workdir / "worker.log")
    try:
        yield stage
    finally:
        if stage.worker is not None:
            stage.worker.terminate()
            try:
                stage.worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                drills.kill(stage.worker)
        stop_server(stage.server)


@pytest.fixture(scope="module")
def cli_stage(lab: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    workdir = tmp_path_factory.mktemp("drill-cli")
    stage = Stage(_stage(lab, workdir), workdir)
    try:
        yield stage
    finally:
        stop_server(stage.server)


def _follow_up(
    server: Server,
    rng: random.Random,
    requests: list[tuple[str, str, str]],
    answers: dict[str, set[int]],
) -> None:
    """After the restart: resend every id that got no answer, and replay a few that did."""
    unanswered = [r for r in dict.fromkeys(requests) if r[0] not in answers]
    answered = [r for r in dict.fromkeys(requests) if r[0] in answers]
    replays = rng.sample(answered, min(5, len(answered)))
    drills.send_all(server, unanswered + replays, answers)


def _finish(
    stage: Stage,
    outcome: drills.Outcome,
    requests: list[tuple[str, str, str]],
    answers: dict[str, set[int]],
    others: set[int] | None = None,
    since: float | None = None,
) -> None:
    order_ids = {oid for ids in answers.values() for oid in ids} | (others or set())
    outcome.accepted = len(order_ids)
    outcome.final_after, outcome.stuck = drills.wait_final(
        stage.server, order_ids, drills.FINAL_BOUND, since
    )
    drills.check(stage.server, outcome, answers, {r[0] for r in requests}, others)
    print(outcome.line())
    assert not outcome.problems(), "\n".join(outcome.problems()[:10] + outcome.failures[:5])


@pytest.mark.parametrize("trial", trials())
def test_serve_killed_mid_burst_loses_nothing(serve_stage: Stage, trial: int) -> None:
    rng = random.Random(9000 + trial)
    requests = drills.burst(rng, BURST, REPLAYS)
    outcome = drills.Outcome("serve -9", trial, killed_after=rng.randint(1, BURST - 1))
    answers: dict[str, set[int]] = {}
    server = serve_stage.server
    killer = drills.Killer(server.proc, server.db_url, outcome.killed_after)
    drills.send_all(server, requests, answers, killer.on_answer)
    killed_at = killer.finish()  # now, if fewer answers came than the kill point
    outcome.held_lock = killer.held
    serve_stage.server = drills.restart_server(server)
    _follow_up(serve_stage.server, rng, requests, answers)
    _finish(serve_stage, outcome, requests, answers, since=killed_at)


@pytest.mark.parametrize("trial", trials())
def test_worker_killed_mid_burst_loses_nothing(worker_stage: Stage, trial: int) -> None:
    rng = random.Random(7000 + trial)
    requests = drills.burst(rng, BURST, REPLAYS)
    outcome = drills.Outcome("worker -9", trial, killed_after=rng.randint(1, BURST - 1))
    answers: dict[str, set[int]] = {}
    assert worker_stage.worker is not None
    server = worker_stage.server
    killer = drills.Killer(worker_stage.worker, server.db_url, outcome.killed_after)
    drills.send_all(server, requests, answers, killer.on_answer)
    killed_at = killer.finish()
    outcome.held_lock = killer.held
    worker_stage.worker = drills.start_worker(server, worker_stage.workdir / "worker.log")
    _follow_up(server, rng, requests, answers)
    _finish(worker_stage, outcome, requests, answers, since=killed_at)


ORDER_LINE = re.compile(r"^order (\d+): ", re.MULTILINE)


@pytest.mark.parametrize("trial", trials())
def test_cli_selects_next_to_api_orders_keep_routers_true(cli_stage: Stage, trial: int) -> None:
    rng = random.Random(5000 + trial)
    server = cli_stage.server
    token_file = cli_stage.workdir / "token"
    token_file.write_text(server.token + "\n")
    cli_env = {k: v for k, v in server.env.items() if k != "VPOP_SERVER_URL"}
    remote_env = {**cli_env, "VPOP_SERVER_URL": server.base, "VPOP_API_TOKEN_FILE": str(token_file)}
    # four CLI selects at once: three run the engine here (under the router lock), one
    # submits to the server
    picks = [(rng.choice(drills.SUBSCRIBERS), rng.choice(drills.ISPS)) for _ in range(4)]
    clis = [
        subprocess.Popen(
            [sys.executable, "-m", "vpop.cli", "select", sub, isp, "--timeout", "60"],
            env=remote_env if i == 3 else cli_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, (sub, isp) in enumerate(picks)
    ]
    answers: dict[str, set[int]] = {}
    requests = drills.burst(rng, 20, 5)
    try:
        drills.send_all(server, requests, answers)
        outputs = [cli.communicate(timeout=120) for cli in clis]
    finally:
        for cli in clis:
            if cli.poll() is None:
                drills.kill(cli)  # type: ignore[arg-type]
    outcome = drills.Outcome("cli+api", trial)
    others: set[int] = set()
    for cli, (out, err), (sub, isp) in zip(clis, outputs, picks, strict=True):
        found = ORDER_LINE.search(out)
        if found is None or cli.returncode != 0 or "DONE_SUCCESS" not in out:
            outcome.false_success.append(f"vpop select {sub} {isp}: exit {cli.returncode}: {err}")
        if found is not None:
            others.add(int(found.group(1)))
    _finish(cli_stage, outcome, requests, answers, others)


def test_a_graceful_stop_releases_its_locks_and_loses_nothing(
    serve_stage: Stage, tmp_path: Path
) -> None:
    """SIGTERM while a run holds a router lock: the server exits, its locks are released (no
    holder left, not merely expired), and after a restart every accepted order is final."""
    import signal
    import threading
    import time

    from vpop.core.locks import read_locks
    from vpop.core.time import utcnow

    rng = random.Random(4242)
    requests = drills.burst(rng, BURST, 0)
    answers: dict[str, set[int]] = {}
    server = serve_stage.server
    sender = threading.Thread(target=drills.send_all, args=(server, requests, answers))
    sender.start()
    # the runs are the worker's, a child process of `vpop serve`
    markers = {f":{pid}:" for pid in drills.process_family(server.proc.pid)}
    deadline = time.monotonic() + 30
    while not any(
        lock.live(utcnow()) and any(marker in (lock.holder or "") for marker in markers)
        for lock in read_locks(server.db_url, "router:")
    ):
        assert time.monotonic() < deadline, "the server never took a router lock"
        time.sleep(0.005)
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(timeout=30)
    sender.join(60)
    held = [lock for lock in read_locks(server.db_url, "router:") if lock.holder]
    assert held == [], f"locks left held after a graceful stop: {held}"
    serve_stage.server = drills.restart_server(server)
    order_ids = {oid for ids in answers.values() for oid in ids}
    _, stuck = drills.wait_final(serve_stage.server, order_ids, drills.FINAL_BOUND)
    assert order_ids and stuck == []


def test_lab_routers_run_the_closed_drill_agent_and_a_cut_kills_the_push(
    lab: dict[str, Any],
) -> None:
    """The lab's routers run the lab's variant of the agent (``vpop/lab/drill_agent.py``,
    named by the lab inventory): over the real SSH session it is still closed, and a
    ``cut-after:N`` armed with ``Lab.set_fault`` kills the session after the N-th command of
    the next push, once (the drill the selection tests use for a push cut midway)."""
    from tasks.connection import CONNECTION_NAME, ShellError
    from vpop.lab.builder import Lab
    from vpop.network.factory import open_nornir

    instance = Lab(Path(lab["lab_dir"]))
    fault = Path(lab["lab_dir"]) / "faults" / "rc1"
    push = {"op": "vty", "daemon": "pbrd", "config": True}
    with open_nornir() as nr:
        host = nr.inventory.hosts["rc1"]
        extras = host.get_connection_parameters(CONNECTION_NAME).extras or {}
        assert Path(extras["agent_file"]).parent == Path(lab["lab_dir"])
        agent = host.get_connection(CONNECTION_NAME, nr.config).agent()
        refused = agent.call({"op": "run", "argv": ["sh", "-c", "id"]})
        assert refused["refused"] is True and refused["error"].startswith("refused: run: ")
        assert agent.call({"op": "shell"})["error"].startswith("refused: shell: ")
        instance.set_fault("rc1", "cut-after:1")
        try:
            with pytest.raises(ShellError):
                agent.call(push | {"commands": ["nexthop-group drilltest", "exit"]})
            assert not fault.exists()  # one-shot: consumed by the push it cut
        finally:
            instance.set_fault("rc1", None)
    show = {"op": "vty", "daemon": "pbrd", "commands": ["show running-config"]}
    with open_nornir() as nr:  # a new session: the cut one is gone
        agent = nr.inventory.hosts["rc1"].get_connection(CONNECTION_NAME, nr.config).agent()
        try:
            # the first command was applied before the cut
            running = agent.call(show)["outputs"][0]["output"]
            assert "nexthop-group drilltest" in running.splitlines()
        finally:
            assert agent.call(push | {"commands": ["no nexthop-group drilltest"]})["ok"]
        running = agent.call(show)["outputs"][0]["output"]
        assert "nexthop-group drilltest" not in running.splitlines()
