"""Shaping a leased uplink on frr routers with tc (a token bucket at the lease's peak rate)."""

from __future__ import annotations

import json
from typing import Any

from nornir.core.task import Result, Task

from tasks.connection import Agent, ShellError, router_agent

LATENCY = "50ms"


class ShapeError(Exception):
    """The shaping could not be read or applied."""


def burst_bytes(rate_mbps: float) -> int:
    """Bucket size: 10 ms at the rate, at least 32 KiB (tbf needs rate/HZ at minimum)."""
    return max(32 * 1024, int(rate_mbps * 1e6 / 8 * 0.010))


def _current(agent: Agent, interface: str) -> dict[str, Any]:
    answer = agent.call({"op": "run", "argv": ["tc", "-j", "qdisc", "show", "dev", interface]})
    if not answer["ok"]:
        raise ShapeError(f"cannot read qdisc of {interface}: {answer['output'].strip()}")
    for qdisc in json.loads(answer["output"] or "[]"):
        if qdisc.get("root"):
            return {"kind": qdisc.get("kind"), **qdisc.get("options", {})}
    return {"kind": None}


def _describe(state: dict[str, Any]) -> str:
    if state.get("kind") != "tbf":
        return "no shaping"
    return f"tbf rate {state['rate'] * 8 / 1e6:g}Mbit burst {state['burst']}"


def shape_uplink(
    task: Task, *, interface: str, rate_mbps: float | None, dry_run: bool | None = None
) -> Result:
    """Shape ``interface`` to ``rate_mbps`` (None removes vpop's shaping).

    Sets ``Result.diff`` (``-`` old / ``+`` new qdisc, empty when already so),
    ``Result.changed`` (True only when a change was applied) and ``Result.result`` (the
    root qdisc read back after the change).
    """
    dry = task.is_dry_run(dry_run)
    try:
        agent = router_agent(task)
        before = _current(agent, interface)
        want_rate = None if rate_mbps is None else int(rate_mbps * 1e6 / 8)
        want_burst = None if rate_mbps is None else burst_bytes(rate_mbps)
        ok = (
            before.get("kind") != "tbf"
            if rate_mbps is None
            else before.get("kind") == "tbf"
            and before.get("rate") == want_rate
            and before.get("burst") == want_burst
        )
        wanted = (
            {"kind": None}
            if rate_mbps is None
            else {"kind": "tbf", "rate": want_rate, "burst": want_burst}
        )
        diff = (
            ""
            if ok
            else f"- {interface}: {_describe(before)}\n+ {interface}: {_describe(wanted)}\n"
        )
        if dry or ok:
            return Result(host=task.host, diff=diff, changed=False, result=before)
        if rate_mbps is None:
            argv = ["tc", "qdisc", "del", "dev", interface, "root"]
        else:
            argv = [
                "tc",
                "qdisc",
                "replace",
                "dev",
                interface,
                "root",
                "tbf",
                "rate",
                f"{rate_mbps:g}mbit",
                "burst",
                str(want_burst),
                "latency",
                LATENCY,
            ]
        answer = agent.call({"op": "run", "argv": argv})
        if not answer["ok"]:
            raise ShapeError(f"{' '.join(argv)}: {answer['output'].strip()}")
        after = _current(agent, interface)
    except ShellError as err:
        raise ShapeError(f"{task.host.name}: {err}") from err
    if (after.get("kind") == "tbf") != (rate_mbps is not None):
        raise ShapeError(f"{interface}: read back {_describe(after)}, wanted {_describe(wanted)}")
    return Result(host=task.host, diff=diff, changed=True, result=after)
