"""Counters from frr routers, as JSON (``ip -s -j link``, ``nft -j``): interfaces and lines.

Per-line counters are nftables *named* counters in their own table, ``inet vpop_acct``,
separate from the ACL table (which is replaced on every push and would reset them). The
table's rules are rebuilt when the set of lines changes (``flush chain`` keeps named
counters' values), so a selection never resets a subscriber's counters.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from nornir.core.task import Result, Task

from tasks.connection import Agent, ShellError, router_agent

ACCT_TABLE = "vpop_acct"
_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


class CollectError(Exception):
    """Counters could not be read from the router."""


@lru_cache(maxsize=65536)  # read for every line of every poll; interface names are few
def counter_names(interface: str) -> tuple[str, str]:
    """The named counters of a line: traffic from the subscriber, and to it."""
    base = _UNSAFE.sub("_", interface)
    return f"{base}_up", f"{base}_down"


def acct_script(interfaces: list[str], existing: set[str]) -> str:
    """One nft transaction that makes ``inet vpop_acct`` count exactly ``interfaces``."""
    wanted = {n for i in interfaces for n in counter_names(i)}
    lines = [
        f"add table inet {ACCT_TABLE}",
        f"add chain inet {ACCT_TABLE} forward "
        "{ type filter hook forward priority filter - 10; policy accept; }",
        f"flush chain inet {ACCT_TABLE} forward",
    ]
    lines += [f"delete counter inet {ACCT_TABLE} {n}" for n in sorted(existing - wanted)]
    lines += [f"add counter inet {ACCT_TABLE} {n}" for n in sorted(wanted - existing)]
    for interface in sorted(interfaces):
        up, down = counter_names(interface)
        lines.append(
            f'add rule inet {ACCT_TABLE} forward iifname "{interface}" counter name "{up}"'
        )
        lines.append(
            f'add rule inet {ACCT_TABLE} forward oifname "{interface}" counter name "{down}"'
        )
    return "\n".join(lines) + "\n"


def _read(agent: Agent) -> dict[str, Any]:
    answer = agent.call({"op": "counters", "table": ["inet", ACCT_TABLE]})
    if not answer["ok"]:
        raise CollectError(f"cannot read counters: {answer.get('error')}")
    return answer


def collect_counters(task: Task, *, lines: list[str]) -> Result:
    """Read interface and per-line counters; create or update line counters as needed.

    Args:
        lines: the interfaces of the router's lines (each gets an up and a down counter).

    Sets ``Result.result`` to ``{"interfaces": {ifname: counters}, "lines": {interface:
    counters}, "width": 64, "boot_ids": {"interface:<ifname>" | "line:<interface>": id}}``
    where counters are ``rx_bytes, tx_bytes, rx_packets, tx_packets, errors, drops`` (for a
    line, rx is from the subscriber and tx is to it) and a boot id changes when the counter
    was recreated (interface index, nft table/counter handles), which marks a reset.
    ``changed`` is True only when the accounting table had to be updated.
    """
    try:
        agent = router_agent(task)
        data = _read(agent)
        changed = False
        names = [counter_names(i) for i in lines]
        wanted = {n for pair in names for n in pair}
        have = set(data["counters"])
        if data["table_handle"] is None or have != wanted or set(data["counted"]) != set(lines):
            script = acct_script(lines, have)
            applied = agent.call({"op": "run", "argv": ["nft", "-f", "-"], "stdin": script})
            if not applied["ok"]:
                raise CollectError(f"cannot update {ACCT_TABLE}: {applied['output'].strip()}")
            data = _read(agent)
            changed = True
    except ShellError as err:
        raise CollectError(f"{task.host.name}: {err}") from err
    interfaces: dict[str, dict[str, int]] = {}
    boot_ids: dict[str, str] = {}
    for name, (ifindex, *counters) in data["interfaces"].items():
        # rx_bytes, tx_bytes, rx_packets, tx_packets, errors, drops: the agent's order
        interfaces[name] = dict(zip(_INTERFACE_KEYS, counters, strict=True))
        boot_ids[f"interface:{name}"] = str(ifindex)
    named = data["counters"]
    table = data["table_handle"]
    line_counters: dict[str, dict[str, int]] = {}
    for interface, (up_name, down_name) in zip(lines, names, strict=True):
        up, down = named.get(up_name, _ABSENT), named.get(down_name, _ABSENT)
        line_counters[interface] = {
            "rx_bytes": up[1],
            "tx_bytes": down[1],
            "rx_packets": up[0],
            "tx_packets": down[0],
            "errors": 0,
            "drops": 0,
        }
        boot_ids[f"line:{interface}"] = f"{table}:{up[2]}:{down[2]}"
    result: dict[str, Any] = {
        "interfaces": interfaces,
        "lines": line_counters,
        "width": 64,
        "boot_ids": boot_ids,
    }
    return Result(host=task.host, result=result, changed=changed)


_INTERFACE_KEYS = ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets", "errors", "drops")
_ABSENT = (0, 0, None)  # a line the table does not count (yet): packets, bytes, handle


def read_line_counters(task: Task, *, lines: list[str]) -> Result:
    """Read the named counters of ``lines`` alone, changing nothing (no interfaces, no
    update of the accounting table): what the engine reads right after a push, so that
    accounting cuts a moved line's traffic where the router moved it.

    Sets ``Result.result`` to ``{interface: {"rx_bytes", "tx_bytes", "rx_packets",
    "tx_packets"}}`` for the lines the table counts (a line it does not count yet is left
    out).
    """
    try:
        answer = router_agent(task).call(
            {"op": "counters", "table": ["inet", ACCT_TABLE], "links": False}
        )
    except ShellError as err:
        raise CollectError(f"{task.host.name}: {err}") from err
    if not answer["ok"]:
        raise CollectError(f"cannot read counters: {answer.get('error')}")
    named = answer["counters"]
    counted: dict[str, dict[str, int]] = {}
    for interface in lines:
        up, down = (named.get(n) for n in counter_names(interface))
        if up is not None and down is not None:
            counted[interface] = {
                "rx_bytes": up[1],
                "tx_bytes": down[1],
                "rx_packets": up[0],
                "tx_packets": down[0],
            }
    return Result(host=task.host, result=counted)
