"""Jinja filters that turn validated values into each platform's exact syntax: FRR and nftables
addresses and prefixes, nftables sets split by address family, interface sort keys. Each filter
refuses a value it cannot print canonically, so nothing malformed reaches a template.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from vpop.core import validate
from vpop.core.errors import BadInput

_LONG_MAX = 2**63 - 1


def parse_network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return validate.ip_network(value) if isinstance(value, str) else ipaddress.ip_network(value)
    except ValueError as err:
        raise BadInput(f"template value {value!r} is not a prefix") from err


def parse_interface(value: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    try:
        return (
            validate.ip_interface(value)
            if isinstance(value, str)
            else ipaddress.ip_interface(value)
        )
    except ValueError as err:
        raise BadInput(f"template value {value!r} is not an address") from err


def is_ipv4(value: object) -> bool:
    return isinstance(value, str) and parse_interface(value).version == 4


def is_ipv6(value: object) -> bool:
    return isinstance(value, str) and parse_interface(value).version == 6


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
    return _frr_address(parse_interface(value).ip)


def frr_prefix(value: str) -> str:
    """Print a prefix as vtysh does (``match src-ip 192.0.2.2/32``: always with a length).

    Args:
        value: a canonical prefix.

    Returns:
        The prefix; an IPv4-compatible IPv6 one in dotted form, as FRR writes it.
    """
    net = parse_network(value)
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
    return _nft_network(parse_network(value))


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
        for n in (parse_network(v) for v in values)
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
        elements = nft_elements(v for v in values if parse_network(v).version == version)
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
    listed = list(items)
    order = _frr_order(tuple(str(item[attribute]) for item in listed))
    return [listed[i] for i in order]


@functools.lru_cache(maxsize=256)
def _frr_order(names: tuple[str, ...]) -> tuple[int, ...]:
    """The positions of ``names`` in FRR's interface order (a stable sort). Kept per tuple of
    names: a router's interfaces rarely change, and the comparison is pure Python (100 lines
    took 2 ms per sort, and every render sorts twice)."""
    return tuple(sorted(range(len(names)), key=lambda i: frr_interface_key(names[i])))


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
    net = parse_network(value)
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
    iface = parse_interface(value)
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
    return _ios_ip(parse_interface(value).ip)


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


FILTERS: Mapping[str, Mapping[str, Callable[..., Any]]] = {
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
