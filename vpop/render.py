"""Render a router's intended state into device config text, one feature per template.

``templates/<platform>/<feature>.j2`` is rendered by one Jinja2 ``Environment`` per template
root, built once and cached (a shared environment whose loader is swapped per call is not
thread-safe: nornir_jinja2 1.0.0). Environments use ``StrictUndefined``, ``trim_blocks``,
``lstrip_blocks`` and ``keep_trailing_newline``, and refuse to print ``None``.

:func:`render_router` is the entry point for a run: it validates the ``RouterIntent`` mapping
(docs/selection.md) leaf by leaf with :mod:`vpop.validate`, renders every feature of the
platform, and checks each text with :func:`check_structure`, so a value that slipped past
validation cannot add a line, a token or a block to a device config.

FRR output is rendered in exactly the form the device prints back, so that a line-by-line
diff of read-back vs intended text is meaningful:

* ``pbr``: pbrd's blocks as ``show running-config`` prints them (FRR 8.4): interfaces first
  (in FRR's own interface-name order, see :func:`frr_interface_key`), then nexthop-groups,
  then pbr-maps (both in byte order of their names), each block closed by ``exit`` and ``!``.
* ``acl``: the table as ``nft list table inet vpop`` prints it (nftables 1.0.6): tabs, a /32
  or /128 as a bare address, set elements sorted, adjacent or overlapping elements merged
  (into a prefix when they form one, else a range ``a-b``), a one-element set without braces,
  IPv6 in glibc ``inet_ntop`` form (``::ffff:192.0.2.1``), and counters at zero. Load it with
  :func:`tasks.frr_config.nft_transaction`; compare a live listing after
  :func:`tasks.frr_config.zero_nft_counters`.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2

from vpop import validate
from vpop.errors import BadInput
from vpop.settings import PROJECT_ROOT

TEMPLATE_ROOT = PROJECT_ROOT / "templates"

#: Every platform and its features, in the order a pusher should apply them.
FEATURES: Mapping[str, tuple[str, ...]] = {
    # filters before forwarding: a newly selected line is never forwarded unfiltered
    "frr": ("acl", "pbr"),
    # a VRF must exist before an interface joins it; ACLs before they are applied
    "ios": ("vrf", "acl", "interfaces", "routes"),
    # one commit; the order `show configuration` prints
    "junos": ("interfaces", "firewall", "routing_instances"),
}
PLATFORMS: tuple[str, ...] = tuple(FEATURES)

_FEATURE_NAME = re.compile(r"[a-z][a-z0-9_]{0,40}", re.ASCII)
_LINUX_IFNAME = re.compile(r"[A-Za-z][A-Za-z0-9.-]{0,14}", re.ASCII)  # IFNAMSIZ, no '/' ':'
_INTENT_KEYS = frozenset({"router", "platform", "isps", "lines"})
_ISP_KEYS = frozenset({"id", "instance", "interface", "address", "next_hop", "outbound_deny"})
_LINE_KEYS = frozenset({"subscriber", "interface", "policy", "prefix", "gateway", "isp"})
_LONG_MAX = 2**63 - 1


class StructureError(BadInput):
    """A rendered config does not have the line structure of its template."""

    code = "VPOP-RENDER"


# ---- formatting helpers shared by templates and validation ---------------------------------


def _network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(value)
    except ValueError as err:
        raise BadInput(f"template value {value!r} is not a prefix") from err


def _interface(value: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    try:
        return ipaddress.ip_interface(value)
    except ValueError as err:
        raise BadInput(f"template value {value!r} is not an address") from err


def _is_ipv4(value: object) -> bool:
    return isinstance(value, str) and _interface(value).version == 4


def _is_ipv6(value: object) -> bool:
    return isinstance(value, str) and _interface(value).version == 6


def _nft_address(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """An address as nft prints it: IPv6 the way glibc ``inet_ntop`` writes it."""
    if addr.version == 4:
        return str(addr)
    value = int(addr)
    words = [(value >> (112 - 16 * i)) & 0xFFFF for i in range(8)]
    best_base, best_len, base = -1, 0, -1
    for i, word in enumerate([*words, 1]):
        if word == 0 and i < 8:
            base = i if base < 0 else base
        elif base >= 0:
            if i - base > best_len:
                best_base, best_len = base, i - base
            base = -1
    if best_base == 0 and (best_len == 6 or (best_len == 5 and words[5] == 0xFFFF)):
        # an embedded IPv4 address: ::a.b.c.d or ::ffff:a.b.c.d
        return ("::" if best_len == 6 else "::ffff:") + str(
            ipaddress.IPv4Address(value & 0xFFFFFFFF)
        )
    return str(addr)  # ipaddress compresses exactly as RFC 5952 and glibc do otherwise


def _frr_address(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """An address as FRR prints it (``frr_inet_ntop``): unlike glibc, only ``::a.b.c.d``
    (an IPv4-compatible address) is written in dotted form, not ``::ffff:a.b.c.d``."""
    value = int(addr)
    if addr.version == 6 and value >> 32 == 0 and (value >> 16) & 0xFFFF:
        return "::" + str(ipaddress.IPv4Address(value & 0xFFFFFFFF))
    return str(addr)


def frr_ip(value: str) -> str:
    """Print an address as vtysh does (``nexthop 2001:db8::2 isp-a``).

    Args:
        value: a canonical address.

    Returns:
        The address; ``::c000:202`` becomes ``::192.0.2.2`` as FRR writes it.
    """
    return _frr_address(_interface(value).ip)


def frr_prefix(value: str) -> str:
    """Print a prefix as vtysh does (``match src-ip 192.0.2.2/32``: always with a length).

    Args:
        value: a canonical prefix.

    Returns:
        The prefix; an IPv4-compatible IPv6 one in dotted form, as FRR writes it.
    """
    net = _network(value)
    return f"{_frr_address(net.network_address)}/{net.prefixlen}"


def _nft_network(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    address = _nft_address(net.network_address)
    return address if net.prefixlen == net.max_prefixlen else f"{address}/{net.prefixlen}"


def nft_value(value: str) -> str:
    """Print one prefix as nft does: a /32 or /128 as a bare address.

    Args:
        value: a canonical prefix.

    Returns:
        ``192.0.2.2`` for ``192.0.2.2/32``; ``2001:db8:2::/64`` unchanged.
    """
    return _nft_network(_network(value))


def nft_elements(values: Iterable[str]) -> list[str]:
    """The elements nft prints for an anonymous interval set of these prefixes (one family).

    nft sorts the elements and merges adjacent or overlapping ones; a merged interval is
    printed as a prefix when it is one, else as a range ``first-last``.

    Args:
        values: canonical prefixes of one address family.

    Returns:
        The printed elements, in nft's order.
    """
    spans = sorted(
        (n.version, int(n.network_address), int(n.broadcast_address))
        for n in (_network(v) for v in values)
    )
    merged: list[list[int]] = []
    for version, low, high in spans:
        if merged and merged[-1][0] == version and low <= merged[-1][2] + 1:
            merged[-1][2] = max(merged[-1][2], high)
        else:
            merged.append([version, low, high])
    elements = []
    for family, low, high in merged:
        make = ipaddress.IPv4Address if family == 4 else ipaddress.IPv6Address
        size = high - low + 1
        if size & (size - 1) == 0 and low % size == 0:
            bits = 32 if family == 4 else 128
            net = ipaddress.ip_network((make(low), bits - size.bit_length() + 1))
            elements.append(_nft_network(net))
        else:
            elements.append(f"{_nft_address(make(low))}-{_nft_address(make(high))}")
    return elements


def nft_sets(values: Iterable[str]) -> list[tuple[str, str]]:
    """Split prefixes by family into what follows ``ip daddr`` / ``ip6 daddr`` in a rule.

    Args:
        values: canonical prefixes, either family.

    Returns:
        ``[("ip", "203.0.113.128/25"), ("ip6", "{ 2001:db8:5::/48, 2001:db8:7::/48 }")]``:
        IPv4 first; a single element bare, several in braces, as nft prints them.
    """
    values = list(values)
    out = []
    for version, keyword in ((4, "ip"), (6, "ip6")):
        elements = nft_elements(v for v in values if _network(v).version == version)
        if len(elements) == 1:
            out.append((keyword, elements[0]))
        elif elements:
            out.append((keyword, "{ " + ", ".join(elements) + " }"))
    return out


def frr_interface_key(name: str) -> Any:
    """A sort key that orders interface names as FRR does (``if_cmp_name_func``).

    Non-digit runs compare bytewise, digit runs by value (``sub2`` < ``sub10``), and equal
    values by their text (``a0001`` < ``a01`` < ``a1``).

    Args:
        name: an interface name.

    Returns:
        A key for ``sorted``.
    """
    return functools.cmp_to_key(_frr_if_cmp)(name)


def _frr_if_cmp(p1: str, p2: str) -> int:
    def strcmp(a: str, b: str) -> int:
        ea, eb = a.encode(), b.encode()
        return (ea > eb) - (ea < eb)

    def leading(s: str, digits: bool) -> int:
        n = 0
        while n < len(s) and s[n].isascii() and s[n].isdigit() == digits:
            n += 1
        return n

    while p1 and p2:
        l1, l2 = leading(p1, False), leading(p2, False)
        if l1 != l2:
            return strcmp(p1, p2)
        res = strcmp(p1[:l1], p2[:l1])
        if res:
            return res
        p1, p2 = p1[l1:], p2[l1:]
        if not p1 and not p2:
            return 0
        if not p1:
            return -1
        if not p2:
            return 1
        d1, d2 = leading(p1, True), leading(p2, True)
        x1, x2 = min(int(p1[:d1]), _LONG_MAX), min(int(p2[:d2]), _LONG_MAX)
        if x1 != x2:
            return -1 if x1 < x2 else 1
        if d1 != d2:
            return strcmp(p1, p2)
        p1, p2 = p1[d1:], p2[d2:]
    return 1 if p1 else -1 if p2 else 0


def frr_interface_order(
    items: Iterable[Mapping[str, Any]], attribute: str = "interface"
) -> list[Any]:
    """Sort mappings by an interface-name attribute in FRR's order (a template filter).

    Args:
        items: mappings such as lines.
        attribute: the key holding the interface name.

    Returns:
        The items, sorted as FRR prints interfaces.
    """
    return sorted(items, key=lambda item: frr_interface_key(item[attribute]))


def _ios_ip(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    return str(addr) if addr.version == 4 else str(addr).upper()


def ios_acl_match(value: str) -> str:
    """A prefix as an IOS ACL source or destination.

    Args:
        value: a canonical prefix.

    Returns:
        ``host 192.0.2.2``, ``192.0.2.0 0.0.0.3`` or ``2001:DB8:2::/64`` (IOS prints IPv6 in
        upper case).
    """
    net = _network(value)
    if net.version == 6:
        return f"{_ios_ip(net.network_address)}/{net.prefixlen}"
    if net.prefixlen == 32:
        return f"host {net.network_address}"
    return f"{net.network_address} {net.hostmask}"


def ios_address(value: str) -> str:
    """An interface address as IOS writes it after ``ip address`` / ``ipv6 address``.

    Args:
        value: a canonical interface address.

    Returns:
        ``192.0.2.1 255.255.255.252`` or ``2001:DB8::1/64``.
    """
    iface = _interface(value)
    if iface.version == 6:
        return f"{_ios_ip(iface.ip)}/{iface.network.prefixlen}"
    return f"{iface.ip} {iface.netmask}"


def ios_ip(value: str) -> str:
    """An address as IOS prints it (IPv6 in upper case).

    Args:
        value: a canonical address.

    Returns:
        The printed address.
    """
    return _ios_ip(_interface(value).ip)


def _junos_split(value: str) -> tuple[str, str]:
    ifd, dot, unit = value.rpartition(".")
    if dot and unit.isascii() and unit.isdigit():
        return ifd, unit
    return value, "0"


def junos_ifd(value: str) -> str:
    """The physical part of a Junos interface name (``ge-0/0/1`` of ``ge-0/0/1.100``).

    Args:
        value: an interface name, with or without a unit.

    Returns:
        The name without its unit.
    """
    return _junos_split(value)[0]


def junos_unit(value: str) -> str:
    """The logical unit of a Junos interface name (``100`` of ``ge-0/0/1.100``; else ``0``).

    Args:
        value: an interface name, with or without a unit.

    Returns:
        The unit number.
    """
    return _junos_split(value)[1]


def junos_logical(value: str) -> str:
    """A Junos logical interface name: ``ge-0/0/1`` becomes ``ge-0/0/1.0``.

    Args:
        value: an interface name, with or without a unit.

    Returns:
        ``<ifd>.<unit>``.
    """
    return "{}.{}".format(*_junos_split(value))


def junos_name(value: str) -> str:
    """A name Junos accepts for a filter or counter (letters, digits, ``-`` and ``_``).

    Args:
        value: a policy name such as ``vpop-ge-0/0/1.100``.

    Returns:
        ``vpop-ge-0_0_1_100``: ``/``, ``.`` and ``:`` become ``_``.
    """
    return re.sub(r"[/.:]", "_", value)


def outbound_filter(instance: str) -> str:
    """The name of an ISP's outbound ACL / filter on ios and junos.

    Args:
        instance: the ISP's routing-instance name (``vpop-isp-a``).

    Returns:
        ``vpop-isp-a-out``.
    """
    return f"{instance}-out"


_FILTERS: Mapping[str, Mapping[str, Callable[..., Any]]] = {
    "frr": {
        "frr_interface_order": frr_interface_order,
        "frr_ip": frr_ip,
        "frr_prefix": frr_prefix,
        "nft_value": nft_value,
        "nft_sets": nft_sets,
    },
    "ios": {
        "ios_acl_match": ios_acl_match,
        "ios_address": ios_address,
        "ios_ip": ios_ip,
        "outbound_filter": outbound_filter,
    },
    "junos": {
        "junos_ifd": junos_ifd,
        "junos_unit": junos_unit,
        "junos_logical": junos_logical,
        "junos_name": junos_name,
        "outbound_filter": outbound_filter,
    },
}


# ---- environments and rendering -----------------------------------------------------------

_ENVIRONMENTS: dict[str, jinja2.Environment] = {}
_ENVIRONMENTS_LOCK = threading.Lock()


def _finalize(value: object) -> object:
    if value is None:
        raise BadInput("a template printed None; a required value is missing from the intent")
    return value


def _new_environment(root: Path) -> jinja2.Environment:
    """A device-template environment: strict, whitespace-exact, no escaping, no ``None``."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(root),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        finalize=_finalize,
    )


