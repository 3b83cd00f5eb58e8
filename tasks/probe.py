"""ISP probes from a router through each ISP's routing instance: latency, jitter, loss,
throughput. No database here; the caller stores the samples."""

from __future__ import annotations

import json
from typing import Any

from nornir.core.task import Result, Task

from tasks.connection import Agent, ShellError, router_agent

RULE_PRIORITY = 900  # above pbrd's per-interface rules (300s), below main (32766)


class ProbeError(Exception):
    """The router could not run a probe (unreachable, routing instance missing)."""


def _agent(task: Task) -> Agent:
    try:
        return router_agent(task)
    except (ShellError, OSError) as err:
        raise ProbeError(f"{task.host.name}: {err}") from err


def instance_tables(agent: Agent) -> dict[str, int]:
    """Routing instance (pbrd nexthop-group) name -> its kernel table id."""
    answer = agent.call(
        {"op": "vty", "daemon": "pbrd", "commands": ["show pbr nexthop-groups json"]}
    )
    if not answer["ok"]:
        raise ProbeError(f"cannot read nexthop-groups: {answer.get('error')}")
    groups = json.loads(answer["outputs"][0]["output"] or "[]")
    return {g["name"]: int(g["id"]) for g in groups if g.get("installed")}


def _ensure_mark_rule(agent: Agent, table: int) -> None:
    """Locally generated packets marked ``table`` look up that table (idempotent)."""
    rules = agent.call({"op": "rules"})
    for rule in rules.get("rules", []) if rules["ok"] else []:
        if rule.get("fwmark") == table and rule.get("table") == table:
            return
    argv = ["ip", "rule", "add", "fwmark", str(table), "lookup", str(table)]
    added = agent.call({"op": "run", "argv": [*argv, "priority", str(RULE_PRIORITY)]})
    if not added["ok"]:
        raise ProbeError(f"cannot add the probe rule for table {table}: {added['output']}")


def probe_isps(
    task: Task,
    *,
    isps: list[str],
    target: str,
    count: int = 20,
    interval: float = 0.01,
    timeout: float = 1.0,
    throughput_seconds: float = 0.0,
) -> Result:
    """Probe ``target`` through each ISP's routing instance (``vpop-<isp>``) on the router.

    Packets carry a firewall mark equal to the instance's kernel table, and one ``ip rule``
    per instance sends marked, locally generated packets to that table: the probe follows
    exactly the routes a subscriber selected to that ISP follows.

    Sets ``Result.result`` to ``{isp: {"latency_ms", "jitter_ms", "loss_pct",
    "throughput_mbps", "sent", "received"}}`` (an ``"error"`` key for an ISP whose
    instance is missing); ``changed`` is False (the probe rule is not configuration).
    """
    agent = _agent(task)
    try:
        tables = instance_tables(agent)
        out: dict[str, dict[str, Any]] = {}
        for isp in isps:
            table = tables.get(f"vpop-{isp}")
            if table is None:
                out[isp] = {"error": f"routing instance vpop-{isp} is not installed"}
                continue
            _ensure_mark_rule(agent, table)
            request = {
                "op": "probe",
                "mark": table,
                "target": target,
                "count": count,
                "interval": interval,
                "timeout": timeout,
            }
            echo = agent.call(request, timeout=count * interval + timeout + 10)
            keys = ("latency_ms", "jitter_ms", "loss_pct", "sent", "received")
            entry: dict[str, Any] = {k: echo.get(k) for k in keys}
            entry["throughput_mbps"] = None
            if throughput_seconds > 0:
                tput = agent.call(
                    {
                        "op": "throughput",
                        "mark": table,
                        "target": target,
                        "seconds": throughput_seconds,
                    },
                    timeout=throughput_seconds + 15,
                )
                entry["throughput_mbps"] = tput.get("mbps") if tput.get("ok") else None
            out[isp] = entry
    except ShellError as err:
        raise ProbeError(f"{task.host.name}: {err}") from err
    return Result(host=task.host, result=out)
