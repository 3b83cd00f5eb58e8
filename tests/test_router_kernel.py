"""The agent's kernel side in a network namespace of its own: nftables through libnftables
gives what the ``nft`` program gives, the rtnetlink rule dump what ``ip rule`` shows, and a
batch answers its requests in one round trip, each on its own.

The agent runs as vpop starts it (its composed source), under ``unshare --net``: a fresh
namespace with no tables and the kernel's three default rules, gone with the process.
Root is needed (CI runs as root).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tasks import collect, frr_config
from tasks.connection import AGENT_SOURCE
from tests.test_router_agent import GOLDEN, AgentProcess


class NamespacedAgent(AgentProcess):
    """The agent started with ``argv`` (a namespace of its own, or another's);
    ``host`` runs a program in its namespace (the reference the agent is held to)."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.start(argv, env)
        assert self.hello["ready"] is True

    def host(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """Run a program in the agent's network namespace."""
        return subprocess.run(
            ["nsenter", f"--net=/proc/{self.proc.pid}/ns/net", *argv],
            capture_output=True,
            text=True,
            timeout=30,
        )


ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/nonexistent"}


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[NamespacedAgent]:
    """The product agent in a fresh network namespace (gone with it)."""
    script = tmp_path / "agent.py"
    script.write_text(AGENT_SOURCE)
    proc = NamespacedAgent(["unshare", "--net", "python3", "-u", str(script)], ENV)
    try:
        yield proc
    finally:
        proc.close()


@pytest.fixture
def program_agent(tmp_path: Path, agent: NamespacedAgent) -> Iterator[NamespacedAgent]:
    """A second agent in the same namespace that runs the ``nft`` program (no library)."""
    script = tmp_path / "agent.py"
    argv = ["nsenter", f"--net=/proc/{agent.proc.pid}/ns/net", "python3", "-u", str(script)]
    proc = NamespacedAgent(argv, {**ENV, "VPOP_NFT_LIBRARY": ""})
    try:
        yield proc
    finally:
        proc.close()


def _nft(agent: AgentProcess, argv: list[str], stdin: str = "") -> dict[str, Any]:
    return agent.call({"op": "run", "argv": ["nft", *argv]} | ({"stdin": stdin} if stdin else {}))


def test_nft_through_the_library_does_what_the_program_does(
    agent: NamespacedAgent, program_agent: AgentProcess
) -> None:
    acl = (GOLDEN / "deny-lists.acl.expected.cfg").read_text()
    pushed = _nft(agent, ["-f", "-"], frr_config.nft_transaction(acl))
    assert pushed == {"ok": True, "status": 0, "output": ""}, pushed
    listed = _nft(agent, ["list", "table", "inet", "vpop"])
    program = agent.host("nft", "list", "table", "inet", "vpop")
    assert listed["ok"] is True and program.returncode == 0
    assert listed["output"] == program.stdout
    assert frr_config.zero_nft_counters(listed["output"]).strip() == acl.strip()
    # the same listing through the agent that runs the program
    assert _nft(program_agent, ["list", "table", "inet", "vpop"])["output"] == program.stdout
    # a change made by someone else (the program, another process) is seen at once: the
    # library's kept context does not answer from a stale cache
    changed = agent.host("nft", "add", "table", "inet", "vpop_other")
    assert changed.returncode == 0, changed.stderr
    added = agent.host("nft", "add", "chain", "inet", "vpop", "extra")
    assert added.returncode == 0, added.stderr
    relisted = _nft(agent, ["list", "table", "inet", "vpop"])["output"]
    assert "chain extra" in relisted
    assert relisted == agent.host("nft", "list", "table", "inet", "vpop").stdout


def test_a_refused_nft_script_changes_nothing_and_says_why(agent: NamespacedAgent) -> None:
    acl = (GOLDEN / "deny-lists.acl.expected.cfg").read_text()
    assert _nft(agent, ["-f", "-"], frr_config.nft_transaction(acl))["ok"] is True
    before = agent.host("nft", "list", "table", "inet", "vpop").stdout
    # a valid first statement, then a bad one: the transaction is all or nothing
    bad = _nft(agent, ["-f", "-"], "flush table inet vpop\nadd chain inet vpop x { bogus }\n")
    assert bad["ok"] is False and bad["status"] == 1
    assert "Error:" in bad["output"]
    assert agent.host("nft", "list", "table", "inet", "vpop").stdout == before
    missing = _nft(agent, ["list", "table", "inet", "vpop_nothing"])
    assert missing["ok"] is False and "No such file or directory" in missing["output"]


def test_counters_read_through_the_library_are_the_kernels(agent: NamespacedAgent) -> None:
    script = collect.acct_script(["sub1", "sub2.10"], set())
    assert _nft(agent, ["-f", "-"], script)["ok"] is True
    answer = agent.call({"op": "counters", "table": ["inet", collect.ACCT_TABLE], "links": False})
    assert answer["ok"] is True, answer
    program = json.loads(agent.host("nft", "-j", "list", "table", "inet", "vpop_acct").stdout)
    expected = {
        item["counter"]["name"]: [
            item["counter"]["packets"],
            item["counter"]["bytes"],
            item["counter"]["handle"],
        ]
        for item in program["nftables"]
        if "counter" in item
    }
    assert answer["counters"] == expected
    assert set(expected) == {n for i in ("sub1", "sub2.10") for n in collect.counter_names(i)}
    assert answer["counted"] == ["sub1", "sub2.10"]


def _ip_rules(agent: NamespacedAgent) -> list[dict[str, Any]]:
    """``ip rule`` in the agent's namespace, in the agent's shape (tables by number)."""
    shown = json.loads(agent.host("ip", "-j", "-N", "rule", "show").stdout)
    return [
        {
            "priority": r["priority"],
            "src": None if r["src"] == "all" else r["src"],
            "srclen": r.get("srclen", 0 if r["src"] == "all" else 32),
            "iif": r.get("iif"),
            "table": int(r["table"]),
            "fwmark": int(r["fwmark"], 16) if "fwmark" in r else None,
        }
        for r in shown
    ]


def test_the_rule_dump_is_what_ip_rule_shows(agent: NamespacedAgent) -> None:
    assert agent.host("ip", "link", "add", "sub1", "type", "veth", "peer", "sub1p").returncode == 0
    added = agent.host(
        "ip", "rule", "add", "from", "192.0.2.2", "iif", "sub1", "lookup", "10001", "pref", "309"
    )
    assert added.returncode == 0, added.stderr
    argv = ["ip", "rule", "add", "fwmark", "10002", "lookup", "10002", "priority", "900"]
    assert agent.call({"op": "run", "argv": argv})["ok"] is True
    answer = agent.call({"op": "rules"})
    assert answer["ok"] is True
    assert answer["rules"] == _ip_rules(agent)
    assert {"priority": 309, "src": "192.0.2.2", "srclen": 32, "iif": "sub1"}.items() <= next(
        r for r in answer["rules"] if r["priority"] == 309
    ).items()
    assert [r["table"] for r in answer["rules"] if r["fwmark"] == 10002] == [10002]


def test_a_batch_answers_each_request_in_order_on_its_own(agent: NamespacedAgent) -> None:
    answer = agent.call(
        {
            "op": "batch",
            "requests": [
                {"op": "rules"},
                {"op": "run", "argv": ["nft", "flush", "ruleset"]},  # refused, the next runs
                {"op": "run", "argv": ["nft", "list", "table", "inet", "vpop"]},  # fails
                {"op": "counters", "table": ["inet", "vpop_acct"], "links": False},
            ],
        }
    )
    assert answer["ok"] is False
    rules, refused, failed, counters = answer["answers"]
    assert rules["ok"] is True and [r["table"] for r in rules["rules"]] == [255, 254, 253]
    assert refused["refused"] is True and "is not a command" in refused["error"]
    assert failed["ok"] is False and failed["status"] == 1
    assert counters["ok"] is True and counters["counters"] == {}
    everything_ok = agent.call({"op": "batch", "requests": [{"op": "rules"}, {"op": "rules"}]})
    assert everything_ok["ok"] is True and len(everything_ok["answers"]) == 2


@pytest.mark.parametrize(
    "requests",
    [[], [{"op": "rules"}] * 17, [{"op": "batch", "requests": [{"op": "rules"}]}], ["rules"]],
)
def test_a_bad_batch_is_refused_whole(agent: NamespacedAgent, requests: list[Any]) -> None:
    answer = agent.call({"op": "batch", "requests": requests})
    assert answer["refused"] is True and "1..16 requests, none of them a batch" in answer["error"]
