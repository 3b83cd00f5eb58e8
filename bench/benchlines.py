"""Extra subscriber lines for benchmarks: veth ports on the lab routers, registered in the db.

Each router gets ``per_router`` ports ``b0``, ``b1``, ... whose peers sit in a sink namespace
``vpop-bsink-<router>`` (not a lab node name: :func:`remove_lines` deletes it, ``lab down``
does not). IPv4 lines fit 96 per router in the documentation ranges; IPv6 lines any count.
"""

from __future__ import annotations

import subprocess

from vpop.catalogue.models import Line, Subscriber
from vpop.core.db import session_scope

ROUTERS = ("rc1", "rc2")
IPV4 = {"rc1": ("203.0.113.", 0), "rc2": ("198.51.100.", 100)}  # first address per router
IPV6 = {"rc1": "2001:db8:1::", "rc2": "2001:db8:2::"}
MAX_IPV4 = 96


def add_lines(per_router: int, *, ipv6: bool = False) -> list[str]:
    """Create the ports and register one subscriber and line per port; return their ids."""
    if not ipv6 and per_router > MAX_IPV4:
        raise ValueError(f"at most {MAX_IPV4} IPv4 lines per router; use ipv6=True")
    for router in ROUTERS:
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
        for router in ROUTERS:
            for i in range(per_router):
                sub = f"bench-{router}-{i}"
                session.add(Subscriber(id=sub, name=sub, profile={}))
                session.flush()
                if ipv6:
                    prefix, gateway = f"{IPV6[router]}{i + 1:x}/128", f"{IPV6[router]}ffff/64"
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
    for router in ROUTERS:
        subprocess.run(["ip", "netns", "del", f"vpop-bsink-{router}"], capture_output=True)
