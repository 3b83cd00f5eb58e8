"""Counters from frr routers, as JSON (``ip -s -j link``, ``nft -j``): interfaces and lines.

Per-line counters are nftables *named* counters in their own table, ``inet vpop_acct``,
separate from the ACL table (which is replaced on every push and would reset them). The
table's rules are rebuilt when the set of lines changes (``flush chain`` keeps named
counters' values), so a selection never resets a subscriber's counters.
"""

from __future__ import annotations

import json
import re
from typing import Any

from nornir.core.task import Result, Task

from tasks.connection import CONNECTION_NAME, Agent, ShellError

ACCT_TABLE = "vpop_acct"
_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


class CollectError(Exception):
    """Counters could not be read from the router."""


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


def _acct_state(agent: Agent) -> tuple[int | None, dict[str, dict[str, int]], set[str]]:
    """Table handle, counters by name, and the interfaces the rules count."""
    answer = agent.call({"op": "run", "argv": ["nft", "-j", "list", "table", "inet", ACCT_TABLE]})
    if not answer["ok"]:
        return None, {}, set()
    handle: int | None = None
    counters: dict[str, dict[str, int]] = {}
    counted: set[str] = set()
    for item in json.loads(answer["output"])["nftables"]:
        if "table" in item:
            handle = item["table"]["handle"]
        elif "counter" in item:
            c = item["counter"]
            counters[c["name"]] = {
                "packets": c["packets"],
                "bytes": c["bytes"],
                "handle": c["handle"],
            }
        elif "rule" in item:
            for expr in item["rule"].get("expr", []):
                match = expr.get("match", {})
                if match.get("left", {}).get("meta", {}).get("key") in ("iifname", "oifname"):
                    counted.add(str(match.get("right")))
    return handle, counters, counted


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
        agent: Agent = task.host.get_connection(CONNECTION_NAME, task.nornir.config).agent()
        link = agent.call({"op": "run", "argv": ["ip", "-s", "-j", "link", "show"]})
        if not link["ok"]:
            raise CollectError(f"ip link failed: {link['output']}")
        handle, counters, counted = _acct_state(agent)
        changed = False
        wanted = {n for i in lines for n in counter_names(i)}
        if handle is None or set(counters) != wanted or counted != set(lines):
            script = acct_script(lines, set(counters))
            applied = agent.call({"op": "run", "argv": ["nft", "-f", "-"], "stdin": script})
            if not applied["ok"]:
                raise CollectError(f"cannot update {ACCT_TABLE}: {applied['output'].strip()}")
            handle, counters, counted = _acct_state(agent)
            changed = True
    except ShellError as err:
        raise CollectError(f"{task.host.name}: {err}") from err
    interfaces: dict[str, dict[str, int]] = {}
    boot_ids: dict[str, str] = {}
    for entry in json.loads(link["output"] or "[]"):
        stats = entry.get("stats64", {})
        rx, tx = stats.get("rx", {}), stats.get("tx", {})
        name = entry["ifname"]
        interfaces[name] = {
            "rx_bytes": rx.get("bytes", 0),
            "tx_bytes": tx.get("bytes", 0),
            "rx_packets": rx.get("packets", 0),
            "tx_packets": tx.get("packets", 0),
            "errors": rx.get("errors", 0) + tx.get("errors", 0),
            "drops": rx.get("dropped", 0) + tx.get("dropped", 0),
        }
        boot_ids[f"interface:{name}"] = str(entry.get("ifindex"))
    line_counters: dict[str, dict[str, int]] = {}
    for interface in lines:
        up, down = (counters.get(n, {}) for n in counter_names(interface))
        line_counters[interface] = {
            "rx_bytes": up.get("bytes", 0),
            "tx_bytes": down.get("bytes", 0),
            "rx_packets": up.get("packets", 0),
            "tx_packets": down.get("packets", 0),
            "errors": 0,
            "drops": 0,
        }
        boot_ids[f"line:{interface}"] = f"{handle}:{up.get('handle')}:{down.get('handle')}"
    result: dict[str, Any] = {
        "interfaces": interfaces,
        "lines": line_counters,
        "width": 64,
        "boot_ids": boot_ids,
    }
    return Result(host=task.host, result=result, changed=changed)
