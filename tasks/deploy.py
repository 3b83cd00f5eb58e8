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


PBR_STATE = ["show running-config", "show pbr map json", "show pbr nexthop-groups json"]
LIST_ACL = {"op": "run", "argv": ["nft", "list", "table", *NFT_TABLE]}  # the ACL table, read


def _batch(agent: Agent, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Several agent requests in one round trip; their answers in order."""
    answer = agent.call({"op": "batch", "requests": requests})
    answers: list[dict[str, Any]] = answer.get("answers", [])
    if len(answers) != len(requests):
        raise DeployError(f"router agent answered a batch badly: {answer.get('error')}")
    return answers


def _acl(answer: dict[str, Any]) -> str:
    # rendered tables say "counter packets 0 bytes 0": compare rules, not traffic
    return frr_config.zero_nft_counters(answer["output"]) if answer["ok"] else ""


def _read(agent: Agent) -> dict[str, str]:
    pbr, acl = _batch(
        agent,
        [
            {"op": "vty", "daemon": "pbrd", "commands": ["show running-config"]},
            LIST_ACL,
        ],
    )
    if not pbr["ok"]:
        raise DeployError(f"cannot read pbrd configuration: {pbr.get('error')}")
    return {"pbr": frr_config.canonical(pbr["outputs"][0]["output"]), "acl": _acl(acl)}


def _observe(
    agent: Agent, *, acl: str | None, counters: str | None
) -> tuple[dict[str, str], dict[str, str | None], dict[str, list[int]] | None]:
    """One round trip: pbrd's configuration and what is installed, the ACL table (unless
    ``acl`` is already known) and, when ``counters`` names a table, its named counters.

    Returns:
        (state ``{"pbr", "acl"}``, :func:`_installed`'s map, counters or None).
    """
    requests: list[dict[str, Any]] = [
        {"op": "vty", "daemon": "pbrd", "commands": PBR_STATE},
        {"op": "rules"},
    ]
    if acl is None:
        requests.append(LIST_ACL)
    if counters is not None:
        requests.append({"op": "counters", "table": ["inet", counters], "links": False})
    answers = _batch(agent, requests)
    vty, rules = answers[0], answers[1]
    if not vty["ok"]:
        raise DeployError(f"cannot read pbr state: {vty.get('error')}")
    if not rules["ok"]:
        raise DeployError(f"cannot read kernel rules: {rules.get('error')}")
    running, maps, groups = (o["output"] for o in vty["outputs"])
    state = {"pbr": frr_config.canonical(running), "acl": _acl(answers[2]) if acl is None else acl}
    named = answers[-1].get("counters") if counters is not None and answers[-1]["ok"] else None
    return state, _installed(running, maps, groups, rules["rules"]), named


def _installed(
    running: str, maps: str, groups: str, rules: list[dict[str, Any]]
) -> dict[str, str | None]:
    """Policy name -> the routing instance its traffic really uses (None if not in effect).

    pbrd's own view (``show pbr map json``) says "installed" even for a policy bound to an
    interface the router does not have, so the kernel is asked as well: a policy is in
    effect only when a kernel rule from the policy's source prefix, in on the interface the
    policy is bound to, looks up the table of the policy's nexthop-group.
    """
    tables = {g["name"]: int(g["id"]) for g in json.loads(groups or "[]")}
    bound = {
        line.split()[1]: block.header.split()[1]
        for block in frr_config.parse_blocks(running)
        if block.kind == "interface"
        for line in block.body
    }
    kernel = {(r["iif"], r["src"], r["table"]) for r in rules}
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
        observed, installed, _ = _observe(agent, acl=None, counters=None)
    except ShellError as err:
        raise RouterUnreachable(f"{task.host.name}: {err}") from err
    return Result(host=task.host, result={**observed, "installed": installed})


def _wanted(intended: dict[str, str]) -> dict[str, str]:
    """A rendered state as the router's read-back compares with it (pbrd's text canonical)."""
    return {"pbr": frr_config.canonical(intended["pbr"]), "acl": intended["acl"]}


def diff_config(running: dict[str, str], intended: dict[str, str]) -> str:
    """The unified diff of every feature, running -> intended."""
    return "".join(
        frr_config.unified_diff(running.get(f, ""), intended.get(f, ""), f) for f in ("pbr", "acl")
    )


def diff_each(task: Task, *, intended: list[dict[str, str]]) -> Result:
    """Dry runs of several intended states at once: the router's state is read once (one
    round trip) and each intended state (``{"pbr": ..., "acl": ...}``) diffed against it,
    as :func:`deploy_config` does on a dry run. Nothing is pushed.

    Sets ``Result.result`` to ``{"diffs": [unified diff per intended state], "state":
    the state read}``; ``changed`` is False.

    Raises:
        RouterUnreachable: the state could not be read.
    """
    agent = _agent(task)
    try:
        running = _read(agent)
    except ShellError as err:
        raise RouterUnreachable(f"{task.host.name}: {err}") from err
    diffs = [diff_config(running, _wanted(i)) for i in intended]
    return Result(host=task.host, changed=False, result={"diffs": diffs, "state": running})


def deploy_config(
    task: Task,
    *,
    intended: dict[str, str],
    dry_run: bool | None = None,
    counters: str | None = None,
) -> Result:
    """Make the router's vpop-owned state equal ``intended`` (``{"pbr": ..., "acl": ...}``).

    Reads the running state, computes the diff, and stops there on a dry run or an empty
    diff. Otherwise pushes the pbrd commands (stopping at the first rejected one) and the
    nftables table (one atomic transaction), then reads the state back and requires it to
    equal the intended state, with every policy's rule installed.

    Sets ``Result.diff`` (unified diff, running -> intended), ``Result.changed`` (True only
    when something was pushed) and ``Result.result`` (``{"pushed": [commands], "state":
    state read back, "installed": {policy: nexthop-group}}``, and, when ``counters`` names
    an nftables table of the router, ``"counters"``: its named counters ``{name: [packets,
    bytes, handle]}`` read in the same round trip as the verified state, left out when the
    table cannot be read). A read-back is one round trip to the router's agent.

    Raises:
        RouterUnreachable: nothing was sent. PushRejected: a command was refused.
        PushInterrupted: the session broke mid-push. VerifyFailed: read-back differs.
    """
    dry = task.is_dry_run(dry_run)
    agent = _agent(task)
    want = _wanted(intended)
    try:
        running = _read(agent)
    except ShellError as err:
        raise RouterUnreachable(f"{task.host.name}: {err}") from err
    diff = diff_config(running, want)
    if dry or not diff:
        result: dict[str, Any] = {"pushed": [], "state": running, "dry_run": dry}
        if not dry:  # nothing to push: still report what is installed, for verification
            try:
                _, result["installed"], named = _observe(
                    agent, acl=running["acl"], counters=counters
                )
            except ShellError as err:
                raise RouterUnreachable(f"{task.host.name}: {err}") from err
            if named is not None:
                result["counters"] = named
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
        state, installed, named = _settle(
            agent, want, None if acl_pushed else running["acl"], counters
        )
    except ShellError as err:
        raise PushInterrupted(
            f"{task.host.name}: session broke after {len(pushed)} command(s): {err}"
        ) from err
    if state != want:
        raise VerifyFailed(
            f"{task.host.name}: state read back differs from intended:\n" + diff_config(state, want)
        )
    result = {"pushed": pushed, "state": state, "installed": installed}
    if named is not None:
        result["counters"] = named
    return Result(host=task.host, diff=diff, changed=True, result=result)


def _settle(
    agent: Agent, want: dict[str, str], acl: str | None, counters: str | None
) -> tuple[dict[str, str], dict[str, str | None], dict[str, list[int]] | None]:
    """Read back until every intended policy's rule is installed (bounded wait).

    ``acl`` is the ACL text already known to be on the router (None: read it back too,
    because it was just pushed); ``counters`` as :func:`_observe` takes it.
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
        state, installed, named = _observe(agent, acl=acl, counters=counters)
        done = all(installed.get(policy) == group for policy, group in expected.items())
        if done or time.monotonic() > deadline:
            return state, installed, named
        time.sleep(0.002)
