"""The router agent is closed: it does only vpop's operations, each argument checked, and
runs only vpop's command lines; the product agent has no fault hook, the lab's variant has.

The agent runs here as a subprocess speaking its JSON lines, with stub ``ip``, ``tc`` and
``nft`` programs (they log what reached them) and a fake pbrd speaking the vty protocol.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import tasks.router_agent as product
import tasks.router_kernel as kernel
from tasks import collect, frr_config, shape
from tasks.connection import (
    AGENT_SOURCE,
    CONNECTION_NAME,
    KERNEL_IMPORT,
    agent_source,
    compose_agent,
)
from vpop.lab.drill_agent import drill_agent_source
from vpop.lab.inventory import write_inventory
from vpop.lab.topology import build_topology

GOLDEN = Path(__file__).parent / "templates" / "frr"

STUB = """#!{python}
import json, os, sys
name, args = os.path.basename(sys.argv[0]), sys.argv[1:]
with open({log!r}, "a") as fh:
    stdin = sys.stdin.read() if args == ["-f", "-"] else ""  # only nft -f - reads it
    fh.write(json.dumps([name, *args]) + "\\n" + json.dumps(stdin) + "\\n")
if name == "ip" and args == ["-s", "-j", "link", "show"]:
    print(json.dumps([{{"ifname": "sub1", "ifindex": 7, "stats64": {{"rx": {{"bytes": 10}}}}}}]))
elif name == "nft" and args[:3] == ["-j", "list", "table"]:
    print(json.dumps({{"nftables": [{{"table": {{"handle": 3}}}},
        {{"counter": {{"name": "sub1_up", "packets": 2, "bytes": 300, "handle": 4}}}}]}}))
else:
    print("ran", name, *args)
"""


class FakeDaemon:
    """A pbrd vty socket: records every command; ``bad ...`` is rejected (status 1)."""

    def __init__(self, vty_dir: Path) -> None:
        self.commands: list[str] = []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(vty_dir / "pbrd.vty"))
        self.server.listen(4)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while chunk := conn.recv(4096):
                buf += chunk
                while b"\0" in buf:
                    raw, _, buf = buf.partition(b"\0")
                    command = raw.decode()
                    self.commands.append(command)
                    status = 1 if command.startswith("bad") else 0
                    conn.sendall(f"said {command}\n".encode() + b"\0\0\0" + bytes([status]))


class AgentProcess:
    """The agent as a subprocess; ``call`` sends one request and reads one answer line."""

    def __init__(self, source: str, workdir: Path, env: dict[str, str]) -> None:
        script = workdir / "agent.py"
        script.write_text(source)
        # a parent that is not pytest: the lab variant's cut kills the agent's parent
        wrapper = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"
        self.start([sys.executable, "-c", wrapper, sys.executable, "-u", str(script)], env)

    def start(self, argv: list[str], env: dict[str, str]) -> None:
        """Start the agent with ``argv`` and read its ready line."""
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.stdout, selectors.EVENT_READ)
        self.buf = b""
        self.hello = self.readline()

    def readline(self, timeout: float = 15.0) -> dict[str, Any]:
        """The next answer line (bounded wait); {} when the agent closed its output."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "the agent did not answer in time"
            if self.selector.select(remaining):
                chunk = os.read(self.stdout.fileno(), 65536)
                if not chunk:
                    return {}
                self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def call(self, request: Any) -> dict[str, Any]:
        """Send one request, return its answer."""
        self.stdin.write(json.dumps(request).encode() + b"\n")
        self.stdin.flush()
        return self.readline()

    def close(self) -> None:
        """Stop the agent (and its wrapper) by closing its input; kill it if it lingers."""
        with contextlib.suppress(BrokenPipeError):
            self.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.stdout.close()


