"""The intent a router is rendered from (its ISPs and its lines), checked before any template
sees it: known keys only, names and interfaces in each platform's alphabet, addresses and
prefixes canonical, unique and non-overlapping, derived names (policies, instances) exactly as
vpop would derive them. :func:`validate_intent` returns the canonical copy or raises BadInput.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from vpop.core import validate
from vpop.core.errors import BadInput
from vpop.network.filters import junos_name, outbound_filter, parse_interface, parse_network
from vpop.network.platforms import PLATFORMS

_LINUX_IFNAME = re.compile(r"[A-Za-z][A-Za-z0-9.-]{0,14}", re.ASCII)  # IFNAMSIZ, no '/' ':'


_INTENT_KEYS = frozenset({"router", "platform", "isps", "lines"})


_ISP_KEYS = frozenset({"id", "instance", "interface", "address", "next_hop", "outbound_deny"})


_LINE_KEYS = frozenset({"subscriber", "interface", "policy", "prefix", "gateway", "isp"})


def checked_mapping(value: object, field: str, keys: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise BadInput(f"{field}: expected a mapping, got {type(value).__name__}")
    missing = sorted(keys - set(value))
    unknown = sorted(str(k) for k in set(value) - keys)
    if missing:
        raise BadInput(f"{field}: missing {', '.join(missing)}")
    if unknown:
        raise BadInput(
            f"{field}: unknown key(s) {', '.join(unknown)}; expected {', '.join(sorted(keys))}"
        )
    return value


def _sequence(value: object, field: str) -> Sequence[Any]:
    if not isinstance(value, list | tuple):
        raise BadInput(f"{field}: expected a list, got {type(value).__name__}")
    return value


def _derived(value: object, field: str, expected: str, rule: str) -> str:
    if value != expected:
        raise BadInput(f"{field}: must be {expected!r} ({rule}), not {repr(value)[:60]}")
    return expected


def _version(value: str) -> int:
    return parse_interface(value).version


def _sorted_prefixes(values: Iterable[str]) -> list[str]:
    nets = {parse_network(v) for v in values}
    return [
        str(n) for n in sorted(nets, key=lambda n: (n.version, int(n.network_address), n.prefixlen))
    ]


def _check_unique(values: Iterable[str], what: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise BadInput(f"{what} {value!r} is used more than once")
        seen.add(value)


def _check_no_overlap(prefixes: Iterable[tuple[str, str]]) -> None:
    """Refuse two lines whose prefixes overlap: anti-spoofing would let each use the other's."""
    nets = sorted(
        ((parse_network(p), where) for where, p in prefixes),
        key=lambda item: (item[0].version, int(item[0].network_address), -item[0].prefixlen),
    )
    for (a, where_a), (b, where_b) in zip(nets, nets[1:], strict=False):
        if a.version == b.version and int(b.network_address) <= int(a.broadcast_address):
            raise BadInput(f"{where_b}: {b} overlaps {a} of {where_a}")


def _validate_isp(raw: object, field: str, platform: str) -> dict[str, Any]:
    isp = checked_mapping(raw, field, _ISP_KEYS)
    isp_id = validate.name(isp["id"], f"{field}.id")
    instance = _derived(isp["instance"], f"{field}.instance", f"vpop-{isp_id}", "vpop-<id>")
    interface = validate.interface(isp["interface"], f"{field}.interface")
    address = validate.interface_address(isp["address"], f"{field}.address")
    next_hop = validate.address(isp["next_hop"], f"{field}.next_hop")
    on_link = validate.ip_interface(address).network
    hop = validate.ip_address(next_hop)
    if hop.version != on_link.version or hop not in on_link:
        raise BadInput(f"{field}.next_hop: {next_hop} is not on the uplink's network {on_link}")
    if hop == validate.ip_interface(address).ip:
        raise BadInput(f"{field}.next_hop: {next_hop} is the router's own address")
    deny = [
        validate.prefix(p, f"{field}.outbound_deny[{i}]")
        for i, p in enumerate(_sequence(isp["outbound_deny"], f"{field}.outbound_deny"))
    ]
    if platform == "frr" and not _LINUX_IFNAME.fullmatch(interface):
        raise BadInput(f"{field}.interface: {interface!r} is not a Linux interface name")
    return {
        "id": isp_id,
        "instance": instance,
        "interface": interface,
        "address": address,
        "next_hop": next_hop,
        "outbound_deny": _sorted_prefixes(deny),
    }


