"""Rendering a lease's shaping per platform (tc on FRR/Linux, a policer on IOS and Junos): the
lease's numbers are validated and bounded (peak rate, burst) first, and the rendered text is held
against the template's expected structure before it can be pushed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jinja2

from vpop.core import validate
from vpop.core.errors import BadInput
from vpop.network.filters import junos_ifd, junos_number, junos_unit
from vpop.network.intent import checked_mapping
from vpop.network.structure import Placeholders, compare_structure
from vpop.network.templates import ENVIRONMENTS_LOCK, TEMPLATE_ROOT, new_environment

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


def lease_environment() -> jinja2.Environment:
    """The one Jinja2 environment of ``templates/lease``, built on first use.

    Returns:
        The cached environment, configured as :func:`environment`'s.
    """
    global _lease_environment
    with ENVIRONMENTS_LOCK:
        if _lease_environment is None:
            env = new_environment(LEASE_TEMPLATE_ROOT)
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
    checked = checked_mapping(lease, "lease", _LEASE_KEYS)
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
    expected = template.render(Placeholders().variables(variables))
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
