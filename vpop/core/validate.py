"""Untrusted values in, canonical values out, or :class:`~vpop.errors.BadInput`.

Every value that can reach a router (through a template) or the database passes one of
these functions first. Each takes the value and the name of the field it came from, and
either returns the value in its one canonical form or raises ``BadInput`` with a message
that names the field and says what to fix. Nothing is stripped or repaired silently:
``" sub1"`` is refused, not trimmed.

Only ``str`` is accepted where text is expected (never ``int``, ``bytes`` or ``None``), and
only a real ``bool`` where a boolean is expected, because JSON ``1`` or ``"true"`` in a
boolean field is a client bug worth reporting.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import unicodedata
import urllib.parse
from collections.abc import Collection

from vpop.core.errors import BadInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


# ipaddress is pure Python (5-20 us a parse) and every selection run validates, renders and
# checks the same few dozen addresses of its router many times over (a dry run: about 200
# parses): each text is parsed once per process. The objects are immutable; a text that does
# not parse raises every time (errors are not cached).
@functools.lru_cache(maxsize=8192)
def ip_network(text: str, strict: bool = True) -> IPNetwork:
    """``ipaddress.ip_network(text, strict=strict)``, cached."""
    return ipaddress.ip_network(text, strict=strict)


@functools.lru_cache(maxsize=8192)
def ip_interface(text: str) -> IPInterface:
    """``ipaddress.ip_interface(text)``, cached."""
    return ipaddress.ip_interface(text)


@functools.lru_cache(maxsize=8192)
def ip_address(text: str) -> IPAddress:
    """``ipaddress.ip_address(text)``, cached."""
    return ipaddress.ip_address(text)


#: The documentation ranges (RFC 5737, RFC 3849): the only addresses the lab may use.
DOCUMENTATION_NETWORKS: tuple[IPNetwork, ...] = (
    ipaddress.IPv4Network("192.0.2.0/24"),
    ipaddress.IPv4Network("198.51.100.0/24"),
    ipaddress.IPv4Network("203.0.113.0/24"),
    ipaddress.IPv6Network("2001:db8::/32"),
)

NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,30}", re.ASCII)
_INTERFACE = re.compile(r"[A-Za-z][A-Za-z0-9./:-]{0,31}", re.ASCII)
E164 = re.compile(r"\+[1-9][0-9]{6,14}", re.ASCII)
LINE_ID = re.compile(r"[A-Za-z0-9._:/-]{1,100}", re.ASCII)
# Lexical shape first, ipaddress second: ipaddress accepts netmask forms
# ("/255.255.255.0"), zone ids ("%eth0") and surrounding whitespace in places.
_ADDRESS_SHAPE = re.compile(r"[0-9A-Fa-f:.]{2,45}", re.ASCII)
_PREFIX_SHAPE = re.compile(r"[0-9A-Fa-f:.]{2,45}/(?:0|[1-9][0-9]{0,2})", re.ASCII)
URL_MAX = 500
_URL_SCHEMES = ("http", "https")


def _show(value: object) -> str:
    """A short, escaped rendering of a rejected value for an error message."""
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _require_str(value: object, field: str, what: str) -> str:
    if not isinstance(value, str):
        raise BadInput(f"{field}: expected {what} as a string, got {type(value).__name__}")
    return str(value)


def _matching(value: object, field: str, what: str, shape: re.Pattern[str], refusal: str) -> str:
    """``value`` as a string of ``shape`` (all of it), else BadInput saying ``refusal``.

    Args:
        value: the untrusted value.
        field: the field name, for the error message.
        what: what a string was expected to hold (``an id``), for a value of another type.
        shape: the pattern the whole string must match.
        refusal: the rest of the message after the value: what it is not and what to write.
    """
    text = _require_str(value, field, what)
    if not shape.fullmatch(text):
        raise BadInput(f"{field}: {_show(value)} is not {refusal}")
    return text


def name(value: object, field: str) -> str:
    """Validate an id such as an ISP id, a subscriber id or a router name.

    Args:
        value: the untrusted value.
        field: the field name, for the error message.

    Returns:
        The id, unchanged: 1 to 31 of ``a-z``, ``0-9`` and ``-``, not starting with ``-``.

    Raises:
        BadInput: when the value is not such a string.
    """
    return _matching(
        value,
        field,
        "an id",
        NAME,
        "a valid id; use 1-31 characters of a-z, 0-9 and '-', starting with a letter or digit",
    )


def interface(value: object, field: str) -> str:
    """Validate an interface name (Linux ``sub1``, IOS ``Gi0/0/1.100``, Junos ``ge-0/0/1.0``).

    Args:
        value: the untrusted value.
        field: the field name, for the error message.

    Returns:
        The name, unchanged.

    Raises:
        BadInput: unless it is a letter followed by up to 31 of ``A-Za-z0-9./:-``.
    """
    return _matching(
        value,
        field,
        "an interface name",
        _INTERFACE,
        "a valid interface name; use a letter followed "
        "by up to 31 of A-Z, a-z, 0-9, '.', '/', ':' and '-'",
    )


def _check_documentation(
    value: IPAddress | IPNetwork, field: str, documentation_only: bool
) -> None:
    if not documentation_only:
        return
    first, last = (
        (int(value.network_address), int(value.broadcast_address))
        if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network)
        else (int(value), int(value))
    )
    for doc in DOCUMENTATION_NETWORKS:
        if value.version == doc.version and (
            int(doc.network_address) <= first and last <= int(doc.broadcast_address)
        ):
            return
    ranges = ", ".join(str(d) for d in DOCUMENTATION_NETWORKS)
    raise BadInput(f"{field}: {value} is outside the documentation ranges ({ranges})")


def prefix(
    value: object,
    field: str,
    *,
    host_bits_ok: bool = False,
    documentation_only: bool = False,
) -> str:
    """Validate an IPv4 or IPv6 prefix in CIDR notation (``192.0.2.0/24``, ``2001:db8::/48``).

    Args:
        value: the untrusted value.
        field: the field name, for the error message.
        host_bits_ok: accept host bits (``192.0.2.1/24``) and return the network they are in.
        documentation_only: refuse anything outside 192.0.2.0/24, 198.51.100.0/24,
            203.0.113.0/24 and 2001:db8::/32.

    Returns:
        The canonical network: ``str(ipaddress.ip_network(...))``, IPv6 compressed and
        lower case.

    Raises:
        BadInput: for non-strings, a missing or non-decimal prefix length, netmask forms,
            zone ids, whitespace, leading zeros, host bits (unless allowed), or an address
            outside the documentation ranges (when required).
    """
    text = _matching(
        value,
        field,
        "a prefix",
        _PREFIX_SHAPE,
        "a prefix; write an address and a prefix length, "
        "as in 192.0.2.0/24 or 2001:db8::/48 (no netmask, zone id or spaces)",
    )
    try:
        network = ip_network(text, not host_bits_ok)
    except ValueError as err:
        raise BadInput(f"{field}: {_show(value)} is not a valid prefix: {err}") from err
    _check_documentation(network, field, documentation_only)
    return str(network)


def interface_address(value: object, field: str, *, documentation_only: bool = False) -> str:
    """Validate a router's address on a link with its prefix length (``198.51.100.1/30``).

    Args:
        value: the untrusted value.
        field: the field name, for the error message.
        documentation_only: refuse addresses outside the documentation ranges.

    Returns:
        The canonical interface form: ``ipaddress.ip_interface(...).with_prefixlen``.

    Raises:
        BadInput: for anything but ``address/length``, and for an IPv4 network or broadcast
            address (prefix lengths up to /30), which no interface can own.
    """
    text = _matching(
        value,
        field,
        "an interface address",
        _PREFIX_SHAPE,
        "an interface address; write an address and a prefix length, as in 198.51.100.1/30",
    )
    try:
        iface = ip_interface(text)
    except ValueError as err:
        raise BadInput(f"{field}: {_show(value)} is not a valid interface address: {err}") from err
    net = iface.network
    if (
        iface.version == 4
        and net.prefixlen <= 30
        and iface.ip in (net.network_address, net.broadcast_address)
    ):
        raise BadInput(
            f"{field}: {text} is the network or broadcast address of {net}; "
            "use one of its host addresses"
        )
    _check_documentation(iface.ip, field, documentation_only)
    return iface.with_prefixlen


def address(value: object, field: str, *, documentation_only: bool = False) -> str:
    """Validate a single IPv4 or IPv6 address (``198.51.100.2``, ``2001:db8::2``).

    Args:
        value: the untrusted value.
        field: the field name, for the error message.
        documentation_only: refuse addresses outside the documentation ranges.

    Returns:
        The canonical address: ``str(ipaddress.ip_address(...))``.

    Raises:
        BadInput: for non-strings, prefixes, zone ids, whitespace or leading zeros.
    """
    text = _matching(
        value,
        field,
        "an address",
        _ADDRESS_SHAPE,
        "an IP address; write one address, as in "
        "198.51.100.2 or 2001:db8::2 (no prefix length, zone id or spaces)",
    )
    try:
        addr = ip_address(text)
    except ValueError as err:
        raise BadInput(f"{field}: {_show(value)} is not a valid IP address: {err}") from err
    _check_documentation(addr, field, documentation_only)
    return str(addr)


def e164(value: object, field: str) -> str:
    """Validate a calling number in E.164 form (``+31205550001``).

    Args:
        value: the untrusted value.
        field: the field name, for the error message.

    Returns:
        The number, unchanged.

    Raises:
        BadInput: unless it is ``+``, a non-zero digit, then 6 to 14 digits.
    """
    return _matching(
        value,
        field,
        "an E.164 number",
        E164,
        "an E.164 number; write '+', the country code "
        "and the number, digits only (7 to 15 digits in all), as in +31205550001",
    )


def _line_id(value: object, field: str, what: str) -> str:
    return _matching(
        value,
        field,
        what,
        LINE_ID,
        f"a valid {what}; use 1-100 of A-Z, a-z, 0-9, '.', '_', ':', '/' and '-'",
    )


def circuit_id(value: object, field: str) -> str:
    """Validate a circuit id / remote id (DHCP option 82), e.g. ``rc1:sub1``.

    Args:
        value: the untrusted value.
        field: the field name, for the error message.

    Returns:
        The id, unchanged.

    Raises:
        BadInput: unless it is 1 to 100 of ``A-Za-z0-9._:/-``.
    """
    return _line_id(value, field, "circuit id")


def access_id(value: object, field: str) -> str:
    """Validate an access id (the wholesale operator's line reference).

    Args:
        value: the untrusted value.
        field: the field name, for the error message.

    Returns:
        The id, unchanged.

    Raises:
        BadInput: unless it is 1 to 100 of ``A-Za-z0-9._:/-``.
    """
    return _line_id(value, field, "access id")


def _bad_character(char: str) -> bool:
    category = unicodedata.category(char)
    # C*: controls, format (bidi overrides, zero-width), surrogates, private use, unassigned.
    # Z* except U+0020: line/paragraph separators and exotic spaces that render as gaps.
    return category.startswith("C") or (category.startswith("Z") and char != " ")


def text(value: object, field: str, max_len: int) -> str:
    """Validate free text such as a description: one line of printable characters.

    Args:
        value: the untrusted value.
        field: the field name, for the error message.
        max_len: the largest number of characters allowed.

    Returns:
        The text, unchanged.

    Raises:
        BadInput: when empty, longer than ``max_len``, starting or ending with a space, or
            containing any control, format, surrogate, private-use or unassigned character,
            a line or paragraph separator, or a space other than U+0020.
    """
    text_ = _require_str(value, field, "text")
    if not text_:
        raise BadInput(f"{field}: must not be empty")
    if len(text_) > max_len:
        raise BadInput(f"{field}: is {len(text_)} characters long; the limit is {max_len}")
    for index, char in enumerate(text_):
        if _bad_character(char):
            raise BadInput(
                f"{field}: character {index + 1} (U+{ord(char):04X}, "
                f"{unicodedata.name(char, 'unnamed')}) is not allowed; use printable "
                "characters and plain spaces on one line"
            )
    if text_ != text_.strip(" "):
        raise BadInput(f"{field}: remove the spaces at the start or end")
    return text_


def url(value: object, field: str) -> str:
    """Validate a callback URL: absolute ``http``/``https``, printable ASCII, no credentials.

    Args:
        value: the untrusted value.
        field: the field name, for the error message.

    Returns:
        The URL with its scheme in lower case; otherwise unchanged.

    Raises:
        BadInput: for other schemes, a missing host, user info, a bad port, whitespace,
            control or non-ASCII characters, backslashes, or more than 500 characters.
    """
    text_ = _require_str(value, field, "a URL")
    if len(text_) > URL_MAX:
        raise BadInput(f"{field}: is {len(text_)} characters long; the limit is {URL_MAX}")
    for index, char in enumerate(text_):
        if not "!" <= char <= "~" or char == "\\":
            raise BadInput(
                f"{field}: character {index + 1} ({_show(char)}) is not allowed in a URL; "
                "percent-encode it"
            )
    try:
        parts = urllib.parse.urlsplit(text_)
        port = parts.port
    except ValueError as err:
        raise BadInput(f"{field}: {_show(value)} is not a valid URL: {err}") from err
    scheme = parts.scheme.lower()
    if scheme not in _URL_SCHEMES:
        raise BadInput(f"{field}: {_show(value)} must start with http:// or https://")
    if not parts.hostname:
        raise BadInput(f"{field}: {_show(value)} has no host")
    if parts.username is not None or parts.password is not None:
        raise BadInput(f"{field}: remove the user name and password from the URL")
    if port == 0:
        raise BadInput(f"{field}: port 0 is not a valid port")
    return scheme + text_[len(parts.scheme) :]


def boolean(value: object, field: str) -> bool:
    """Validate a boolean: only a real ``True`` or ``False`` (JSON ``true``/``false``).

    Args:
        value: the untrusted value.
        field: the field name, for the error message.

    Returns:
        The boolean.

    Raises:
        BadInput: for anything else, including ``0``, ``1``, ``"true"`` and ``None``.
    """
    if not isinstance(value, bool):
        raise BadInput(f"{field}: expected true or false, got {_show(value)}")
    return value


def one_of(value: object, field: str, choices: Collection[str]) -> str:
    """Validate a value from a fixed set, such as a platform name.

    Args:
        value: the untrusted value.
        field: the field name, for the error message.
        choices: the accepted values.

    Returns:
        The value, unchanged.

    Raises:
        BadInput: when the value is not one of ``choices``.
    """
    if not isinstance(value, str) or value not in choices:
        raise BadInput(f"{field}: {_show(value)} is not one of: {', '.join(sorted(choices))}")
    return str(value)