def environment(platform: str) -> jinja2.Environment:
    """The one Jinja2 environment of ``templates/<platform>``, built on first use.

    Args:
        platform: ``frr``, ``ios`` or ``junos``.

    Returns:
        The cached environment.

    Raises:
        BadInput: for an unknown platform.
    """
    platform = validate.one_of(platform, "platform", PLATFORMS)
    with _ENVIRONMENTS_LOCK:
        env = _ENVIRONMENTS.get(platform)
        if env is None:
            env = _new_environment(TEMPLATE_ROOT / platform)
            env.filters.update(_FILTERS[platform])
            env.tests.update({"ipv4": _is_ipv4, "ipv6": _is_ipv6})
            _ENVIRONMENTS[platform] = env
    return env


def render(platform: str, feature: str, variables: Mapping[str, Any]) -> str:
    """Render ``templates/<platform>/<feature>.j2`` with ``variables``, as given.

    No validation happens here: :func:`render_router` validates first. Use this directly
    only with variables that are already canonical.

    Args:
        platform: ``frr``, ``ios`` or ``junos``.
        feature: the template's name without ``.j2``.
        variables: the template's variables (a ``RouterIntent``).

    Returns:
        The rendered text.

    Raises:
        BadInput: for an unknown platform or feature, or when ``variables`` lack a value
            the template needs.
    """
    env = environment(platform)
    if not isinstance(feature, str) or not _FEATURE_NAME.fullmatch(feature):
        raise BadInput(f"feature: {feature!r} is not a template name")
    try:
        template = env.get_template(f"{feature}.j2")
    except jinja2.TemplateNotFound as err:
        raise BadInput(f"feature: {platform} has no template {feature}.j2") from err
    try:
        return template.render(dict(variables))
    except jinja2.UndefinedError as err:
        raise BadInput(f"{platform}/{feature}: {err.message}") from err


