"""vpop.validate: canonical values in, BadInput (naming the field) for everything else."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from vpop.core import validate
from vpop.core.errors import BadInput

Check = Callable[[object, str], object]


def refuses(check: Check, value: object, field: str = "the_field") -> BadInput:
    with pytest.raises(BadInput) as caught:
        check(value, field)
    assert field in caught.value.message, caught.value.message
    return caught.value


# Values no text-like validator may accept, whatever its pattern.
HOSTILE: dict[str, object] = {
    "none": None,
    "int": 3232235520,
    "float": 1.5,
    "bool": True,
    "bytes": b"sub1",
    "list": ["sub1"],
    "dict": {"v": "sub1"},
    "empty": "",
    "newline": "sub1\n",
    "newline-inside": "sub1\nexit",
    "cr": "sub1\r",
    "crlf": "sub1\r\n",
    "nul": "sub1\x00",
    "tab": "sub1\t",
    "u2028": "sub1\u2028",
    "u2029": "sub1\u2029",
    "nbsp": "sub1\u00a0",
    "leading-space": " sub1",
    "trailing-space": "sub1 ",
    "semicolon": "sub1;",
    "quote": 'sub1"',
    "zone-id": "fe80::1%eth0",
    "percent-newline": "%eth0\n",
    "fullwidth-digit": "sub\uff11",
    "bidi-override": "sub1\u202e",
    "zero-width": "sub\u200b1",
}
TEXTUAL: dict[str, Check] = {
    "name": validate.name,
    "interface": validate.interface,
    "prefix": validate.prefix,
    "interface_address": validate.interface_address,
    "address": validate.address,
    "e164": validate.e164,
    "circuit_id": validate.circuit_id,
    "access_id": validate.access_id,
    "url": validate.url,
}


@pytest.mark.parametrize("value", list(HOSTILE.values()), ids=list(HOSTILE))
@pytest.mark.parametrize("check", list(TEXTUAL.values()), ids=list(TEXTUAL))
def test_hostile_values_are_refused_everywhere(check: Check, value: object) -> None:
    refuses(check, value)


# ---- name ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["isp-a", "sub1", "a", "0", "9x", "a" * 31, "isp-b-2"],
    ids=["isp-a", "sub1", "one-letter", "one-digit", "digit-first", "31-chars", "dashes"],
)
def test_name_accepts(value: str) -> None:
    assert validate.name(value, "isp") == value


@pytest.mark.parametrize(
    "value",
    ["-isp", "ISP-A", "isp_a", "isp.a", "a" * 32, "ïsp", "isp a", "isp/a"],
    ids=[
        "leading-dash",
        "upper-case",
        "underscore",
        "dot",
        "32-chars",
        "non-ascii",
        "space",
        "slash",
    ],
)
def test_name_refuses(value: str) -> None:
    error = refuses(validate.name, value, "isp")
    assert "a-z" in error.message


# ---- interface ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["sub1", "eth0.100", "GigabitEthernet0/0/1.100", "ge-0/0/1.0", "xe-0/0/0:1", "a" * 32],
    ids=["linux", "vlan", "ios", "junos", "junos-channel", "32-chars"],
)
def test_interface_accepts(value: str) -> None:
    assert validate.interface(value, "interface") == value


@pytest.mark.parametrize(
    "value",
    ["0eth", "-eth", "eth 0", "eth0_1", "a" * 33, "eth0@1", "eth0#", "ëth0", "/eth0"],
    ids=[
        "digit-first",
        "dash-first",
        "space",
        "underscore",
        "33-chars",
        "at",
        "hash",
        "non-ascii",
        "slash-first",
    ],
)
def test_interface_refuses(value: str) -> None:
    refuses(validate.interface, value, "interface")


# ---- prefix -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ("192.0.2.0/24", "192.0.2.0/24"),
        ("192.0.2.2/32", "192.0.2.2/32"),
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("2001:db8::/32", "2001:db8::/32"),
        ("2001:DB8:0:0::/48", "2001:db8::/48"),
        ("2001:0db8:0001::/48", "2001:db8:1::/48"),
        ("::/0", "::/0"),
        ("10.0.0.0/8", "10.0.0.0/8"),
    ],
    ids=[
        "v4",
        "v4-host",
        "v4-default",
        "v6",
        "v6-upper-uncompressed",
        "v6-leading-zeros",
        "v6-default",
        "private-allowed",
    ],
)
def test_prefix_returns_the_canonical_network(value: str, canonical: str) -> None:
    assert validate.prefix(value, "prefix") == canonical


@pytest.mark.parametrize(
    "value",
    [
        3232235520,
        "192.0.2.0",
        "192.0.2.0/255.255.255.0",
        "192.0.2.1/24",
        "192.0.2.01/32",
        "192.0.2.0/024",
        "192.0.2.0/33",
        "2001:db8::/129",
        "fe80::%eth0/64",
        "fe80::/64%eth0",
        "%eth0\n",
        "192.0.2.0/24\n",
        "\n192.0.2.0/24",
        " 192.0.2.0/24",
        "192.0.2.0 /24",
        "192.0.2.0/24 ",
        "192.0.2/24",
        "1.2.3.4.5/32",
        "256.0.0.0/8",
        "0x7f.0.0.1/32",
        "192.0.2.0/-1",
        "192.0.2.0/+24",
        "192.0.2.0-192.0.2.3",
        "2001:db8::1/64",
        "2001:db8:::/48",
        "::ffff:192.0.2.0/120x",
        "192.0.2.0/\u0662\u0664",
        "",
    ],
    ids=[
        "int",
        "no-length",
        "netmask-form",
        "host-bits",
        "leading-zero-octet",
        "leading-zero-length",
        "length-too-long-v4",
        "length-too-long-v6",
        "zone-id",
        "zone-after-length",
        "percent-newline",
        "trailing-newline",
        "leading-newline",
        "leading-space",
        "space-before-slash",
        "trailing-space",
        "three-octets",
        "five-octets",
        "octet-256",
        "hex-octet",
        "negative-length",
        "plus-length",
        "range",
        "v6-host-bits",
        "triple-colon",
        "junk-after",
        "arabic-digits-length",
        "empty",
    ],
)
def test_prefix_refuses(value: object) -> None:
    refuses(validate.prefix, value, "prefix")


def test_prefix_host_bits_ok_returns_the_network() -> None:
    assert validate.prefix("192.0.2.1/24", "p", host_bits_ok=True) == "192.0.2.0/24"
    assert validate.prefix("2001:db8::1/64", "p", host_bits_ok=True) == "2001:db8::/64"


def test_prefix_host_bits_message_says_what_to_fix() -> None:
    error = refuses(validate.prefix, "192.0.2.1/24", "lines[0].prefix")
    assert "host bits" in error.message


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("192.0.2.0/24", True),
        ("198.51.100.128/25", True),
        ("203.0.113.7/32", True),
        ("2001:db8:5::/48", True),
        ("2001:db8::/32", True),
        ("192.0.2.0/23", False),
        ("10.0.0.0/8", False),
        ("2001:db8::/31", False),
        ("2001:db9::/48", False),
        ("0.0.0.0/0", False),
        ("::ffff:c000:200/120", False),
    ],
    ids=[
        "test-net-1",
        "test-net-2",
        "test-net-3",
        "v6-doc",
        "v6-doc-whole",
        "v4-too-wide",
        "private",
        "v6-too-wide",
        "v6-outside",
        "default",
        "v4-mapped",
    ],
)
def test_prefix_documentation_only(value: str, ok: bool) -> None:
    assert validate.prefix(value, "p") == value  # accepted without the option
    if ok:
        assert validate.prefix(value, "p", documentation_only=True) == value
    else:
        error = refuses(lambda v, f: validate.prefix(v, f, documentation_only=True), value, "p")
        assert "documentation" in error.message


# ---- interface_address and address --------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ("198.51.100.1/30", "198.51.100.1/30"),
        ("192.0.2.0/31", "192.0.2.0/31"),
        ("192.0.2.7/32", "192.0.2.7/32"),
        ("2001:DB8::1/64", "2001:db8::1/64"),
        ("2001:db8::/127", "2001:db8::/127"),
    ],
    ids=["v4-p2p", "v4-slash31", "v4-host", "v6-upper", "v6-slash127"],
)
def test_interface_address_accepts(value: str, canonical: str) -> None:
    assert validate.interface_address(value, "address") == canonical


@pytest.mark.parametrize(
    "value",
    [
        "198.51.100.1",
        "198.51.100.0/30",
        "198.51.100.3/30",
        "198.51.100.1/255.255.255.252",
        "198.51.100.01/30",
        "fe80::1%eth0/64",
        "198.51.100.1/30\n",
        3325256705,
    ],
    ids=[
        "no-length",
        "network-address",
        "broadcast-address",
        "netmask-form",
        "leading-zero",
        "zone-id",
        "newline",
        "int",
    ],
)
def test_interface_address_refuses(value: object) -> None:
    refuses(validate.interface_address, value, "address")


def test_interface_address_documentation_only() -> None:
    ok = validate.interface_address("198.51.100.1/30", "a", documentation_only=True)
    assert ok == "198.51.100.1/30"
    with pytest.raises(BadInput, match="documentation"):
        validate.interface_address("10.0.0.1/30", "a", documentation_only=True)


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ("198.51.100.2", "198.51.100.2"),
        ("2001:DB8:0::2", "2001:db8::2"),
        ("::ffff:192.0.2.1", "::ffff:c000:201"),
        ("::", "::"),
    ],
    ids=["v4", "v6-upper", "v4-mapped", "unspecified"],
)
def test_address_accepts(value: str, canonical: str) -> None:
    assert validate.address(value, "next_hop") == canonical


@pytest.mark.parametrize(
    "value",
    [
        "198.51.100.2/32",
        "192.0.2.01",
        "fe80::1%eth0",
        "%eth0\n",
        "198.51.100.2\n",
        "198.51.100.2 ",
        "198.51.100",
        "localhost",
        3232235520,
        "0x7f000001",
        "\u0661.0.0.1",
    ],
    ids=[
        "with-length",
        "leading-zero",
        "zone-id",
        "percent-newline",
        "newline",
        "trailing-space",
        "three-octets",
        "hostname",
        "int",
        "hex",
        "arabic-digit",
    ],
)
def test_address_refuses(value: object) -> None:
    refuses(validate.address, value, "next_hop")


def test_address_documentation_only() -> None:
    assert validate.address("2001:db8::2", "a", documentation_only=True) == "2001:db8::2"
    with pytest.raises(BadInput, match="documentation"):
        validate.address("8.8.8.8", "a", documentation_only=True)


# ---- e164, circuit_id, access_id ----------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["+31205550001", "+1234567", "+123456789012345"],
    ids=["dutch", "shortest", "longest"],
)
def test_e164_accepts(value: str) -> None:
    assert validate.e164(value, "calling_number") == value


@pytest.mark.parametrize(
    "value",
    [
        "31205550001",
        "+0205550001",
        "+123456",
        "+1234567890123456",
        "+31 20 555 0001",
        "+31-20-5550001",
        "+3120555000１",
        "+31205550001\n",
        31205550001,
    ],
    ids=[
        "no-plus",
        "zero-country",
        "too-short",
        "too-long",
        "spaces",
        "dashes",
        "fullwidth-digit",
        "newline",
        "int",
    ],
)
def test_e164_refuses(value: object) -> None:
    refuses(validate.e164, value, "calling_number")


@pytest.mark.parametrize(
    "check", [validate.circuit_id, validate.access_id], ids=["circuit_id", "access_id"]
)
@pytest.mark.parametrize(
    "value",
    ["rc1:sub1", "eth0/1/2:100", "A.B_c-d", "x" * 100],
    ids=["lab", "slashes", "punctuation", "100"],
)
def test_line_ids_accept(check: Check, value: str) -> None:
    assert check(value, "id") == value


@pytest.mark.parametrize(
    "check", [validate.circuit_id, validate.access_id], ids=["circuit_id", "access_id"]
)
@pytest.mark.parametrize(
    "value",
    ["x" * 101, "rc1 sub1", "rc1;sub1", "rc1\\sub1", "rc1\x7f", "rc1\u00e9", "rc1\nsub1"],
    ids=["101", "space", "semicolon", "backslash", "del", "non-ascii", "newline"],
)
def test_line_ids_refuse(check: Check, value: str) -> None:
    refuses(check, value, "circuit")


# ---- text ---------------------------------------------------------------------------------


def text(value: object, field: str) -> str:
    return validate.text(value, field, 40)


@pytest.mark.parametrize(
    "value",
    ["Fibre to the home", "Zürich – 1 Gbit/s", "日本語の説明", "emoji 🚀 ok", "a", "x" * 40],
    ids=["ascii", "accents-dash", "cjk", "emoji", "one-char", "max-len"],
)
def test_text_accepts(value: str) -> None:
    assert validate.text(value, "description", 40) == value


@pytest.mark.parametrize(
    "value",
    [
        "line\nbreak",
        "cr\rhere",
        "tab\there",
        "nul\x00",
        "bell\x07",
        "del\x7f",
        "c1\x85",
        "ls\u2028",
        "ps\u2029",
        "nbsp\u00a0",
        "em\u2003space",
        "ideographic\u3000space",
        "rlo\u202e",
        "zwsp\u200b",
        "bom\ufeff",
        "surrogate\ud800",
        "private\ue000",
        "unassigned\u0378",
        " leading",
        "trailing ",
        "",
        "x" * 41,
        7,
    ],
    ids=[
        "newline",
        "cr",
        "tab",
        "nul",
        "bell",
        "del",
        "nel",
        "u2028",
        "u2029",
        "nbsp",
        "em-space",
        "ideographic-space",
        "bidi-override",
        "zero-width-space",
        "bom",
        "surrogate",
        "private-use",
        "unassigned",
        "leading-space",
        "trailing-space",
        "empty",
        "too-long",
        "int",
    ],
)
def test_text_refuses(value: object) -> None:
    refuses(text, value, "description")


def test_text_message_names_the_character() -> None:
    error = refuses(text, "ok\u2028no", "description")
    assert "U+2028" in error.message and "character 3" in error.message


# ---- url ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ("https://isp-a.example/callback", "https://isp-a.example/callback"),
        ("http://192.0.2.10:8080/hook?x=1#f", "http://192.0.2.10:8080/hook?x=1#f"),
        ("HTTPS://isp.example/", "https://isp.example/"),
        ("https://[2001:db8::1]/cb", "https://[2001:db8::1]/cb"),
        ("https://isp.example/a%20b", "https://isp.example/a%20b"),
        ("https://isp.example/" + "a" * 480, "https://isp.example/" + "a" * 480),
    ],
    ids=[
        "https",
        "http-port-query",
        "upper-scheme",
        "ipv6-literal",
        "percent-encoded",
        "500-chars",
    ],
)
def test_url_accepts(value: str, canonical: str) -> None:
    assert validate.url(value, "callback_url") == canonical


@pytest.mark.parametrize(
    "value",
    [
        "ftp://isp.example/",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "//isp.example/cb",
        "isp.example/cb",
        "https://",
        "https:///path",
        "https://user:pw@isp.example/",
        "https://user@isp.example/",
        "https://isp.example:99999/",
        "https://isp.example:0/",
        "https://isp.example:x/",
        "https://[2001:db8::1/",
        "https://isp.example/a b",
        "https://isp.example/\n",
        "https://isp.example/\t",
        "https://isp.example/\x00",
        "https://isp.example/\u2028",
        "https://isp.éxample/",
        "https://evil.example\\@isp.example/",
        "https://isp.example/" + "a" * 481,
        "",
    ],
    ids=[
        "ftp",
        "javascript",
        "file",
        "scheme-relative",
        "no-scheme",
        "no-host",
        "empty-host",
        "credentials",
        "user",
        "port-too-big",
        "port-zero",
        "port-not-number",
        "bad-ipv6",
        "space",
        "newline",
        "tab",
        "nul",
        "u2028",
        "non-ascii-host",
        "backslash",
        "501-chars",
        "empty",
    ],
)
def test_url_refuses(value: object) -> None:
    refuses(validate.url, value, "callback_url")


# ---- boolean and one_of -------------------------------------------------------------------


@pytest.mark.parametrize("value", [True, False], ids=["true", "false"])
def test_boolean_accepts(value: bool) -> None:
    assert validate.boolean(value, "dry_run") is value


@pytest.mark.parametrize(
    "value",
    [0, 1, "true", "false", "yes", None, 1.0, [], "True"],
    ids=["zero", "one", "str-true", "str-false", "yes", "none", "float", "list", "str-True"],
)
def test_boolean_refuses(value: Any) -> None:
    refuses(validate.boolean, value, "dry_run")


def test_one_of() -> None:
    assert validate.one_of("frr", "platform", ("frr", "ios")) == "frr"
    error = refuses(lambda v, f: validate.one_of(v, f, ("frr", "ios")), "eos", "platform")
    assert "frr, ios" in error.message
    refuses(lambda v, f: validate.one_of(v, f, ("frr",)), ["frr"], "platform")


def test_error_messages_escape_the_value() -> None:
    error = refuses(validate.name, "bad\nname\x1b[31m", "isp")
    assert "\n" not in error.message and "\x1b" not in error.message
    assert error.code == "VPOP-400"


def test_long_values_are_shortened_in_messages() -> None:
    error = refuses(validate.name, "x" * 5000, "isp")
    assert len(error.message) < 300
