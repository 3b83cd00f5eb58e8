"""Replies in rlm_rest's JSON shape: the ISP's routing instance in the NAS family's attribute.

Every value goes out as ``{"op": ..., "value": ..., "do_xlat": false}``, so FreeRADIUS never
expands a ``%{...}`` in it, and passes :func:`vpop.core.validate.text` first (one printable
line, at most 253 characters: a RADIUS attribute's limit).

=========== ========================================================================
family      the ISP's routing instance (``vpop-<isp>``, the lab's VRF name) travels in
=========== ========================================================================
accel-ppp   ``Accel-VRF-Name``
cisco       ``Cisco-AVPair`` ``ip:vrf-id=vpop-<isp>`` and ``ip:ip-unnumbered=Loopback0``
            (op ``+=``: two instances of one attribute)
juniper     ``ERX-Virtual-Router-Name``
generic     ``Filter-Id``
=========== ========================================================================

Every Access-Accept also carries ``Class`` (``<decision id>;isp=<isp>``: the NAS echoes it in
accounting) and ``Acct-Interim-Interval`` (``VPOP_RADIUS_INTERIM_SECONDS``). A reject
carries ``Reply-Message`` with the reason.
"""

from __future__ import annotations

from typing import Any

from vpop.core import validate

FAMILIES = ("accel-ppp", "cisco", "juniper", "generic")
#: Kept equal to vpop.selection.intent.INSTANCE_PREFIX by a test (a protected module).
INSTANCE_PREFIX = "vpop-"
#: The interface a Cisco subscriber session borrows its address from (the guide needs one).
CISCO_UNNUMBERED = "Loopback0"
_VALUE_MAX = 253


def instance_name(isp: str) -> str:
    """The routing instance (VRF) of ``isp`` on the routers: ``vpop-<isp>``."""
    return INSTANCE_PREFIX + validate.name(isp, "isp")


def _value(value: str, attribute: str) -> str:
    return validate.text(value, attribute, _VALUE_MAX)


def pair(attribute: str, value: str | list[str], *, op: str = ":=") -> dict[str, Any]:
    """One attribute in rlm_rest's shape, never expanded by FreeRADIUS.

    Raises:
        BadInput: a value that is not one printable line of at most 253 characters.
    """
    checked: str | list[str] = (
        [_value(v, attribute) for v in value]
        if isinstance(value, list)
        else _value(value, attribute)
    )
    return {"op": op, "value": checked, "do_xlat": False}


def class_value(decision_id: str, isp: str) -> str:
    """What ``Class`` carries: the decision id, then the ISP for people reading captures."""
    return f"{decision_id};isp={isp}"


def decision_id_of(class_: str) -> str:
    """The decision id in a ``Class`` value (as :func:`class_value` wrote it), or ``""``."""
    decision = class_.split(";", 1)[0]
    return decision if decision.startswith("vpop-") and len(decision) <= 40 else ""


def isp_attributes(family: str, isp: str) -> dict[str, Any]:
    """The attributes that bind a session to ``isp`` on a NAS of ``family``.

    Args:
        family: the NAS's family (:data:`FAMILIES`); an unknown one gets ``generic``.
        isp: the ISP chosen.
    """
    instance = instance_name(isp)
    if family == "accel-ppp":
        return {"reply:Accel-VRF-Name": pair("Accel-VRF-Name", instance)}
    if family == "cisco":
        return {
            "reply:Cisco-AVPair": pair(
                "Cisco-AVPair",
                [f"ip:vrf-id={instance}", f"ip:ip-unnumbered={CISCO_UNNUMBERED}"],
                op="+=",
            )
        }
    if family == "juniper":
        return {"reply:ERX-Virtual-Router-Name": pair("ERX-Virtual-Router-Name", instance)}
    return {"reply:Filter-Id": pair("Filter-Id", instance)}


def accept(family: str, isp: str, decision_id: str, interim_seconds: int) -> dict[str, Any]:
    """The body of an Access-Accept: the ISP's attributes, ``Class``, the interim interval,
    and ``control:Auth-Type := Accept`` (vpop has authenticated the request)."""
    return {
        **isp_attributes(family, isp),
        "reply:Class": pair("Class", class_value(decision_id, isp)),
        "reply:Acct-Interim-Interval": pair("Acct-Interim-Interval", str(interim_seconds)),
        "control:Auth-Type": pair("Auth-Type", "Accept"),
    }


def reject(reason: str) -> dict[str, Any]:
    """The body of an Access-Reject: ``Reply-Message`` says why (one line, truncated)."""
    message = " ".join(reason.split())[:_VALUE_MAX] or "rejected"
    return {"reply:Reply-Message": pair("Reply-Message", message)}