def render_router(intent: Mapping[str, Any]) -> dict[str, str]:
    """Validate a ``RouterIntent`` and render every feature of its platform.

    Args:
        intent: the mapping described in docs/selection.md (router, platform, isps, lines).

    Returns:
        ``{feature: text}`` in :data:`FEATURES` order.

    Raises:
        BadInput: when any value of the intent is invalid or inconsistent.
        StructureError: when a rendered text does not have its template's line structure.
    """
    canonical = validate_intent(intent)
    platform = canonical["platform"]
    rendered: dict[str, str] = {}
    for feature in FEATURES[platform]:
        text = render(platform, feature, canonical)
        check_structure(platform, feature, canonical, text)
        rendered[feature] = text
    return rendered


# ---- intent validation --------------------------------------------------------------------


def _mapping(value: object, field: str, keys: frozenset[str]) -> Mapping[str, Any]:
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
    return _interface(value).version


def _sorted_prefixes(values: Iterable[str]) -> list[str]:
    nets = {_network(v) for v in values}
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
        ((_network(p), where) for where, p in prefixes),
        key=lambda item: (item[0].version, int(item[0].network_address), -item[0].prefixlen),
    )
    for (a, where_a), (b, where_b) in zip(nets, nets[1:], strict=False):
        if a.version == b.version and int(b.network_address) <= int(a.broadcast_address):
            raise BadInput(f"{where_b}: {b} overlaps {a} of {where_a}")


