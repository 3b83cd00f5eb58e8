"""The identity resolver: normalisation (fixed points), precedence, conflicts, properties."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_aaa_support import hexed, seed
from vpop.aaa.errors import IdentityConflict, UnknownLine
from vpop.aaa.resolver import (
    PRECEDENCE,
    Identifiers,
    calling_number,
    decode_octets,
    from_radius,
    resolve,
    resolve_by,
    user_name,
)
from vpop.core.db import dispose_engines, session_scope
from vpop.core.errors import BadInput

LINES = 3


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One seeded database for the module (the resolver only reads)."""
    path: Path = tmp_path_factory.mktemp("resolver")
    url = f"sqlite:///{path}/aaa.sqlite"
    seed(url)
    try:
        yield url
    finally:
        dispose_engines()


@pytest.mark.parametrize(
    "raw",
    [
        "+31205550003",
        "0031205550003",
        "31205550003",
        "tel:+31205550003",
        "+31 20 555 0003",
        "+31-20-555-0003",
        "+31 (20) 555.0003",
    ],
)
def test_nas_forms_of_a_calling_number_normalise_to_e164(raw: str) -> None:
    assert calling_number(raw) == "+31205550003"


@pytest.mark.parametrize(
    "raw",
    ["0205550003", "00-11-22-33-44-55", "00:11:22:33:44:55", "0011.2233.4455", "", "+0123456"],
    ids=["national", "mac-dash", "mac-colon", "mac-cisco", "empty", "zero-country"],
)
def test_what_is_not_an_international_number_is_refused(raw: str) -> None:
    with pytest.raises(BadInput):
        calling_number(raw)


def test_octets_are_hex_decoded_and_other_values_kept() -> None:
    assert decode_octets(hexed("rc1:sub1")) == "rc1:sub1"
    assert decode_octets("rc1:sub1") == "rc1:sub1"
    with pytest.raises(BadInput):
        decode_octets("0xff00")


def test_the_realm_is_lower_cased_and_the_user_kept() -> None:
    assert user_name("Sub3@ISP-C.Example") == "Sub3@isp-c.example"
    assert user_name("sub3") == "sub3"
    with pytest.raises(BadInput):
        user_name("sub 3@x")


@settings(database=None)
@given(st.text(alphabet="+0123456789 -().tel:/", max_size=24))
def test_calling_number_normalisation_is_idempotent(raw: str) -> None:
    try:
        once = calling_number(raw)
    except BadInput:
        return
    assert calling_number(once) == once


@settings(database=None)
@given(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=40))
def test_user_name_normalisation_is_idempotent(raw: str) -> None:
    try:
        once = user_name(raw)
    except BadInput:
        return
    assert user_name(once) == once


def _number_form(k: int, form: int) -> str:
    national = f"3120555{k:04d}"
    return ["+" + national, "00" + national, national, "tel:+" + national][form]


def _identifier(k: int, kind: str, form: int) -> dict[str, list[str]]:
    """An Access-Request carrying one identifier of line k (sub<k>), as a NAS sends it."""
    sub, router = f"sub{k}", "rc2" if k == 2 else "rc1"
    host = ipaddress.ip_network(f"192.0.2.{4 * k}/30")[1 + form % 2]
    radius = {
        "circuit_id": {"ADSL-Agent-Circuit-Id": [hexed(f"{router}:{sub}")]},
        "remote_id": {"ADSL-Agent-Remote-Id": [hexed(f"remote-{sub}")]},
        "nas_port_id": {"NAS-Port-Id": [f"eth0.{100 + k}"]},
        "calling_number": {"Calling-Station-Id": [_number_form(k, form)]},
        "user_name": {"User-Name": [f"{sub}@ISP.example" if form % 2 else f"{sub}@isp.example"]},
        "source_address": {"Framed-IP-Address": [str(host)]},
    }
    return radius.get(kind, {})


RADIUS_KINDS = [kind for kind in PRECEDENCE if kind != "access_id"]


@settings(
    max_examples=60, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    k=st.integers(1, LINES),
    kind=st.sampled_from(RADIUS_KINDS),
    form=st.integers(0, 3),
)
def test_any_single_identifier_of_a_line_resolves_to_it(
    db: str, k: int, kind: str, form: int
) -> None:
    identifiers, unusable = from_radius(_identifier(k, kind, form))
    assert unusable == {}
    with session_scope(db) as session:
        line, by = resolve_by(session, identifiers)
        assert (line.subscriber_id, by) == (f"sub{k}", kind)


@settings(
    max_examples=60, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lines=st.lists(st.integers(1, LINES), min_size=2, max_size=2, unique=True),
    kinds=st.lists(st.sampled_from(RADIUS_KINDS), min_size=2, max_size=2, unique=True),
    form=st.integers(0, 3),
)
def test_two_identifiers_of_different_lines_always_conflict(
    db: str, lines: list[int], kinds: list[str], form: int
) -> None:
    attributes = {**_identifier(lines[0], kinds[0], form), **_identifier(lines[1], kinds[1], form)}
    identifiers, _ = from_radius(attributes)
    with session_scope(db) as session, pytest.raises(IdentityConflict) as raised:
        resolve(session, identifiers)
    values = {raised.value.first[0], raised.value.second[0]}
    assert values == set(kinds)
    assert {raised.value.first[2], raised.value.second[2]} == set(lines)  # line id k is sub<k>


def test_identifiers_of_one_line_agree_and_precedence_names_the_finder(db: str) -> None:
    attributes = {**_identifier(3, "calling_number", 1), **_identifier(3, "circuit_id", 0)}
    with session_scope(db) as session:
        line, by = resolve_by(session, from_radius(attributes)[0])
        assert (line.subscriber_id, by) == ("sub3", "circuit_id")


def test_api_identifiers_resolve_through_the_same_function(db: str) -> None:
    with session_scope(db) as session:
        assert resolve(session, Identifiers.of(access_id="acc-sub2")).subscriber_id == "sub2"
        assert resolve(session, Identifiers.of(calling_number="0031205550001")).id == 1
    with pytest.raises(BadInput):
        Identifiers.of(colour="blue")


def test_unknown_identifiers_name_no_line(db: str) -> None:
    with session_scope(db) as session:
        with pytest.raises(UnknownLine):
            resolve(session, Identifiers.of(calling_number="+31209999999"))
        with pytest.raises(UnknownLine):
            resolve(session, Identifiers())


def test_a_mac_in_calling_station_id_is_left_out_not_fatal(db: str) -> None:
    identifiers, unusable = from_radius(
        {"Calling-Station-Id": ["00-11-22-33-44-55"], "NAS-Port-Id": ["eth0.101"]}
    )
    assert "calling_number" in unusable
    with session_scope(db) as session:
        assert resolve(session, identifiers).subscriber_id == "sub1"