@pytest.fixture
def box(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Stub programs, a fake pbrd and the environment an agent runs with."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "programs.log"
    log.touch()
    for name in ("ip", "tc", "nft", "sh", "rm", "vtysh"):
        stub = bindir / name
        stub.write_text(STUB.format(python=sys.executable, log=str(log)))
        stub.chmod(0o755)
    with tempfile.TemporaryDirectory(prefix="vty-") as vty_dir:  # a short socket path
        daemon = FakeDaemon(Path(vty_dir))
        env = {"PATH": str(bindir), "FRR_VTY_DIR": vty_dir, "HOME": str(tmp_path)}
        env["VPOP_NFT_LIBRARY"] = ""  # nft through the stub program, not this host's tables
        yield {"env": env, "log": log, "daemon": daemon, "dir": tmp_path}
        daemon.server.close()


@pytest.fixture
def agent(box: dict[str, Any]) -> Iterator[AgentProcess]:
    """The product agent, started as vpop starts it (its source, read by tasks.connection)."""
    proc = AgentProcess(AGENT_SOURCE, box["dir"], box["env"])
    assert proc.hello["ready"] is True
    try:
        yield proc
    finally:
        proc.close()


def ran(box: dict[str, Any]) -> list[tuple[list[str], str]]:
    """What reached the stub programs: (argv, stdin) per run."""
    lines = box["log"].read_text().splitlines()
    return [(json.loads(a), json.loads(b)) for a, b in zip(lines[::2], lines[1::2], strict=True)]


def test_an_unknown_operation_is_refused_and_the_agent_keeps_serving(
    agent: AgentProcess, box: dict[str, Any]
) -> None:
    answer = agent.call({"op": "shell", "argv": ["sh", "-c", "id"]})
    assert answer["ok"] is False and answer["refused"] is True
    assert answer["error"].startswith("refused: shell: not an operation of this agent")
    assert agent.call({"op": None})["error"].startswith("refused: None:")
    assert agent.call(["not", "an", "object"])["refused"] is True
    assert ran(box) == []
    # still serving: the next good request is answered
    listed = agent.call({"op": "run", "argv": ["tc", "-j", "qdisc", "show", "dev", "isp-b"]})
    assert listed["ok"] is True and listed["output"] == "ran tc -j qdisc show dev isp-b\n"


NFT_ESCAPES = [
    "flush ruleset\n",
    'include "/etc/nftables.conf"\n',
    "define x = 1\n",
    "table ip filter {}\n",
    "add rule inet filter input drop\n",
    "table inet vpop {}; flush ruleset\n",
    'table inet vpop { comment "{" }\nflush ruleset\n',
    "add table inet vpop # {\nflush ruleset\n",
    "table inet vpop {\n",
]


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        ({"op": "run", "argv": ["sh", "-c", "id"]}, "is not a command this agent runs"),
        ({"op": "run", "argv": ["rm", "-rf", "/"]}, "is not a command this agent runs"),
        ({"op": "run", "argv": ["nft", "flush", "ruleset"]}, "is not a command this agent"),
        ({"op": "run", "argv": ["nft", "list", "table", "ip", "filter"]}, "is not a command"),
        ({"op": "run", "argv": ["ip", "link", "set", "eth0", "down"]}, "is not a command"),
        ({"op": "run", "argv": ["ip", "-j", "rule", "show"]}, "is not a command"),
        ({"op": "run", "argv": ["tc", "qdisc", "del", "dev", "-force", "root"]}, "not a command"),
        ({"op": "run", "argv": ["tc", "qdisc", "del", "dev", "a/../b", "root"]}, "not a command"),
        ({"op": "run", "argv": ["tc", "-j", "qdisc", "show", "dev", "x"], "stdin": "x"}, "stdin"),
        ({"op": "run", "argv": "ip -j rule show"}, "argument 'argv' must be a list of words"),
        ({"op": "run", "argv": ["ip"], "shell": True}, "unknown argument 'shell'"),
        ({"op": "run"}, "missing argument 'argv'"),
        *[
            ({"op": "run", "argv": ["nft", "-f", "-"], "stdin": s}, "nft script")
            for s in NFT_ESCAPES
        ],
        ({"op": "vty", "daemon": "../../tmp/x", "commands": ["show x"]}, "'daemon' must be"),
        ({"op": "vty", "daemon": "zebra", "commands": ["show x"]}, "'daemon' must be one of"),
        ({"op": "vty", "daemon": "pbrd", "commands": ["show x\0write"]}, "'commands' must"),
        ({"op": "vty", "daemon": "pbrd", "commands": []}, "'commands' must"),
        ({"op": "vty", "daemon": "pbrd", "commands": ["write memory"]}, "not a show command"),
        ({"op": "vty", "daemon": "pbrd", "config": True, "commands": ["do write"]}, "leaves"),
        ({"op": "vty", "daemon": "pbrd", "config": "yes", "commands": ["x"]}, "true or false"),
        ({"op": "probe", "mark": 1, "target": "localhost"}, "an IPv4 address"),
        ({"op": "probe", "mark": "1", "target": "192.0.2.1"}, "'mark' must be an integer"),
        ({"op": "probe", "mark": 1, "target": "192.0.2.1", "count": True}, "'count' must be"),
        ({"op": "probe", "mark": 1, "target": "192.0.2.1", "count": 10**6}, "1..10000"),
        ({"op": "throughput", "mark": 1, "target": "192.0.2.1", "seconds": 3600}, "'seconds'"),
        ({"op": "counters", "table": ["ip", "filter"]}, "'table' must be"),
        ({"op": "counters", "table": ["inet", "vpop; flush"]}, "'table' must be"),
    ],
)
def test_requests_outside_the_table_are_refused_naming_the_operation(
    agent: AgentProcess, box: dict[str, Any], request_: dict[str, Any], reason: str
) -> None:
    answer = agent.call(request_)
    assert answer["ok"] is False and answer["refused"] is True, answer
    assert answer["error"].startswith(f"refused: {request_['op']}: "), answer
    assert reason in answer["error"], answer
    assert answer["output"] == answer["error"]  # what the run callers print on failure
    assert ran(box) == [] and box["daemon"].commands == []