def _validate_line(raw: object, field: str, platform: str) -> dict[str, Any]:
    line = checked_mapping(raw, field, _LINE_KEYS)
    interface = validate.interface(line["interface"], f"{field}.interface")
    if platform == "frr" and not _LINUX_IFNAME.fullmatch(interface):
        raise BadInput(f"{field}.interface: {interface!r} is not a Linux interface name")
    prefix = validate.prefix(line["prefix"], f"{field}.prefix")
    gateway = validate.interface_address(line["gateway"], f"{field}.gateway")
    if _version(prefix) != _version(gateway):
        raise BadInput(f"{field}: prefix {prefix} and gateway {gateway} are not the same family")
    isp = line["isp"]
    return {
        "subscriber": validate.name(line["subscriber"], f"{field}.subscriber"),
        "interface": interface,
        "policy": _derived(
            line["policy"], f"{field}.policy", f"vpop-{interface}", "vpop-<interface>"
        ),
        "prefix": prefix,
        "gateway": gateway,
        "isp": None if isp is None else validate.name(isp, f"{field}.isp"),
    }


def validate_intent(intent: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a ``RouterIntent`` leaf by leaf and return it canonical and sorted.

    Beyond each value's own form, this checks what the templates rely on: ``instance`` is
    ``vpop-<id>`` and ``policy`` is ``vpop-<interface>``; ids and interfaces are unique; a
    next hop is on its uplink's network; a line's ``isp`` names an ISP of this router whose
    next hop has the family of the line's prefix; line prefixes do not overlap; on ``frr``
    interface names are Linux names; on ``ios``/``junos`` filter names do not collide.

    Args:
        intent: the untrusted mapping.

    Returns:
        A new mapping: ISPs sorted by id, lines by interface, deny lists deduplicated and
        sorted (IPv4 first, by address), every value canonical.

    Raises:
        BadInput: naming the first offending field and what to fix.
    """
    top = checked_mapping(intent, "intent", _INTENT_KEYS)
    router = validate.name(top["router"], "router")
    platform = validate.one_of(top["platform"], "platform", PLATFORMS)
    isps = [
        _validate_isp(raw, f"isps[{i}]", platform)
        for i, raw in enumerate(_sequence(top["isps"], "isps"))
    ]
    lines = [
        _validate_line(raw, f"lines[{i}]", platform)
        for i, raw in enumerate(_sequence(top["lines"], "lines"))
    ]
    _check_unique((isp["id"] for isp in isps), "ISP id")
    _check_unique(
        [isp["interface"] for isp in isps] + [line["interface"] for line in lines], "interface"
    )
    by_id = {isp["id"]: isp for isp in isps}
    for i, line in enumerate(lines):
        if line["isp"] is None:
            continue
        isp = by_id.get(line["isp"])
        if isp is None:
            raise BadInput(
                f"lines[{i}].isp: {line['isp']!r} has no uplink on {router}; "
                f"ISPs here: {', '.join(sorted(by_id)) or 'none'}"
            )
        if _version(isp["next_hop"]) != _version(line["prefix"]):
            raise BadInput(
                f"lines[{i}].isp: {isp['id']} is reached over IPv{_version(isp['next_hop'])} "
                f"and cannot carry the IPv{_version(line['prefix'])} prefix {line['prefix']}"
            )
    _check_no_overlap((f"lines[{i}].prefix", line["prefix"]) for i, line in enumerate(lines))
    if platform in ("ios", "junos"):
        rename = junos_name if platform == "junos" else str
        _check_unique(
            [rename(line["policy"]) for line in lines]
            + [rename(outbound_filter(isp["instance"])) for isp in isps],
            f"{platform} filter name",
        )
    return {
        "router": router,
        "platform": platform,
        "isps": sorted(isps, key=lambda isp: isp["id"]),
        "lines": sorted(lines, key=lambda line: line["interface"]),
    }
