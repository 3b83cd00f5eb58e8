"""The lab's topology as data: nodes, links and addresses.

Pure functions, no side effects: the namespace lab (:mod:`vpop.lab`), the containerlab file
test and the database registration all read the same description.

Address plan (documentation ranges only):

* subscriber ``subK`` (K from 1): ``192.0.2.4(K-1)/30``; router side ``.1``, host side ``.2``.
* routers ``rc1`` .. ``rcN`` (N from 2 to 8, default 2); subscriber ``subK`` attaches to router
  ``rc((K-1) mod N + 1)`` (round-robin).
* ISP ``i`` (a=0, b=1, ...) towards router ``j`` (rc1=0, rc2=1, ...): ``198.51.100.4(Ni+j)/30``;
  router side ``.1``, ISP side ``.2`` (with the default 2 routers: ``198.51.100.4(2i+j)/30``;
  at most 3 x 8 = 24 subnets, 198.51.100.0-95, so ``PORTAL_ADDRESS`` stays free).
* every ISP host answers on ``203.0.113.100`` (HTTP: its id; UDP 7: echo; TCP 9: discard),
  so the address a subscriber reaches tells which ISP its traffic really left through.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from vpop.core.errors import BadInput

DEFAULT_ROUTERS = 2
MIN_ROUTERS = 2
MAX_ROUTERS = 8
ISPS = ("isp-a", "isp-b", "isp-c")
DEFAULT_ISP = "isp-a"
SERVICE_ADDRESS = "203.0.113.100"
# every router answers here for the subscriber portal (as a provider's access router does)
PORTAL_ADDRESS = "198.51.100.200"
MAX_SUBSCRIBERS = 64
NAMESPACE_PREFIX = "vpop-"


def router_names(count: int = DEFAULT_ROUTERS) -> tuple[str, ...]:
    """The names of a lab's ``count`` routers: ``rc1`` .. ``rcN``.

    Raises:
        BadInput: when the count is outside 2..8.
    """
    if not MIN_ROUTERS <= count <= MAX_ROUTERS:
        raise BadInput(f"--routers must be between {MIN_ROUTERS} and {MAX_ROUTERS}, not {count}")
    return tuple(f"rc{j}" for j in range(1, count + 1))


# the default lab's routers (what tests of the default lab and the containerlab file use)
ROUTERS = router_names()


@dataclass(frozen=True)
class Link:
    """A point-to-point link between two nodes, with each end's interface and address."""

    a: str
    a_ifname: str
    a_address: str  # with prefix length
    b: str
    b_ifname: str
    b_address: str


@dataclass(frozen=True)
class Line:
    """A subscriber's attachment: router, interface and the subscriber's own prefix."""

    subscriber: str
    router: str
    interface: str
    gateway: str  # router's address, with prefix length
    prefix: str  # the subscriber's own addresses (anti-spoofing source list)
    host_address: str
    calling_number: str
    circuit_id: str


@dataclass(frozen=True)
class Uplink:
    """An ISP's uplink on a router."""

    isp: str
    router: str
    interface: str
    address: str
    next_hop: str


@dataclass(frozen=True)
class Topology:
    """Everything the lab builds."""

    routers: tuple[str, ...]
    isps: tuple[str, ...]
    subscribers: tuple[str, ...]
    links: tuple[Link, ...]
    lines: tuple[Line, ...]
    uplinks: tuple[Uplink, ...]
    prefix: str = NAMESPACE_PREFIX

    @property
    def nodes(self) -> tuple[str, ...]:
        """Every node name, routers first."""
        return self.routers + self.isps + self.subscribers

    def namespace(self, node: str) -> str:
        """The Linux network namespace of a node."""
        if node not in self.nodes:
            raise BadInput(f"unknown lab node {node!r}; nodes are: {', '.join(self.nodes)}")
        return self.prefix + node


def _p2p(network: ipaddress.IPv4Network) -> tuple[str, str]:
    hosts = list(network.hosts())
    return f"{hosts[0]}/{network.prefixlen}", f"{hosts[1]}/{network.prefixlen}"


def build_topology(
    subscribers: int = 4, prefix: str = NAMESPACE_PREFIX, routers: int = DEFAULT_ROUTERS
) -> Topology:
    """Describe a lab of ``routers`` routers with ``subscribers`` subscribers spread
    round-robin over them; every ISP has an uplink on every router.

    Raises:
        BadInput: when the subscriber count is outside 1..64 (the /30 plan of 192.0.2.0/24)
            or the router count outside 2..8.
    """
    if not 1 <= subscribers <= MAX_SUBSCRIBERS:
        raise BadInput(f"--subscribers must be between 1 and {MAX_SUBSCRIBERS}, not {subscribers}")
    names_r = router_names(routers)
    links: list[Link] = []
    uplinks: list[Uplink] = []
    lines: list[Line] = []
    uplink_nets = list(ipaddress.IPv4Network("198.51.100.0/24").subnets(new_prefix=30))
    for i, isp in enumerate(ISPS):
        for j, router in enumerate(names_r):
            net = uplink_nets[len(names_r) * i + j]
            r_addr, i_addr = _p2p(net)
            links.append(Link(router, isp, r_addr, isp, router, i_addr))
            uplinks.append(Uplink(isp, router, isp, r_addr, i_addr.split("/")[0]))
    sub_block = list(ipaddress.IPv4Network("192.0.2.0/24").subnets(new_prefix=30))
    names = tuple(f"sub{k}" for k in range(1, subscribers + 1))
    for k, sub in enumerate(names):
        router = names_r[k % len(names_r)]
        r_addr, s_addr = _p2p(sub_block[k])
        links.append(Link(router, sub, r_addr, sub, "eth0", s_addr))
        host = s_addr.split("/")[0]
        lines.append(
            Line(
                subscriber=sub,
                router=router,
                interface=sub,
                gateway=r_addr,
                prefix=f"{host}/32",
                host_address=host,
                calling_number=f"+3120555{k + 1:04d}",
                circuit_id=f"{router}:{sub}",
            )
        )
    if not re.fullmatch(r"vpop-([a-z0-9]+-)?", prefix):
        raise BadInput(f"namespace prefix must look like 'vpop-' or 'vpop-x-', not {prefix!r}")
    return Topology(names_r, ISPS, names, tuple(links), tuple(lines), tuple(uplinks), prefix)


def node_pattern(prefix: str = NAMESPACE_PREFIX) -> re.Pattern[str]:
    """Matches the namespace names a lab with ``prefix`` creates, and no others."""
    return re.compile(re.escape(prefix) + r"(rc\d+|isp-[a-z]+|sub\d+)")
