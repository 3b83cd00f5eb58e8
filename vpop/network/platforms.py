"""The platforms vpop renders for, and each one's features in push order."""

from __future__ import annotations

from collections.abc import Mapping

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