def test_the_command_lines_vpop_sends_reach_their_programs(
    agent: AgentProcess, box: dict[str, Any]
) -> None:
    acl = (GOLDEN / "deny-lists.acl.expected.cfg").read_text()
    requests = [
        (["nft", "-f", "-"], frr_config.nft_transaction(acl)),
        (["nft", "-f", "-"], collect.acct_script(["sub1", "sub2.10"], {"old_up", "sub1_up"})),
        (["nft", "list", "table", "inet", "vpop"], ""),
        (["ip", "rule", "add", "fwmark", "10001", "lookup", "10001", "priority", "900"], ""),
        (["tc", "-j", "qdisc", "show", "dev", "isp-b"], ""),
        (["tc", "qdisc", "del", "dev", "isp-b", "root"], ""),
        (
            ["tc", "qdisc", "replace", "dev", "isp-b", "root", "tbf", "rate", "2.5mbit"]
            + ["burst", "32768", "latency", shape.LATENCY],
            "",
        ),
    ]
    for argv, stdin in requests:
        request = {"op": "run", "argv": argv} | ({"stdin": stdin} if stdin else {})
        answer = agent.call(request)
        assert answer["ok"] is True, answer
        assert answer["output"] == "ran " + " ".join(argv) + "\n"
    assert ran(box) == requests


def test_counters_are_read_from_a_vpop_table_only(agent: AgentProcess, box: dict[str, Any]) -> None:
    answer = agent.call({"op": "counters", "table": ["inet", "vpop_acct"]})
    assert answer["ok"] is True, answer
    assert answer["counters"] == {"sub1_up": [2, 300, 4]} and answer["table_handle"] == 3
    assert answer["interfaces"]["sub1"][:3] == [7, 10, 0]
    assert [argv for argv, _ in ran(box)] == [
        ["ip", "-s", "-j", "link", "show"],
        ["nft", "-j", "list", "table", "inet", "vpop_acct"],
    ]


def test_vty_shows_and_pushes_reach_the_daemon(agent: AgentProcess, box: dict[str, Any]) -> None:
    shown = agent.call({"op": "vty", "daemon": "pbrd", "commands": ["show running-config"]})
    assert shown["ok"] is True and shown["outputs"][0]["output"] == "said show running-config\n"
    cmds = ["nexthop-group vpop-isp-b", "nexthop 198.51.100.1 isp-b", "exit"]
    pushed = agent.call({"op": "vty", "daemon": "pbrd", "config": True, "commands": cmds})
    assert pushed["ok"] is True and [o["command"] for o in pushed["outputs"]] == cmds
    rejected = agent.call(
        {"op": "vty", "daemon": "pbrd", "config": True, "commands": ["exit", "bad x", "exit"]}
    )
    assert rejected["ok"] is False and rejected["failed_at"] == 1
    daemon: FakeDaemon = box["daemon"]
    assert daemon.commands == [
        "enable",
        "show running-config",
        "configure terminal",
        *cmds,
        "end",
        "configure terminal",
        "exit",
        "bad x",
        "end",
    ]