def _validate_isp(raw: object, field: str, platform: str) -> dict[str, Any]:
    isp = _mapping(raw, field, _ISP_KEYS)
    isp_id = validate.name(isp["id"], f"{field}.id")
    instance = _derived(isp["instance"], f"{field}.instance", f"vpop-{isp_id}", "vpop-<id>")
    interface = validate.interface(isp["interface"], f"{field}.interface")
    address = validate.interface_address(isp["address"], f"{field}.address")
    next_hop = validate.address(isp["next_hop"], f"{field}.next_hop")
    on_link = ipaddress.ip_interface(address).network
    hop = ipaddress.ip_address(next_hop)
    if hop.version != on_link.version or hop not in on_link:
        raise BadInput(f"{field}.next_hop: {next_hop} is not on the uplink's network {on_link}")
    if hop == ipaddress.ip_interface(address).ip:
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
    line = _mapping(raw, field, _LINE_KEYS)
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
    top = _mapping(intent, "intent", _INTENT_KEYS)
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


# ---- structure check ----------------------------------------------------------------------

#: keys whose string values are kept as they are in the placeholder render
_KEEP_KEYS = frozenset({"platform"})
_PREFIX_KEYS = frozenset({"prefix", "outbound_deny"})
_INTERFACE_ADDRESS_KEYS = frozenset({"address", "gateway"})
_ADDRESS_KEYS = frozenset({"next_hop"})

