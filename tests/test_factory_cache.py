"""open_nornir loads and transforms the inventory once per version of its sources, and every
run still gets a Nornir of its own: hosts, groups, data and connections are never shared."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nornir.core import Nornir
from nornir.core.configuration import Config
from nornir.core.plugins.connections import ConnectionPluginRegister
from nornir.core.task import Result, Task
from nornir.plugins.runners import SerialRunner

from vpop.core.settings import Settings
from vpop.network.factory import open_nornir, routers_nornir
from vpop.network.inventory import VpopInventory

HOSTS = "r1:\n  hostname: 127.0.0.1\n  port: 2222\n  groups: [frr, lab]\n  data: {site: a}\n"


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every real load of the inventory plugin, counted (the load itself runs unchanged)."""
    calls: list[int] = []
    real = VpopInventory.load

    def counted(self: VpopInventory) -> Any:
        calls.append(threading.get_ident())
        return real(self)

    monkeypatch.setattr(VpopInventory, "load", counted)
    return calls


@pytest.fixture
def hosts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A hosts file of its own (a fresh cache entry), with its known_hosts beside it."""
    path = tmp_path / "hosts.yaml"
    path.write_text(HOSTS)
    monkeypatch.setenv("VPOP_INVENTORY_HOSTS", str(path))
    monkeypatch.delenv("VPOP_KNOWN_HOSTS", raising=False)
    return path


def edit(path: Path, text: str) -> None:
    """Rewrite ``path`` as an editor would, a moment later than its last version."""
    before = path.stat().st_mtime_ns
    path.write_text(text)
    os.utime(path, ns=(before + 10**9, before + 10**9))


def test_a_second_run_reuses_the_loaded_inventory(hosts: Path, loads: list[int]) -> None:
    with open_nornir() as first:
        assert first.inventory.hosts["r1"].port == 2222
    assert len(loads) == 1
    with open_nornir() as second, open_nornir(Settings()) as third:
        assert second.inventory.dict() == first.inventory.dict() == third.inventory.dict()
    assert len(loads) == 1


def test_an_edited_hosts_file_is_seen_by_the_next_run(hosts: Path, loads: list[int]) -> None:
    with open_nornir() as nr:
        assert sorted(nr.inventory.hosts) == ["r1"]
    edit(hosts, HOSTS.replace("2222", "2223"))  # the same size: the time tells
    with open_nornir() as nr:
        assert nr.inventory.hosts["r1"].port == 2223
    edit(hosts, HOSTS + "r2:\n  hostname: 127.0.0.2\n  groups: [ios]\n")
    with open_nornir() as nr:
        assert sorted(nr.inventory.hosts) == ["r1", "r2"]
        assert nr.inventory.hosts["r2"].platform == "ios"
    assert len(loads) == 3


def test_a_run_on_named_hosts_copies_only_those(hosts: Path, loads: list[int]) -> None:
    """What a poll of one router asks for: its Nornir holds that router, as the whole
    inventory's Nornir has it (groups and what it inherits), and no other."""
    edit(hosts, HOSTS + "r2:\n  hostname: 127.0.0.2\n  groups: [ios]\n")
    with open_nornir() as whole, open_nornir(hosts=["r2"]) as one:
        assert sorted(one.inventory.hosts) == ["r2"]
        assert one.inventory.hosts["r2"].dict() == whole.inventory.hosts["r2"].dict()
        assert one.inventory.hosts["r2"].platform == "ios"  # from its group
        assert sorted(one.inventory.groups) == sorted(whole.inventory.groups)
        assert one.inventory.hosts["r2"] is not whole.inventory.hosts["r2"]
    with open_nornir(hosts=["r9"]) as none:
        assert not none.inventory.hosts
    assert len(loads) == 1


