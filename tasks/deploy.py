"""Nornir tasks that read, diff, push and verify a router's vpop-owned configuration.

The device side for ``frr`` routers: pbrd configuration (routing instances, policies,
bindings) through the router agent's vty connection, and the nftables table ``inet vpop``
replaced atomically with ``nft -f``. No database and no Flask here: the intended texts come in
as arguments, rendered by the caller.
"""

from __future__ import annotations

import json
import time
from typing import Any

from nornir.core.task import Result, Task

from tasks import frr_config
from tasks.connection import Agent, ShellError, router_agent

NFT_TABLE = ("inet", "vpop")
INSTALL_WAIT = 2.0  # seconds pbrd may take to program a policy's kernel rule


class DeployError(Exception):
    """Base of the errors a deploy task raises."""


class RouterUnreachable(DeployError):
    """The router could not be reached; nothing was sent to it."""


class PushRejected(DeployError):
    """The router rejected a command; the push stopped there (earlier commands applied)."""

    def __init__(self, message: str, applied: list[str]) -> None:
        super().__init__(message)
        self.applied = applied


class PushInterrupted(DeployError):
    """The session broke during the push: the router's state is unknown."""


class VerifyFailed(DeployError):
    """After the push, the router's state read back differs from the intended state."""


def _agent(task: Task) -> Agent:
    try:
        return router_agent(task)
    except (ShellError, OSError) as err:
        raise RouterUnreachable(f"{task.host.name}: {err}") from err


def _read_pbr(agent: Agent) -> str:
    """The vpop-owned part of pbrd's running configuration, canonical."""
    pbr = agent.call({"op": "vty", "daemon": "pbrd", "commands": ["show running-config"]})
    if not pbr["ok"]:
        raise DeployError(f"cannot read pbrd configuration: {pbr.get('error')}")
    return frr_config.canonical(pbr["outputs"][0]["output"])


def _read(agent: Agent) -> dict[str, str]:
    pbr = _read_pbr(agent)
    acl = agent.call({"op": "run", "argv": ["nft", "list", "table", *NFT_TABLE]})
    return {
        "pbr": pbr,
        # rendered tables say "counter packets 0 bytes 0": compare rules, not traffic
        "acl": frr_config.zero_nft_counters(acl["output"]) if acl["ok"] else "",
    }


def _installed(agent: Agent, running: str | None = None) -> dict[str, str | None]:
    """Policy name -> the routing instance its traffic really uses (None if not in effect).

    pbrd's own view (``show pbr map json``) says "installed" even for a policy bound to an
    interface the router does not have, so the kernel is asked as well: a policy is in
    effect only when a kernel rule from the policy's source prefix, in on the interface the
    policy is bound to, looks up the table of the policy's nexthop-group.
    """
    vty = agent.call(
        {
            "op": "vty",
            "daemon": "pbrd",
            "commands": [
                "show pbr map json",
                "show pbr nexthop-groups json",
                "show running-config",
            ],
        }
    )
    if not vty["ok"]:
        raise DeployError(f"cannot read pbr state: {vty.get('error')}")
    maps, groups, running = (o["output"] for o in vty["outputs"])
    rules = agent.call({"op": "run", "argv": ["ip", "-j", "rule", "show"]})
    if not rules["ok"]:
        raise DeployError(f"cannot read kernel rules: {rules['output']}")
    tables = {g["name"]: str(g["id"]) for g in json.loads(groups or "[]")}
    bound = {
        line.split()[1]: block.header.split()[1]
        for block in frr_config.parse_blocks(running)
        if block.kind == "interface"
        for line in block.body
    }
    kernel = {
        (r.get("iif"), r.get("src"), str(r.get("table")))
        for r in json.loads(rules["output"] or "[]")
    }
    out: dict[str, str | None] = {}
    for pmap in json.loads(maps or "[]"):
        name = pmap.get("name", "")
        if not name.startswith(frr_config.OWNED_PREFIX):
            continue
        group = None
        for policy in pmap.get("policies", []):
            nhg = policy.get("nexthopGroup", {}).get("name")
            source = str(policy.get("matchSrc", "")).split("/")[0]
            if (
                policy.get("installed")
                and nhg in tables
                and (bound.get(name), source, tables[nhg]) in kernel
            ):
                group = nhg
        out[name] = group
    return out


def read_state(task: Task) -> Result:
    """Read the router's vpop-owned state.

    Sets ``Result.result`` to ``{"pbr": canonical pbrd text, "acl": nft table text,
    "installed": {policy: nexthop-group or None}}``; ``changed`` is False.
    """
    agent = _agent(task)
    try:
        state: dict[str, Any] = _read(agent)
        state["installed"] = _installed(agent)
    except ShellError as err:
        raise RouterUnreachable(f"{task.host.name}: {err}") from err
    return Result(host=task.host, result=state)