# In a placeholder render, these are the values; everything else is the template's literal
# text. IPv6 before IPv4 (an IPv6 address may end in an IPv4 one), names are the x<N>
# placeholders, numbers are derived values such as a Junos unit.
_VALUE_IN_PLACEHOLDER_TEXT = re.compile(
    r"(?<![0-9A-Za-z:.])(?:[0-9A-Fa-f]{0,4}:){2,7}"
    r"(?:[0-9A-Fa-f]{1,4}|[0-9]{1,3}(?:\.[0-9]{1,3}){3})?(?:/[0-9]{1,3})?(?![0-9A-Za-z:.])"
    r"|(?<![0-9A-Za-z.])[0-9]{1,3}(?:\.[0-9]{1,3}){3}(?:/[0-9]{1,3})?(?![0-9A-Za-z.])"
    r"|(?<![0-9A-Za-z])x[0-9]+(?![0-9])"
    r"|(?<![0-9A-Za-z])[0-9]+(?![0-9A-Za-z])",
    re.ASCII,
)
# What a value may look like in real text: no space, quote, brace, bracket, ';', ',', '!',
# '#', or anything non-ASCII, so it can never open a block, end a statement or add a token.
_VALUE_SLOT = "[A-Za-z0-9_.:/-]+"
_MAX_TOKEN = 200


