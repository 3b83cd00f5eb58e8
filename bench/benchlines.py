"""Extra subscriber lines for benchmarks: veth ports on the lab routers, registered in the db.

Each router gets ``per_router`` ports ``b0``, ``b1``, ... whose peers sit in a sink namespace
``vpop-bsink-<router>`` (not a lab node name: :func:`remove_lines` deletes it, ``lab down``
does not). IPv4 lines fit 96 per router in the documentation ranges, on rc1 and rc2; IPv6
lines any count, on any of the lab's routers (``2001:db8:<n>::/64`` on ``rc<n>``).
"""

from __future__ import annotations

import subprocess

from vpop.catalogue.models import Line, Subscriber
from vpop.core.db import session_scope

ROUTERS = ("rc1", "rc2")
IPV4 = {"rc1": ("203.0.113.", 0), "rc2": ("198.51.100.", 100)}  # first address per router
MAX_IPV4 = 96
_made: list[str] = []  # the routers given ports, for remove_lines


def ipv6_base(router: str) -> str:
    """The IPv6 lines' /64 of lab router ``rc<n>``: ``2001:db8:<n>::``."""
    return f"2001:db8:{int(router.removeprefix('rc')):x}::"


def add_lines(
    per_router: int, *, ipv6: bool = False, routers: tuple[str, ...] = ROUTERS
) -> list[str]:
    """Create the ports and register one subscriber and line per port on each of
    ``routers``; return their ids."""
    if not ipv6 and (per_router > MAX_IPV4 or set(routers) - set(IPV4)):
        raise ValueError(f"at most {MAX_IPV4} IPv4 lines on rc1 and rc2; use ipv6=True")
    _made.extend(routers)
    for router in routers:
        sink = f"vpop-bsink-{router}"
        subprocess.run(["ip", "netns", "add", sink], check=True)
        batch = [f"link add b{i} type veth peer name b{i} netns {sink}" for i in range(per_router)]
        batch += [f"link set b{i} up" for i in range(per_router)]
        for namespace, commands in (
            (f"vpop-{router}", batch),
            (sink, [f"link set b{i} up" for i in range(per_router)]),  # carrier on both ends
        ):
            subprocess.run(
                ["ip", "-n", namespace, "-batch", "-"],
                input="\n".join(commands) + "\n",
                text=True,
                check=True,
            )
    subs: list[str] = []
    with session_scope() as session:
        for router in routers:
            for i in range(per_router):
                sub = f"bench-{router}-{i}"
                session.add(Subscriber(id=sub, name=sub, profile={}))
                session.flush()
                if ipv6:
                    base = ipv6_base(router)
                    prefix, gateway = f"{base}{i + 1:x}/128", f"{base}ffff/64"
                else:
                    base, first = IPV4[router]
                    prefix, gateway = f"{base}{first + i}/32", f"{base}254/24"
                session.add(
                    Line(
                        subscriber_id=sub,
                        router=router,
                        interface=f"b{i}",
                        prefix=prefix,
                        gateway=gateway,
                    )
                )
                subs.append(sub)
    return subs


def remove_lines() -> None:
    """Delete the sink namespaces (and with them every bench port's peer)."""
    for router in dict.fromkeys(_made or ROUTERS):
        subprocess.run(["ip", "netns", "del", f"vpop-bsink-{router}"], capture_output=True)
    _made.clear()