def test_the_product_agent_has_no_fault_hook(tmp_path: Path, box: dict[str, Any]) -> None:
    source = compose_agent()
    assert source == AGENT_SOURCE  # what vpop sends to a router, unless a lab inventory says
    assert source.endswith(Path(product.__file__).read_text().replace(KERNEL_IMPORT, ""))
    assert source.startswith(Path(kernel.__file__).read_text())
    for word in ("VPOP_FAULT", "fault", "getppid", "os.kill", "os._exit", "SIGKILL"):
        assert word not in source, word
    assert re.search(r"\bcut", source, re.IGNORECASE) is None
    for module in (product, kernel):
        assert not [n for n in vars(module) if re.search("cut|fault|drill", n, re.IGNORECASE)]
    assert product.OPS["vty"].handler is product.vty
    # and in behaviour: a fault armed the way the agent once read it is ignored
    fault = tmp_path / "fault"
    fault.write_text("cut-after:1")
    armed = AgentProcess(AGENT_SOURCE, tmp_path, {**box["env"], "VPOP_FAULT_FILE": str(fault)})
    try:
        cmds = ["nexthop-group drill", "exit"]
        pushed = armed.call({"op": "vty", "daemon": "pbrd", "config": True, "commands": cmds})
        assert pushed["ok"] is True and len(pushed["outputs"]) == 2
        assert fault.read_text() == "cut-after:1"  # not even read
    finally:
        armed.close()


def test_the_lab_variant_cuts_a_push_after_n_commands(tmp_path: Path, box: dict[str, Any]) -> None:
    source = drill_agent_source(tmp_path / "faults")
    assert source.startswith(AGENT_SOURCE.rsplit('if __name__ == "__main__":', 1)[0])
    # the lab's layout: the router's vty directory is <lab_dir>/<router>, its fault file
    # <lab_dir>/faults/<router> (Lab.set_fault)
    (tmp_path / "faults").mkdir()
    fault = tmp_path / "faults" / Path(box["env"]["FRR_VTY_DIR"]).name
    fault.write_text("cut-after:2")
    drill = AgentProcess(source, tmp_path, box["env"])
    try:
        # the variant is still closed, and a show is not a push: the fault stays armed
        assert drill.call({"op": "nope"})["refused"] is True
        assert drill.call({"op": "vty", "daemon": "pbrd", "commands": ["show x"]})["ok"]
        assert fault.exists()
        cmds = ["nexthop-group vpop-isp-c", "nexthop 203.0.113.1 isp-c", "exit"]
        answer = drill.call({"op": "vty", "daemon": "pbrd", "config": True, "commands": cmds})
        assert answer == {}  # no answer: the session died mid-push
        assert drill.proc.wait(timeout=10) != 0
    finally:
        drill.close()
    assert not fault.exists()  # one-shot
    daemon: FakeDaemon = box["daemon"]
    pushed = daemon.commands[daemon.commands.index("configure terminal") + 1 :]
    assert pushed[:2] == cmds[:2] and "exit" not in pushed


def test_an_agent_file_is_read_again_once_it_changes(tmp_path: Path) -> None:
    """The file is kept between sessions (one opens per lab run), but never a stale one."""
    path = tmp_path / "agent.py"
    extras = {"agent_file": str(path)}
    path.write_text("print('one')\n")
    assert agent_source(extras) == "print('one')\n"
    assert agent_source(extras) == "print('one')\n"
    path.write_text("print('two, longer')\n")
    assert agent_source(extras) == "print('two, longer')\n"
    # another file of the same size and time put in its place (as `cp -p` and `mv` do)
    stamp = path.stat().st_mtime_ns
    (tmp_path / "new.py").write_text("print('six, longer')\n")
    os.utime(tmp_path / "new.py", ns=(stamp, stamp))
    os.replace(tmp_path / "new.py", path)
    assert agent_source(extras) == "print('six, longer')\n"
    path.unlink()
    with pytest.raises(OSError):
        agent_source(extras)


def test_only_a_lab_inventory_selects_the_drill_variant(tmp_path: Path) -> None:
    assert agent_source({}) == AGENT_SOURCE
    assert agent_source({"key_file": "/root/.ssh/id"}) == AGENT_SOURCE
    hosts_file = tmp_path / "hosts.yaml"
    write_inventory(hosts_file, build_topology(2), {"rc1": 2201, "rc2": 2202})
    hosts = yaml.safe_load(hosts_file.read_text())
    assert sorted(hosts) == ["rc1", "rc2"]
    for host in hosts.values():
        extras = host["connection_options"][CONNECTION_NAME]["extras"]
        assert agent_source(extras) == drill_agent_source(tmp_path / "faults")
        assert "_armed_cut" in agent_source(extras)
    repo_hosts = yaml.safe_load((Path(__file__).parents[1] / "inventory/hosts.yaml").read_text())
    assert "agent_file" not in json.dumps(repo_hosts)
