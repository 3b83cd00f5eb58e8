"""Counters from frr routers, as JSON (``ip -s -j link``, ``nft -j``): interfaces and lines.

Per-line counters are nftables *named* counters in their own table, ``inet vpop_acct``,
separate from the ACL table (which is replaced on every push and would reset them). The
table's rules are rebuilt when the set of lines changes (``flush chain`` keeps named
counters' values), so a selection never resets a subscriber's counters.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, NamedTuple

from nornir.core.task import Result, Task

from tasks.connection import Agent, ShellError, router_agent

ACCT_TABLE = "vpop_acct"
#: The counters of a series, in the order of the tuples :func:`collect_counters` returns.
COUNTER_NAMES = ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets", "errors", "drops")
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
    counters}, "width": 64, "boot_ids": {"interface": {ifname: id}, "line": {interface:
    id}}}`` where counters are a tuple ``(rx_bytes, tx_bytes, rx_packets, tx_packets,
    errors, drops)`` (:data:`COUNTER_NAMES`; for a line, rx is from the subscriber and tx is
    to it) and a boot id changes when the counter was recreated (interface index, nft
    table/counter handles), which marks a reset. ``changed`` is True only when the
    accounting table had to be updated.
    """
    try:
        agent = router_agent(task)
        data = _read(agent)
        changed = False
        plan = _plan(tuple(lines))
        have = data["counters"].keys()
        counted = data["counted"]
        if data["table_handle"] is None or have != plan.wanted or set(counted) != plan.lines:
            script = acct_script(lines, set(have))
            applied = agent.call({"op": "run", "argv": ["nft", "-f", "-"], "stdin": script})
            if not applied["ok"]:
                raise CollectError(f"cannot update {ACCT_TABLE}: {applied['output'].strip()}")
            data = _read(agent)
            changed = True
    except ShellError as err:
        raise CollectError(f"{task.host.name}: {err}") from err
    interfaces: dict[str, tuple[int, ...]] = {}
    interface_boots: dict[str, str] = {}
    for name, entry in data["interfaces"].items():
        # ifindex, then rx_bytes, tx_bytes, rx_packets, tx_packets, errors, drops: the
        # agent's order, COUNTER_NAMES'
        if len(entry) != _FIGURES:
            raise CollectError(f"{task.host.name}: interface {name}: {len(entry)} figures")
        interfaces[name] = tuple(entry[1:])
        interface_boots[name] = str(entry[0])
    named = data["counters"]
    table = data["table_handle"]
    line_counters: dict[str, tuple[int, ...]] = {}
    line_boots: dict[str, str] = {}
    for interface, up_name, down_name in plan.each:
        up, down = named.get(up_name, _ABSENT), named.get(down_name, _ABSENT)
        line_counters[interface] = (up[1], down[1], up[0], down[0], 0, 0)
        line_boots[interface] = f"{table}:{up[2]}:{down[2]}"
    result: dict[str, Any] = {
        "interfaces": interfaces,
        "lines": line_counters,
        "width": 64,
        "boot_ids": {"interface": interface_boots, "line": line_boots},
    }
    return Result(host=task.host, result=result, changed=changed)


_ABSENT = (0, 0, None)  # a line the table does not count (yet): packets, bytes, handle
_FIGURES = len(COUNTER_NAMES) + 1  # an interface's: its index, then its counters


class _Plan(NamedTuple):
    """What a poll of a set of lines reads, worked out once per set (every poll asks)."""

    each: tuple[tuple[str, str, str], ...]  # interface, up and down counter
    wanted: frozenset[str]  # every line's counter names
    lines: frozenset[str]


@lru_cache(maxsize=256)
def _plan(lines: tuple[str, ...]) -> _Plan:
    each = tuple((i, *counter_names(i)) for i in lines)
    return _Plan(each, frozenset(n for e in each for n in e[1:]), frozenset(lines))
