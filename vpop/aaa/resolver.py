"""One identity resolver: which line is asking, from whatever the network (or a caller) says.

RADIUS, the API and the portal all call :func:`resolve`. Identifiers are normalised to one
canonical form each (:class:`Identifiers`), then looked up in this order of precedence,
strongest first:

1. ``circuit_id`` - DHCP option 82 / RFC 4679 Agent-Circuit-Id, set by the access node;
2. ``remote_id`` - option 82 / RFC 4679 Agent-Remote-Id;
3. ``nas_port_id`` - the NAS's port (only lines bound to that NAS or to none);
4. ``calling_number`` - Calling-Station-Id, normalised to E.164;
5. ``user_name`` - User-Name with its realm (``user@realm``);
6. ``access_id`` - the wholesale operator's line reference (API, portal);
7. ``source_address`` - an address inside the line's prefix (the longest prefix wins).

An identifier that matches no line is ignored (a NAS sends a User-Name for every request,
not only for lines that have one). Every identifier that matches must match the same line:
two that name different lines raise :class:`~vpop.aaa.errors.IdentityConflict` with both
values, which the caller rejects and audits. Precedence decides which identifier is
reported as the one that found the line.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from vpop.aaa.errors import IdentityConflict, UnknownLine
from vpop.catalogue.service import Line
from vpop.core import validate
from vpop.core.errors import BadInput

log = logging.getLogger(__name__)

#: The order of precedence, strongest first (the module docstring says why).
PRECEDENCE = (
    "circuit_id",
    "remote_id",
    "nas_port_id",
    "calling_number",
    "user_name",
    "access_id",
    "source_address",
)

_SEPARATORS = re.compile(r"[ \-.()/]")
_MAC = re.compile(
    r"[0-9A-Fa-f]{2}([-:][0-9A-Fa-f]{2}){5}|[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}",
    re.ASCII,
)
_HEX_OCTETS = re.compile(r"0x(?:[0-9A-Fa-f]{2})+", re.ASCII)
_USER_NAME = re.compile(r"[!-~]{1,100}", re.ASCII)
_NAS_PORT_MAX = 100


def calling_number(value: object, field: str = "calling_number") -> str:
    """Normalise a calling number as NASes send it to E.164.

    Accepted forms (``+31205550003`` in each case): ``+31205550003``, ``tel:+31205550003``,
    ``0031205550003`` (the international prefix ``00``), ``31205550003`` (digits starting
    with the country code), and any of these with spaces, ``-``, ``.``, ``/`` or brackets
    between digits. A national number (one leading ``0``) has no country code and is
    refused, as is a MAC address (what Wi-Fi and DHCP NASes put in Calling-Station-Id).
    The result is a fixed point: normalising it again returns it unchanged.

    Args:
        value: the untrusted value.
        field: the field name, for the error message.

    Returns:
        The number in E.164 form (``+`` and 7 to 15 digits).

    Raises:
        BadInput: for anything else.
    """
    if not isinstance(value, str):
        raise BadInput(f"{field}: expected a calling number as a string")
    if _MAC.fullmatch(value):
        raise BadInput(f"{field}: {value!r} is a MAC address, not a telephone number")
    number = value.removeprefix("tel:")
    number = _SEPARATORS.sub("", number)
    if number.startswith("00"):
        number = "+" + number[2:]
    elif number[:1].isdigit() and number[:1] != "0":
        number = "+" + number
    elif number.startswith("0"):
        raise BadInput(
            f"{field}: {value!r} is a national number; send it with its country code "
            "(+31205550003 or 0031205550003)"
        )
    return validate.e164(number, field)


def decode_octets(value: str) -> str:
    """An octets attribute as rlm_rest hands it over (``0x`` and hex) as text.

    A value not in that form is returned unchanged (some dictionaries declare the RFC 4679
    attributes as strings).

    Raises:
        BadInput: when the octets are not ASCII text.
    """
    if not _HEX_OCTETS.fullmatch(value):
        return value
    raw = bytes.fromhex(value[2:])
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError as err:
        raise BadInput(f"octets {value[:40]!r} are not ASCII text") from err


def user_name(value: object, field: str = "user_name") -> str:
    """Normalise a User-Name: printable ASCII without spaces, the realm in lower case.

    ``Sub3@ISP-C.Example`` becomes ``Sub3@isp-c.example``: the user part is kept as sent
    (it may be case-sensitive), the realm is a domain name.

    Raises:
        BadInput: for spaces, control or non-ASCII characters, or more than 100 characters.
    """
    if not isinstance(value, str) or not _USER_NAME.fullmatch(value):
        raise BadInput(f"{field}: expected 1-100 printable ASCII characters without spaces")
    user, at, realm = value.rpartition("@")
    return f"{user}@{realm.lower()}" if at else value


def realm_of(name: str | None) -> str | None:
    """The realm of a normalised user name (after its last ``@``), or None."""
    if name is None or "@" not in name:
        return None
    return name.rpartition("@")[2] or None


def nas_port_id(value: object, field: str = "nas_port_id") -> str:
    """Validate a NAS-Port-Id: one line of printable text, at most 100 characters."""
    return validate.text(value, field, _NAS_PORT_MAX)


@dataclass(frozen=True)
class Identifiers:
    """What a request says about the line, each value canonical (or None).

    Build it with :meth:`of` (validates and normalises) or :func:`from_radius`.
    """

    circuit_id: str | None = None
    remote_id: str | None = None
    nas_port_id: str | None = None
    calling_number: str | None = None
    user_name: str | None = None
    access_id: str | None = None
    source_address: str | None = None

    @classmethod
    def of(cls, **values: str | None) -> Identifiers:
        """Validate and normalise each given identifier.

        Raises:
            BadInput: for an unknown identifier name or a malformed value.
        """
        unknown = set(values) - set(PRECEDENCE)
        if unknown:
            raise BadInput(f"unknown identifiers: {', '.join(sorted(unknown))}")
        normalised: dict[str, str | None] = {}
        for key, value in values.items():
            normalised[key] = None if value is None else _NORMALISERS[key](value, key)
        return cls(**normalised)

    def given(self) -> list[tuple[str, str]]:
        """``(kind, value)`` of each identifier present, in order of precedence."""
        return [(key, value) for key in PRECEDENCE if (value := getattr(self, key)) is not None]

    def as_dict(self) -> dict[str, Any]:
        """The identifiers present, as JSON (for decisions and the audit log)."""
        return {key: value for key, value in asdict(self).items() if value is not None}


_NORMALISERS = {
    "circuit_id": validate.circuit_id,
    "remote_id": validate.circuit_id,
    "nas_port_id": nas_port_id,
    "calling_number": calling_number,
    "user_name": user_name,
    "access_id": validate.access_id,
    "source_address": validate.address,
}

#: RADIUS attribute -> identifier (the RFC 4679 ones are octets, hex-decoded first).
RADIUS_ATTRIBUTES = {
    "ADSL-Agent-Circuit-Id": "circuit_id",
    "ADSL-Agent-Remote-Id": "remote_id",
    "NAS-Port-Id": "nas_port_id",
    "Calling-Station-Id": "calling_number",
    "User-Name": "user_name",
    "Framed-IP-Address": "source_address",
}
_OCTETS = frozenset({"ADSL-Agent-Circuit-Id", "ADSL-Agent-Remote-Id"})


def from_radius(attributes: dict[str, list[str]]) -> tuple[Identifiers, dict[str, str]]:
    """The identifiers of an Access-Request, and those that could not be used.

    A value that does not normalise (a MAC address in Calling-Station-Id, a circuit id
    with spaces) is left out rather than refusing the request: another identifier may
    still name the line. Only the first value of each attribute is read.

    Args:
        attributes: rlm_rest's request, attribute name -> values.

    Returns:
        The identifiers, and ``identifier -> why it was left out``.
    """
    values: dict[str, str | None] = {}
    unusable: dict[str, str] = {}
    for attribute, key in RADIUS_ATTRIBUTES.items():
        present = attributes.get(attribute)
        if not present:
            continue
        raw = present[0]
        try:
            text = decode_octets(raw) if attribute in _OCTETS else raw
            values[key] = _NORMALISERS[key](text, attribute)
        except BadInput as err:
            unusable[key] = err.message
    return Identifiers(**values), unusable


def _matches(session: Session, kind: str, value: str, nas: str | None) -> list[int]:
    """Ids of the lines ``kind == value`` names (more than one only for a NAS port)."""
    if kind == "source_address":
        return _containing(session, value)
    column = getattr(Line, kind)
    stmt = select(Line.id).where(column == value)
    if kind == "nas_port_id":
        stmt = stmt.where(or_(Line.nas.is_(None), Line.nas == nas) if nas else Line.nas.is_(None))
    return list(session.scalars(stmt.order_by(Line.id)))


def _containing(session: Session, address: str) -> list[int]:
    """The line whose prefix holds ``address`` (longest prefix; a scan, fine for thousands)."""
    addr = ipaddress.ip_address(address)
    best: tuple[int, int] | None = None
    for line_id, prefix in session.execute(select(Line.id, Line.prefix)):
        try:
            network = ipaddress.ip_network(prefix, strict=False)
        except ValueError:
            continue
        inside = addr.version == network.version and addr in network
        if inside and (best is None or network.prefixlen > best[0]):
            best = (network.prefixlen, line_id)
    return [] if best is None else [best[1]]


def resolve(session: Session, identifiers: Identifiers, *, nas: str | None = None) -> Line:
    """The line the identifiers name.

    Args:
        session: an open session (read only).
        identifiers: canonical identifiers (:meth:`Identifiers.of`, :func:`from_radius`).
        nas: the asking NAS, for NAS-Port-Id (a port is only unique on one NAS).

    Returns:
        The line every matching identifier names.

    Raises:
        UnknownLine: no identifier names a line (or none was given).
        IdentityConflict: two identifiers name different lines (logged here; the caller
            audits it, in a transaction that commits).
    """
    return resolve_by(session, identifiers, nas=nas)[0]


def resolve_by(
    session: Session, identifiers: Identifiers, *, nas: str | None = None
) -> tuple[Line, str]:
    """:func:`resolve`, and the kind of identifier that found the line (by precedence).

    Raises:
        UnknownLine: as :func:`resolve`.
        IdentityConflict: as :func:`resolve`.
    """
    found: tuple[str, str, int] | None = None
    for kind, value in identifiers.given():
        for line_id in _matches(session, kind, value, nas):
            if found is None:
                found = (kind, value, line_id)
            elif line_id != found[2]:
                conflict = IdentityConflict(found, (kind, value, line_id))
                log.warning("%s", conflict.message)
                raise conflict
    if found is None:
        given = ", ".join(f"{kind} {value!r}" for kind, value in identifiers.given())
        raise UnknownLine(f"no line matches {given or 'the request (no identifier given)'}")
    line = session.get(Line, found[2])
    assert line is not None
    return line, found[0]


__all__ = [
    "PRECEDENCE",
    "RADIUS_ATTRIBUTES",
    "Identifiers",
    "calling_number",
    "decode_octets",
    "from_radius",
    "nas_port_id",
    "realm_of",
    "resolve",
    "resolve_by",
    "user_name",
]