def diff_config(running: dict[str, str], intended: dict[str, str]) -> str:
    """The unified diff of every feature, running -> intended."""
    return "".join(
        frr_config.unified_diff(running.get(f, ""), intended.get(f, ""), f) for f in ("pbr", "acl")
    )


def deploy_config(task: Task, *, intended: dict[str, str], dry_run: bool | None = None) -> Result:
    """Make the router's vpop-owned state equal ``intended`` (``{"pbr": ..., "acl": ...}``).

    Reads the running state, computes the diff, and stops there on a dry run or an empty
    diff. Otherwise pushes the pbrd commands (stopping at the first rejected one) and the
    nftables table (one atomic transaction), then reads the state back and requires it to
    equal the intended state, with every policy's rule installed.

    Sets ``Result.diff`` (unified diff, running -> intended), ``Result.changed`` (True only
    when something was pushed) and ``Result.result`` (``{"pushed": [commands], "state":
    state read back, "installed": {policy: nexthop-group}}``).

    Raises:
        RouterUnreachable: nothing was sent. PushRejected: a command was refused.
        PushInterrupted: the session broke mid-push. VerifyFailed: read-back differs.
    """
    dry = task.is_dry_run(dry_run)
    agent = _agent(task)
    want = {"pbr": frr_config.canonical(intended["pbr"]), "acl": intended["acl"]}
    try:
        running = _read(agent)
    except ShellError as err:
        raise RouterUnreachable(f"{task.host.name}: {err}") from err
    diff = diff_config(running, want)
    if dry or not diff:
        result: dict[str, Any] = {"pushed": [], "state": running, "dry_run": dry}
        if not dry:  # nothing to push: still report what is installed, for verification
            try:
                result["installed"] = _installed(agent, running["pbr"])
            except ShellError as err:
                raise RouterUnreachable(f"{task.host.name}: {err}") from err
        return Result(host=task.host, diff=diff, changed=False, result=result)
    pushed: list[str] = []
    try:
        cmds = frr_config.commands(running["pbr"], want["pbr"])
        if cmds:
            answer = agent.call({"op": "vty", "daemon": "pbrd", "config": True, "commands": cmds})
            pushed = [o["command"] for o in answer.get("outputs", []) if o["status"] == 0]
            if not answer["ok"]:
                raise PushRejected(
                    f"{task.host.name} rejected {cmds[answer['failed_at']]!r}: "
                    f"{answer.get('error')}",
                    pushed,
                )
        if running["acl"] != want["acl"]:
            script = frr_config.nft_transaction(want["acl"])
            answer = agent.call({"op": "run", "argv": ["nft", "-f", "-"], "stdin": script})
            if not answer["ok"]:
                raise PushRejected(
                    f"{task.host.name} rejected the nftables table: {answer['output'].strip()}",
                    pushed,
                )
            pushed.append("nft -f <table inet vpop>")
        acl_pushed = running["acl"] != want["acl"]
        state, installed = _settle(agent, want, None if acl_pushed else running["acl"])
    except ShellError as err:
        raise PushInterrupted(
            f"{task.host.name}: session broke after {len(pushed)} command(s): {err}"
        ) from err
    if state != want:
        raise VerifyFailed(
            f"{task.host.name}: state read back differs from intended:\n" + diff_config(state, want)
        )
    return Result(
        host=task.host,
        diff=diff,
        changed=True,
        result={"pushed": pushed, "state": state, "installed": installed},
    )


def _settle(
    agent: Agent, want: dict[str, str], acl: str | None
) -> tuple[dict[str, str], dict[str, str | None]]:
    """Read back until every intended policy's rule is installed (bounded wait).

    ``acl`` is the ACL text already known to be on the router (None: read it back too,
    because it was just pushed).
    """
    expected = {
        b.header.split()[1]: next(
            (line.split()[-1] for line in b.body if line.startswith("set nexthop-group")), None
        )
        for b in frr_config.parse_blocks(want["pbr"])
        if b.kind == "pbr-map"
    }
    deadline = time.monotonic() + INSTALL_WAIT
    while True:
        state = _read(agent) if acl is None else {"pbr": _read_pbr(agent), "acl": acl}
        installed = _installed(agent, state["pbr"])
        done = all(installed.get(policy) == group for policy, group in expected.items())
        if done or time.monotonic() > deadline:
            return state, installed
        time.sleep(0.002)