def test_a_hosts_file_replaced_with_the_same_size_and_time_is_seen(hosts: Path) -> None:
    """``cp -p``, ``rsync -t`` or a config tool's rename: another file (inode) with the old
    one's size and modification time."""
    with open_nornir() as nr:
        assert nr.inventory.hosts["r1"].port == 2222
    stat = hosts.stat()
    replacement = hosts.with_name("hosts.yaml.new")
    replacement.write_text(HOSTS.replace("2222", "2223"))
    os.utime(replacement, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    replacement.replace(hosts)
    assert (hosts.stat().st_size, hosts.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    with open_nornir() as nr:
        assert nr.inventory.hosts["r1"].port == 2223


def test_a_known_hosts_file_or_setting_change_is_seen_by_the_next_run(
    hosts: Path, loads: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    known = hosts.parent / "known_hosts"
    with open_nornir() as nr:
        extras = nr.inventory.hosts["r1"].get_connection_parameters("vpop_shell").extras
        assert (extras or {})["known_hosts"] == str(known)
    known.write_text("[127.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPinnedLater\n")
    with open_nornir():  # a newly pinned key: the transform runs again
        pass
    assert len(loads) == 2
    monkeypatch.setenv("VPOP_ROUTER_USERNAME", "noc")
    with open_nornir() as nr:
        assert nr.inventory.hosts["r1"].username == "noc"
    assert len(loads) == 3


class Recorder:
    """A connection plugin that only records that it was opened and closed."""

    closed: list[str | None] = []

    def __init__(self) -> None:
        self.hostname: str | None = None

    def open(
        self,
        hostname: str | None,
        username: str | None,
        password: str | None,
        port: int | None,
        platform: str | None,
        extras: dict[str, Any] | None = None,
        configuration: Config | None = None,
    ) -> None:
        self.hostname = hostname

    def close(self) -> None:
        Recorder.closed.append(self.hostname)

    @property
    def connection(self) -> Any:
        return self.hostname


@pytest.fixture
def recorder() -> Iterator[str]:
    Recorder.closed = []
    ConnectionPluginRegister.register("recorder", Recorder)
    yield "recorder"
    ConnectionPluginRegister.deregister("recorder")


def test_two_runs_share_no_host_group_data_or_connection(
    hosts: Path, loads: list[int], recorder: str
) -> None:
    with open_nornir() as one, open_nornir() as two:
        a, b = one.inventory.hosts["r1"], two.inventory.hosts["r1"]
        assert a is not b and a.dict() == b.dict()
        assert a.data is not b.data and a.defaults is not b.defaults
        assert a.connection_options["vpop_shell"] is not b.connection_options["vpop_shell"]
        assert a.connection_options["vpop_shell"].extras is not (
            b.connection_options["vpop_shell"].extras
        )
        assert {id(g) for g in a.groups}.isdisjoint(id(g) for g in b.groups)
        assert a.groups[0] is one.inventory.groups["frr"]  # linked within its own run
        a.data["scratch"] = 1
        a.open_connection(recorder, configuration=Config())
        assert "scratch" not in b.data and b.connections == {}
        assert a.get_connection(recorder, one.config) == "127.0.0.1"
        assert Recorder.closed == []
    assert Recorder.closed == ["127.0.0.1"]  # closed when its run ended, once
    with open_nornir() as three:
        assert "scratch" not in three.inventory.hosts["r1"].data
        assert three.inventory.hosts["r1"].connections == {}
    assert len(loads) == 1


def test_concurrent_first_runs_load_once_and_get_their_own_hosts(
    hosts: Path, loads: list[int]
) -> None:
    edit(hosts, HOSTS.replace("site: a", "site: b"))  # nothing cached for this version yet
    start = threading.Barrier(8)
    got: list[Any] = []

    def run() -> None:
        start.wait()
        with open_nornir() as nr:
            got.append(nr.inventory.hosts["r1"])

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(got) == 8 and len({id(h) for h in got}) == 8
    assert {h["site"] for h in got} == {"b"}
    assert len(loads) == 1


def _connect(task: Task, plugin: str) -> Result:
    """A task that opens ``plugin``'s connection to its host."""
    return Result(host=task.host, result=task.host.get_connection(plugin, task.nornir.config))


def _fail(task: Task) -> Result:
    raise RuntimeError("unreachable")


def test_a_kept_nornir_of_a_router_is_reused_per_thread_and_left_as_a_fresh_one(
    hosts: Path, loads: list[int], recorder: str
) -> None:
    """What a poll runs with: one Nornir per thread, router and version of the inventory,
    its connections closed and failed hosts forgotten after each block."""
    with routers_nornir(("r1",)) as first:
        assert sorted(first.inventory.hosts) == ["r1"]
        assert first.run(task=_connect, plugin=recorder)["r1"].result == "127.0.0.1"
        assert first.run(task=_fail)["r1"].failed
        assert first.data.failed_hosts == {"r1"}
    assert Recorder.closed == ["127.0.0.1"]
    assert first.inventory.hosts["r1"].connections == {}
    with routers_nornir(("r1",)) as again:
        assert again is first
        assert again.data.failed_hosts == set()
        assert not again.run(task=_connect, plugin=recorder)["r1"].failed  # not skipped
    assert Recorder.closed == ["127.0.0.1", "127.0.0.1"]
    other: list[Nornir] = []

    def poll_elsewhere() -> None:
        with routers_nornir(("r1",)) as nr:
            other.append(nr)

    thread = threading.Thread(target=poll_elsewhere)
    thread.start()
    thread.join(timeout=30)
    assert len(other) == 1 and other[0] is not first  # another thread's own
    assert other[0].inventory.hosts["r1"] is not first.inventory.hosts["r1"]
    edit(hosts, HOSTS.replace("2222", "2223"))
    with routers_nornir(("r1",)) as edited:
        assert edited is not first
        assert edited.inventory.hosts["r1"].port == 2223
    assert len(loads) == 2


def test_a_kept_nornir_of_a_router_can_be_a_process_first_run(hosts: Path) -> None:
    """A worker's first job may be a poll: nothing has registered the plugins before it."""
    script = (
        "from vpop.network.factory import routers_nornir\n"
        "with routers_nornir(('r1',)) as nr:\n"
        "    print(nr.inventory.hosts['r1'].port)\n"
    )
    assert python_prints(script) == ["2222"]


def python_prints(script: str) -> list[str]:
    """The lines ``script`` prints, run in a fresh Python process that must exit 0 (within
    two minutes)."""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def _meet(task: Task, barrier: threading.Barrier) -> Result:
    """A task that returns only once every host's run has reached it (or fails after 10 s)."""
    barrier.wait()
    return Result(host=task.host, result=threading.get_ident())


def test_a_kept_nornir_of_several_routers_asks_them_at_once(
    hosts: Path, loads: list[int], recorder: str
) -> None:
    """What a batch of counter polls runs with: every router's task runs at the same time
    (a serial run would leave the first waiting for the others, and fail), one of them on
    the calling thread, and the Nornir is kept as a router's is."""
    edit(hosts, HOSTS + HOSTS.replace("r1:", "r2:") + HOSTS.replace("r1:", "r3:"))
    with routers_nornir(("r1", "r2", "r3")) as nr:
        assert sorted(nr.inventory.hosts) == ["r1", "r2", "r3"]
        ran = nr.run(task=_meet, barrier=threading.Barrier(3, timeout=10))
        assert not ran.failed, {name: r.exception for name, r in ran.items()}
        threads = {name: ran[name].result for name in ("r1", "r2", "r3")}
        assert len(set(threads.values())) == 3
        assert threading.get_ident() in threads.values()
        assert nr.run(task=_connect, plugin=recorder)["r1"].result == "127.0.0.1"
        assert nr.run(task=_fail).failed and nr.data.failed_hosts == {"r1", "r2", "r3"}
    assert Recorder.closed == ["127.0.0.1"] * 3  # closed when the block ended
    with routers_nornir(("r1", "r2", "r3")) as again:
        assert again is nr and again.data.failed_hosts == set()
    with routers_nornir(("r1",)) as one:  # one router's own, with a serial runner
        assert one is not nr and isinstance(one.runner, SerialRunner)
    assert len(loads) == 1


def test_a_host_thread_stuck_on_a_router_does_not_hold_up_the_process_exit() -> None:
    """A worker stopping while a router hangs in a poll exits at once (the call is abandoned,
    as the job's own thread is), and the other hosts' work goes on meanwhile: another
    thread takes it. A ``ThreadPoolExecutor`` would keep the process until the call ends."""
    script = (
        "import threading\n"
        "from vpop.network.factory import _HOST_THREADS\n"
        "_HOST_THREADS.submit(threading.Event().wait, 600)  # a router that never answers\n"
        "print(_HOST_THREADS.submit(sum, (1, 2)).result(timeout=30))\n"
        "try:\n"
        "    _HOST_THREADS.submit(int, 'x').result(timeout=30)\n"
        "except ValueError as err:\n"
        "    print('raised', err)\n"
    )
    assert python_prints(script) == ["3", "raised invalid literal for int() with base 10: 'x'"]


def test_host_threads_work_in_a_forked_child() -> None:
    """``vpop serve`` forks its children: a child has none of its parent's threads, and its
    pool starts its own instead of waiting on threads that are not there."""
    script = (
        "import os\n"
        "from vpop.network.factory import _HOST_THREADS\n"
        "print(_HOST_THREADS.submit(sum, (1, 2)).result(timeout=30), flush=True)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    try:\n"
        "        print(_HOST_THREADS.submit(sum, (3, 4)).result(timeout=10), flush=True)\n"
        "        os._exit(0)\n"
        "    except BaseException:\n"
        "        os._exit(1)\n"
        "print('child', os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n"
    )
    assert python_prints(script) == ["3", "7", "child 0"]