class _Placeholders:
    """Replaces every string leaf of the variables with a safe value of the same kind.

    Names become ``x0``, ``x1``, ... (the same name always gets the same placeholder, so
    references such as a line's ``isp`` still find their ISP). An IP value that validates
    is replaced by its own canonical form: templates and devices depend on its family, its
    length and, in nft sets, on which prefixes merge, and re-printing it through
    ``ipaddress`` keeps exactly that while dropping anything smuggled in. One that does not
    validate becomes a fresh documentation value.
    """

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.fallbacks = 0

    def _ip(self, value: str, key: str) -> str:
        try:
            if key in _PREFIX_KEYS:
                return validate.prefix(value, key)
            if key in _INTERFACE_ADDRESS_KEYS:
                return validate.interface_address(value, key)
            return validate.address(value, key)
        except BadInput:
            self.fallbacks += 1
            host = self.fallbacks % 250 + 1
            if key in _PREFIX_KEYS:
                return f"203.0.113.{host}/32"
            if key in _INTERFACE_ADDRESS_KEYS:
                return f"198.51.100.{host}/24"
            return f"192.0.2.{host}"

    def variables(self, variables: Mapping[str, Any]) -> dict[str, Any]:
        return {str(k): self.replace(v, str(k)) for k, v in variables.items()}

    def replace(self, value: object, key: str = "") -> object:
        if isinstance(value, Mapping):
            return {k: self.replace(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.replace(v, key) for v in value]
        if not isinstance(value, str) or key in _KEEP_KEYS:
            return value
        if key in _PREFIX_KEYS | _INTERFACE_ADDRESS_KEYS | _ADDRESS_KEYS:
            return self._ip(value, key)
        if value not in self.names:
            self.names[value] = f"x{len(self.names)}"
        return self.names[value]


@functools.lru_cache(maxsize=4096)
def _token_pattern(token: str) -> re.Pattern[str]:
    parts: list[str] = []
    position = 0
    for match in _VALUE_IN_PLACEHOLDER_TEXT.finditer(token):
        parts += [re.escape(token[position : match.start()]), _VALUE_SLOT]
        position = match.end()
    parts.append(re.escape(token[position:]))
    return re.compile("".join(parts))


def _split(line: str) -> list[str]:
    """Tokens and the whitespace between them (kept, so indentation and tabs count)."""
    return re.split(r"(\s+)", line)


def check_structure(platform: str, feature: str, variables: Mapping[str, Any], text: str) -> None:
    """Check that ``text`` has exactly the line structure of its template.

    The template is rendered a second time with every string leaf of ``variables`` replaced
    by a safe placeholder of the same kind (lists keep their length). The two texts must
    have the same number of lines, the same whitespace, and line by line the same literal
    tokens; where the placeholder text has a value, the real text must have a single value
    token (letters, digits and ``_.:/-``), so no value can add a line, a statement or a
    token.

    Args:
        platform: ``frr``, ``ios`` or ``junos``.
        feature: the template's name.
        variables: the variables ``text`` was rendered from.
        text: the rendered text.

    Raises:
        StructureError: naming the first line that differs.
    """
    expected = render(platform, feature, _Placeholders().variables(variables))
    compare_structure(f"{platform}/{feature}", text, expected)


def compare_structure(where: str, text: str, expected: str) -> None:
    """Require ``text`` to have ``expected``'s lines and literal tokens (values masked).

    Raises:
        StructureError: naming the first line that differs.
    """
    got_lines, expected_lines = text.splitlines(), expected.splitlines()
    if len(got_lines) != len(expected_lines) or text.endswith("\n") != expected.endswith("\n"):
        raise StructureError(
            f"{where}: rendered {len(got_lines)} lines where the template makes "
            f"{len(expected_lines)}; a value contains a line break"
        )
    for number, (got, pattern_line) in enumerate(zip(got_lines, expected_lines, strict=True), 1):
        got_tokens, expected_tokens = _split(got), _split(pattern_line)
        ok = len(got_tokens) == len(expected_tokens) and all(
            token == model
            if index % 2  # whitespace between tokens
            else len(token) <= _MAX_TOKEN and bool(_token_pattern(model).fullmatch(token))
            for index, (token, model) in enumerate(zip(got_tokens, expected_tokens, strict=True))
        )
        if not ok:
            raise StructureError(
                f"{where}: line {number} {got[:120]!r} does not have the template's "
                f"structure {pattern_line!r}"
            )


# ---- lease policers (ios, junos) ----------------------------------------------------------

#: ``templates/lease/<platform>.j2``: a lease is not a feature of a router's intent, so its
#: templates live apart from ``templates/<platform>/`` (whose files are exactly FEATURES).
LEASE_TEMPLATE_ROOT = TEMPLATE_ROOT / "lease"
#: Platforms whose leases are policed from a template (frr uplinks are shaped with tc).
LEASE_PLATFORMS: tuple[str, ...] = ("ios", "junos")
_LEASE_KEYS = frozenset({"id", "uplink", "committed_mbps", "peak_pct"})
#: Whole-number lease fields and their ranges (committed_mbps and peak_pct as
#: vpop.leasing.create_lease accepts them; id as the database stores it).
_LEASE_RANGES: Mapping[str, tuple[int, int]] = {
    "id": (1, 2**31 - 1),
    "committed_mbps": (1, 400_000),
    "peak_pct": (100, 1000),
}
#: The highest peak rate rendered: Junos routers take bandwidth-limit 8k..40g, IOS police
#: cir 8000..64g (less on older platforms).
LEASE_MAX_PEAK_BPS = 40_000_000_000
#: The burst is this much traffic at the peak rate, in milliseconds ...
LEASE_BURST_MS = 125
#: ... up to IOS's largest bc (Junos accepts more); reached above 32.768 Gbit/s.
LEASE_MAX_BURST_BYTES = 512_000_000

_lease_environment: jinja2.Environment | None = None


def lease_name(lease_id: int) -> str:
    """The name of a lease's IOS policy-map and Junos policer.

    Args:
        lease_id: the lease's id.

    Returns:
        ``vpop-lease-<id>``.
    """
    return f"vpop-lease-{lease_id}"


def junos_number(value: int) -> str:
    """A rate or size as Junos writes it: with the largest suffix that divides it exactly.

    Args:
        value: bits per second or bytes.

    Returns:
        ``150m`` for 150000000, ``15625k`` for 15625000, ``2343750`` unchanged.
    """
    for suffix, size in (("g", 10**9), ("m", 10**6), ("k", 10**3)):
        if value and value % size == 0:
            return f"{value // size}{suffix}"
    return str(value)


def lease_environment() -> jinja2.Environment:
    """The one Jinja2 environment of ``templates/lease``, built on first use.

    Returns:
        The cached environment, configured as :func:`environment`'s.
    """
    global _lease_environment
    with _ENVIRONMENTS_LOCK:
        if _lease_environment is None:
            env = _new_environment(LEASE_TEMPLATE_ROOT)
            env.filters.update(
                {"junos_ifd": junos_ifd, "junos_unit": junos_unit, "junos_number": junos_number}
            )
            _lease_environment = env
    return _lease_environment


def _lease_int(value: object, field: str) -> int:
    low, high = _LEASE_RANGES[field.rpartition(".")[2]]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadInput(f"{field}: must be a whole number from {low} to {high}, not {value!r}")
    return int(value)


def validate_lease(lease: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a lease and compute the values its policer templates print.

    Args:
        lease: ``id`` (int), ``uplink`` (an interface name), ``committed_mbps`` (int) and
            ``peak_pct`` (int, at least 100).

    Returns:
        ``id``, ``name`` (``vpop-lease-<id>``), ``uplink``, ``rate_bps`` (the peak rate,
        ``committed_mbps * peak_pct / 100`` Mbit/s, in bit/s) and ``burst_bytes``
        (:data:`LEASE_BURST_MS` at the peak rate, rounded up, at most
        :data:`LEASE_MAX_BURST_BYTES`).

    Raises:
        BadInput: a missing or unknown key, a value of the wrong type or out of range, or
            a peak rate above :data:`LEASE_MAX_PEAK_BPS`.
    """
    checked = _mapping(lease, "lease", _LEASE_KEYS)
    lease_id = _lease_int(checked["id"], "lease.id")
    uplink = validate.interface(checked["uplink"], "lease.uplink")
    committed = _lease_int(checked["committed_mbps"], "lease.committed_mbps")
    peak_pct = _lease_int(checked["peak_pct"], "lease.peak_pct")
    rate_bps = committed * peak_pct * 10_000  # Mbit/s * pct / 100 * 10**6, exactly
    if rate_bps > LEASE_MAX_PEAK_BPS:
        raise BadInput(
            f"lease: peak rate {rate_bps} bit/s (committed_mbps {committed} at peak_pct "
            f"{peak_pct}) is above the {LEASE_MAX_PEAK_BPS} bit/s a policer is rendered for"
        )
    burst = -(-rate_bps * LEASE_BURST_MS // 8000)  # bytes, rounded up
    return {
        "id": lease_id,
        "name": lease_name(lease_id),
        "uplink": uplink,
        "rate_bps": rate_bps,
        "burst_bytes": min(burst, LEASE_MAX_BURST_BYTES),
    }


def _check_lease_structure(platform: str, variables: Mapping[str, Any], text: str) -> None:
    """:func:`check_structure` for ``templates/lease/<platform>.j2``."""
    template = lease_environment().get_template(f"{platform}.j2")
    expected = template.render(_Placeholders().variables(variables))
    compare_structure(f"lease/{platform}", text, expected)


def render_lease(platform: str, lease: Mapping[str, Any]) -> str:
    """Validate a lease and render the policer that holds its uplink to the peak rate.

    ios: a ``policy-map vpop-lease-<id>`` policing ``class-default`` (conform transmit,
    exceed drop) applied with ``service-policy output`` on the uplink. junos: ``set``
    commands for a ``firewall policer vpop-lease-<id>`` (``then discard``) applied as
    ``family inet policer output`` on the uplink's unit (``unit 0`` without one).

    Args:
        platform: ``ios`` or ``junos`` (frr uplinks are shaped with tc elsewhere).
        lease: as for :func:`validate_lease`.

    Returns:
        The config text.

    Raises:
        BadInput: for another platform or an invalid lease (see :func:`validate_lease`).
        StructureError: when the text does not have its template's line structure.
    """
    if platform not in LEASE_PLATFORMS:
        raise BadInput(
            f"platform: {str(platform)[:40]!r} has no lease policer template; "
            f"use one of: {', '.join(LEASE_PLATFORMS)} (frr uplinks are shaped with tc)"
        )
    variables = validate_lease(lease)
    text = lease_environment().get_template(f"{platform}.j2").render(variables)
    _check_lease_structure(platform, variables, text)
    return text
