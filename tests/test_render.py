"""The renderer: golden files per platform and feature, validation, the structure check,
and (in a lab of its own) the FRR texts read back from pbrd and nft."""

from __future__ import annotations

import copy
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from tasks.frr_config import nft_transaction, zero_nft_counters
from vpop.core import validate
from vpop.core.errors import BadInput
from vpop.network import templates as render_module
from vpop.network.filters import (
    frr_interface_key,
    frr_ip,
    frr_prefix,
    nft_elements,
    nft_sets,
    nft_value,
)
from vpop.network.intent import validate_intent
from vpop.network.structure import StructureError
from vpop.network.templates import (
    FEATURES,
    PLATFORMS,
    check_structure,
    environment,
    render,
    render_router,
)

GOLDEN = Path(__file__).parent / "templates"
CASES = sorted(GOLDEN.glob("*/*.vars.yaml"))
GOLDEN_PAIRS = [(case, feature) for case in CASES for feature in FEATURES.get(case.parent.name, ())]


def case_name(vars_file: Path) -> str:
    return vars_file.name.removesuffix(".vars.yaml")


def expected_file(vars_file: Path, feature: str) -> Path:
    return vars_file.with_name(f"{case_name(vars_file)}.{feature}.expected.cfg")


def load(vars_file: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(vars_file.read_text())
    return data


def lab_intent() -> dict[str, Any]:
    return load(GOLDEN / "frr" / "lab-default.vars.yaml")


# ---- golden files -------------------------------------------------------------------------


def test_golden_cases_are_discovered() -> None:
    assert CASES, "no golden cases found under tests/templates"
    for platform in PLATFORMS:
        cases = [c for c in CASES if c.parent.name == platform]
        assert len(cases) >= 3, f"{platform}: fewer than 3 golden cases"
        templates = {t.stem for t in (render_module.TEMPLATE_ROOT / platform).glob("*.j2")}
        assert templates == set(FEATURES[platform]), platform
    assert {c.parent.name for c in CASES} <= set(PLATFORMS)


def test_no_expected_file_without_its_case() -> None:
    known = {expected_file(case, feature) for case, feature in GOLDEN_PAIRS}
    stray = sorted(str(p) for p in GOLDEN.glob("*/*.expected.cfg") if p not in known)
    assert not stray, f"expected files without a vars file or feature: {stray}"


@pytest.mark.parametrize(
    ("vars_file", "feature"),
    GOLDEN_PAIRS,
    ids=[f"{c.parent.name}/{case_name(c)}.{f}" for c, f in GOLDEN_PAIRS],
)
def test_golden(vars_file: Path, feature: str, update_golden: bool) -> None:
    intent = load(vars_file)
    assert intent["platform"] == vars_file.parent.name, "case is in the wrong platform folder"
    text = render_router(intent)[feature]
    expected = expected_file(vars_file, feature)
    if update_golden:
        expected.write_text(text)
    assert expected.exists(), f"run pytest --update to create {expected.name}"
    assert text == expected.read_text()


# ---- environment and render ---------------------------------------------------------------


def test_one_environment_per_platform_built_once() -> None:
    env = environment("frr")
    assert environment("frr") is env
    assert environment("ios") is not env
    assert env.undefined is jinja2.StrictUndefined
    assert env.trim_blocks and env.lstrip_blocks and env.keep_trailing_newline
    loader = env.loader
    assert isinstance(loader, jinja2.FileSystemLoader)
    assert [Path(p) for p in loader.searchpath] == [render_module.TEMPLATE_ROOT / "frr"]


@pytest.mark.parametrize(
    ("platform", "feature"),
    [("vyos", "pbr"), ("frr", "missing"), ("frr", "../ios/acl"), ("frr", "PBR")],
    ids=["unknown-platform", "unknown-feature", "path-traversal", "upper-case"],
)
def test_render_refuses_unknown_templates(platform: str, feature: str) -> None:
    with pytest.raises(BadInput):
        render(platform, feature, {})


def test_render_reports_a_missing_variable_as_bad_input() -> None:
    with pytest.raises(BadInput, match="lines"):
        render("frr", "pbr", {"isps": []})


def test_render_router_returns_every_feature_in_apply_order() -> None:
    for platform in PLATFORMS:
        intent = {"router": "r1", "platform": platform, "isps": [], "lines": []}
        assert tuple(render_router(intent)) == FEATURES[platform]


def test_input_order_and_duplicates_do_not_change_the_output() -> None:
    intent = load(GOLDEN / "frr" / "deny-lists.vars.yaml")
    shuffled = copy.deepcopy(intent)
    shuffled["isps"].reverse()
    shuffled["lines"].reverse()
    for isp in shuffled["isps"]:
        isp["outbound_deny"] = list(reversed(isp["outbound_deny"])) * 2
    assert render_router(shuffled) == render_router(intent)


# ---- nft and FRR formatting ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "printed"),
    [
        ("192.0.2.2/32", "192.0.2.2"),
        ("192.0.2.0/30", "192.0.2.0/30"),
        ("2001:db8::1/128", "2001:db8::1"),
        ("2001:db8:2::/64", "2001:db8:2::/64"),
        ("::ffff:c000:201/128", "::ffff:192.0.2.1"),
        ("::ffff:0:0/96", "::ffff:0.0.0.0/96"),
        ("::c000:201/128", "::192.0.2.1"),
        ("::1:0/128", "::0.1.0.0"),
        ("::1/128", "::1"),
        ("::2/128", "::2"),
        ("::1:2:3/128", "::1:2:3"),
        ("::/0", "::/0"),
        ("::/128", "::"),
        ("1:0:0:2::3/128", "1:0:0:2::3"),
    ],
    ids=lambda v: v,
)
def test_nft_value_prints_like_nft(prefix: str, printed: str) -> None:
    assert nft_value(prefix) == printed


@pytest.mark.parametrize(
    ("prefixes", "printed"),
    [
        (["203.0.113.128/25", "192.0.2.0/25"], ["192.0.2.0/25", "203.0.113.128/25"]),
        (["192.0.2.0/25", "192.0.2.128/25"], ["192.0.2.0/24"]),
        (["192.0.2.0/24", "192.0.2.128/25"], ["192.0.2.0/24"]),
        (["192.0.2.1/32", "192.0.2.2/32"], ["192.0.2.1-192.0.2.2"]),
        (["192.0.2.0/25", "192.0.2.128/26"], ["192.0.2.0-192.0.2.191"]),
        (["192.0.2.0/31", "192.0.2.4/32"], ["192.0.2.0/31", "192.0.2.4"]),
        (["255.255.255.255/32", "255.255.255.254/32"], ["255.255.255.254/31"]),
        (["0.0.0.0/1", "128.0.0.0/1"], ["0.0.0.0/0"]),
        (["2001:db8::/127", "2001:db8::2/128"], ["2001:db8::-2001:db8::2"]),
        (["2001:db8:1::/48", "2001:db8::1/128"], ["2001:db8::1", "2001:db8:1::/48"]),
    ],
    ids=[
        "sorted",
        "siblings-merge",
        "overlap-merges",
        "adjacent-hosts-range",
        "adjacent-unaligned-range",
        "gap-kept",
        "top-of-space",
        "whole-space",
        "ipv6-range",
        "ipv6-numeric-order",
    ],
)
def test_nft_elements_merge_like_nft(prefixes: list[str], printed: list[str]) -> None:
    assert nft_elements(prefixes) == printed


def test_nft_sets_split_by_family_with_braces_only_for_several() -> None:
    assert nft_sets(["2001:db8:5::/48", "203.0.113.128/25", "2001:db8:7::/48"]) == [
        ("ip", "203.0.113.128/25"),
        ("ip6", "{ 2001:db8:5::/48, 2001:db8:7::/48 }"),
    ]
    assert nft_sets(["192.0.2.0/25", "192.0.2.128/25"]) == [("ip", "192.0.2.0/24")]
    assert nft_sets([]) == []


def test_nft_transaction_and_counters() -> None:
    assert nft_transaction("table inet vpop {\n}\n").startswith(
        "table inet vpop {}\ndelete table inet vpop\ntable inet vpop {"
    )
    live = '\t\tiifname "sub1" counter packets 12 bytes 3400 drop\n'
    assert zero_nft_counters(live) == '\t\tiifname "sub1" counter packets 0 bytes 0 drop\n'


@pytest.mark.parametrize(
    ("value", "printed"),
    [
        ("::c000:202", "::192.0.2.2"),
        ("::1:0", "::0.1.0.0"),
        ("::ffff:c000:201", "::ffff:c000:201"),
        ("::1", "::1"),
        ("::1:0:0", "::1:0:0"),
        ("2001:db8::2", "2001:db8::2"),
        ("198.51.100.2", "198.51.100.2"),
    ],
    ids=lambda v: v,
)
def test_frr_ip_prints_like_vtysh(value: str, printed: str) -> None:
    # FRR's own inet_ntop writes only ::a.b.c.d dotted; glibc (nft) also ::ffff:a.b.c.d
    assert frr_ip(value) == printed


def test_frr_prefix_always_has_a_length() -> None:
    assert frr_prefix("192.0.2.2/32") == "192.0.2.2/32"
    assert frr_prefix("::1:0/112") == "::0.1.0.0/112"


FRR_INTERFACE_ORDER = [
    "A1",
    "Sub3",
    "a",
    "a-1",
    "a.1",
    "a0001",
    "a01",
    "a1",
    "a1b",
    "eth0.9",
    "eth0.10",
    "eth0.100",
    "eth9.100",
    "eth10.1",
    "ghost7",
    "sub1",
    "sub2",
    "sub9",
    "sub10",
]


def test_frr_interface_order_matches_what_vtysh_printed() -> None:
    # observed in `show running-config` of FRR 8.4.4 (see test_frr_pbr_matches_running_config)
    shuffled = sorted(FRR_INTERFACE_ORDER, reverse=True)
    assert sorted(shuffled, key=frr_interface_key) == FRR_INTERFACE_ORDER


# ---- intent validation --------------------------------------------------------------------


def mutate(path: str, value: object) -> dict[str, Any]:
    """The lab intent with one leaf replaced (``isps.1.next_hop``) or removed (value ...)."""
    intent = lab_intent()
    *parents, last = path.split(".")
    node: Any = intent
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    key: Any = int(last) if last.isdigit() else last
    if value is Ellipsis:
        del node[key]
    else:
        node[key] = value
    return intent


BAD_INTENTS = {
    "router-newline": (mutate("router", "rc1\n"), "router"),
    "platform-unknown": (mutate("platform", "eos"), "platform"),
    "unknown-top-key": ({**lab_intent(), "extra": 1}, "unknown"),
    "missing-lines": (mutate("lines", ...), "missing lines"),
    "isps-not-a-list": (mutate("isps", "isp-a"), "isps"),
    "isp-id-upper": (mutate("isps.0.id", "ISP-A"), r"isps\[0\]\.id"),
    "instance-mismatch": (mutate("isps.0.instance", "vpop-isp-z"), r"isps\[0\]\.instance"),
    "next-hop-off-link": (mutate("isps.0.next_hop", "198.51.100.6"), "not on the uplink"),
    "next-hop-is-self": (mutate("isps.0.next_hop", "198.51.100.1"), "own address"),
    "next-hop-family": (mutate("isps.0.next_hop", "2001:db8::2"), "not on the uplink"),
    "deny-host-bits": (mutate("isps.0.outbound_deny", ["203.0.113.1/24"]), "outbound_deny"),
    "deny-not-a-list": (mutate("isps.0.outbound_deny", "203.0.113.0/24"), "outbound_deny"),
    "uplink-slash-on-frr": (mutate("isps.0.interface", "eth0/1"), "Linux interface"),
    "uplink-too-long-on-frr": (mutate("isps.0.interface", "a" * 16), "Linux interface"),
    "duplicate-isp": (
        mutate("isps.1", {**lab_intent()["isps"][0], "interface": "isp-b"}),
        "more than once",
    ),
    "line-interface-is-uplink": (
        mutate(
            "lines.0", {**lab_intent()["lines"][0], "interface": "isp-a", "policy": "vpop-isp-a"}
        ),
        "interface 'isp-a' is used more than once",
    ),
    "policy-mismatch": (mutate("lines.0.policy", "vpop-sub9"), "policy"),
    "line-isp-unknown": (mutate("lines.0.isp", "isp-z"), "no uplink"),
    "line-isp-number": (mutate("lines.0.isp", 1), r"lines\[0\]\.isp"),
    "line-prefix-tab": (mutate("lines.0.prefix", "192.0.2.2/32\t"), "prefix"),
    "line-gateway-family": (mutate("lines.0.gateway", "2001:db8::1/64"), "same family"),
    "line-prefix-overlap": (mutate("lines.1.prefix", "192.0.2.0/30"), "overlaps"),
    "line-family-vs-isp": (
        mutate(
            "lines.0",
            {**lab_intent()["lines"][0], "prefix": "2001:db8::/64", "gateway": "2001:db8::1/64"},
        ),
        "cannot carry",
    ),
    "line-missing-key": (mutate("lines.0.gateway", ...), "missing gateway"),
    "subscriber-space": (mutate("lines.0.subscriber", "sub 1"), "subscriber"),
}


@pytest.mark.parametrize(("intent", "message"), list(BAD_INTENTS.values()), ids=list(BAD_INTENTS))
def test_render_router_refuses_bad_intents(intent: dict[str, Any], message: str) -> None:
    with pytest.raises(BadInput, match=message):
        render_router(intent)


def test_filter_names_must_not_collide_on_junos() -> None:
    intent = load(GOLDEN / "junos" / "two-isps.vars.yaml")
    clash = {**intent["lines"][0], "interface": "ge-0/0/3:101", "policy": "vpop-ge-0/0/3:101"}
    clash["prefix"], clash["gateway"] = "192.0.2.50/32", "192.0.2.49/30"
    intent["lines"].append(clash)
    with pytest.raises(BadInput, match="junos filter name"):
        render_router(intent)


def test_validate_intent_is_canonical_and_sorted() -> None:
    intent = lab_intent()
    intent["isps"].reverse()
    intent["isps"][0]["outbound_deny"] = ["2001:DB8::/32", "203.0.113.0/24", "203.0.113.0/24"]
    intent["lines"].reverse()
    canonical = validate_intent(intent)
    assert [i["id"] for i in canonical["isps"]] == ["isp-a", "isp-b", "isp-c"]
    assert [line["interface"] for line in canonical["lines"]] == ["sub1", "sub3"]
    assert canonical["isps"][2]["outbound_deny"] == ["203.0.113.0/24", "2001:db8::/32"]


# ---- structure check ----------------------------------------------------------------------


@pytest.fixture
def no_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Turn intent validation off, as if a value had slipped past it."""
    monkeypatch.setattr(render_module, "validate_intent", lambda intent: intent)


SMUGGLED = {
    "interface-newline": ("lines.0.interface", "sub1\n pbr-policy evil"),
    "interface-cr": ("lines.0.interface", "sub1\rexit"),
    "interface-u2028": ("lines.0.interface", "sub1\u2028exit"),
    "interface-space": ("lines.0.interface", "sub1 extra"),
    "interface-quote": ("lines.0.interface", 'sub1" accept #'),
    "interface-semicolon": ("lines.0.interface", "sub1;flush"),
    "isp-newline": ("isps.1.interface", "isp-b\nexit\n!\nline vty"),
    "prefix-newline": ("lines.0.prefix", "192.0.2.2/32\n drop"),
    "next-hop-space": ("isps.1.next_hop", "198.51.100.10 blackhole"),
    "subscriber-tab": ("lines.0.subscriber", "sub1\tx"),
}


# every platform with every smuggled value its templates print (frr's do not print the
# subscriber, so there is nothing of it to catch there)
SMUGGLING = [
    pytest.param(platform, path, value, id=f"{platform}-{name}")
    for platform in PLATFORMS
    for name, (path, value) in SMUGGLED.items()
    if not (platform == "frr" and path == "lines.0.subscriber")
]


@pytest.mark.parametrize(("platform", "path", "value"), SMUGGLING)
def test_a_value_smuggled_past_validation_is_caught(
    no_validation: None, platform: str, path: str, value: str
) -> None:
    intent = mutate(path, value)
    intent["platform"] = platform
    with pytest.raises(BadInput) as caught:
        render_router(intent)
    # a filter may refuse an unparsable address first; names reach the structure check
    if not path.endswith(("prefix", "next_hop")):
        assert isinstance(caught.value, StructureError), caught.value


def test_check_structure_accepts_every_golden_case() -> None:
    for case, feature in GOLDEN_PAIRS:
        intent = validate_intent(load(case))
        text = render(intent["platform"], feature, intent)
        check_structure(intent["platform"], feature, intent, text)


def test_check_structure_names_the_line(no_validation: None) -> None:
    intent = mutate("lines.0.policy", "vpop-sub1\n!")
    text = render("frr", "pbr", intent)
    with pytest.raises(StructureError, match="frr/pbr"):
        check_structure("frr", "pbr", intent, text)
    intent = mutate("lines.0.policy", "vpop-sub1 x")
    text = render("frr", "pbr", intent)
    with pytest.raises(StructureError, match=r"line 2 ' pbr-policy vpop-sub1 x'"):
        check_structure("frr", "pbr", intent, text)


def test_validate_functions_are_what_render_router_uses(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    original = validate.interface

    def spy(value: object, field: str) -> str:
        seen.append(field)
        return original(value, field)

    monkeypatch.setattr(validate, "interface", spy)
    render_router(lab_intent())
    assert "lines[0].interface" in seen and "isps[2].interface" in seen


# ---- the real thing: a lab of our own -----------------------------------------------------

TPL_DIR = Path("/run/vpop-tpl")
TPL_PREFIX = "vpop-tpl-"


@pytest.fixture(scope="module")
def tpl_lab() -> Iterator[dict[str, Any]]:
    """A two-subscriber lab in namespaces vpop-tpl-*, separate from the default lab."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (namespaces, FRR, sshd)")
    from vpop.lab.builder import Lab

    lab = Lab(TPL_DIR, prefix=TPL_PREFIX)
    try:
        yield lab.up(subscribers=2)
    finally:
        lab.down()


def in_router(*args: str, stdin: str | None = None) -> str:
    proc = subprocess.run(
        ["ip", "netns", "exec", f"{TPL_PREFIX}rc1", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def vtysh(*args: str) -> str:
    return in_router("/usr/bin/vtysh", "--vty_socket", str(TPL_DIR / "rc1"), *args)


# Addresses whose printed forms differ between Python, FRR and nft: IPv4-compatible and
# IPv4-mapped IPv6. Not a golden case (no one routes these); checked against the devices.
ODD_ADDRESSES: dict[str, Any] = {
    "router": "rc1",
    "platform": "frr",
    "isps": [
        {
            "id": "isp-odd",
            "instance": "vpop-isp-odd",
            "interface": "isp-odd",
            "address": "::c000:201/120",
            "next_hop": "::c000:202",
            "outbound_deny": ["::ffff:c000:200/120", "::1:0/112", "::2/128", "::3/128"],
        }
    ],
    "lines": [
        {
            "subscriber": "sub8",
            "interface": "sub8",
            "policy": "vpop-sub8",
            "prefix": "::ffff:c000:200/120",
            "gateway": "::ffff:c000:201/120",
            "isp": "isp-odd",
        },
        {
            "subscriber": "sub9",
            "interface": "sub9",
            "policy": "vpop-sub9",
            "prefix": "::1:0/112",
            "gateway": "::1:1/112",
            "isp": "isp-odd",
        },
    ],
}
FRR_CASES = [c for c in CASES if c.parent.name == "frr"]
FRR_INTENTS = [load(c) for c in FRR_CASES] + [ODD_ADDRESSES]
FRR_IDS = [case_name(c) for c in FRR_CASES] + ["odd-addresses"]


@pytest.mark.lab
@pytest.mark.parametrize("intent", FRR_INTENTS, ids=FRR_IDS)
def test_frr_acl_round_trips_through_nft(tpl_lab: dict[str, Any], intent: dict[str, Any]) -> None:
    text = render_router(intent)["acl"]
    in_router("nft", "-f", "-", stdin=nft_transaction(text))
    assert in_router("nft", "list", "table", "inet", "vpop") == text
    # a second load replaces the table whole (no duplicated rules)
    in_router("nft", "-f", "-", stdin=nft_transaction(text))
    assert in_router("nft", "list", "table", "inet", "vpop") == text


def vpop_blocks(running: str) -> str:
    """The interface, nexthop-group and pbr-map blocks of a running config."""
    blocks = re.findall(
        r"^((?:interface|nexthop-group|pbr-map) \S+.*?\nexit\n!\n)", running, re.M | re.S
    )
    return "".join(blocks)


def clear_pbr(running: str) -> None:
    commands = ["conf t"]
    for block in re.findall(r"^interface (\S+)\n pbr-policy (\S+)\n", running, re.M):
        commands += [f"interface {block[0]}", f"no pbr-policy {block[1]}", "exit"]
    commands += [f"no {h}" for h in re.findall(r"^(pbr-map \S+ seq \d+)$", running, re.M)]
    commands += [f"no {h}" for h in re.findall(r"^(nexthop-group \S+)$", running, re.M)]
    args = [a for c in commands for a in ("-c", c)]
    vtysh(*args)


@pytest.mark.lab
@pytest.mark.parametrize("intent", FRR_INTENTS, ids=FRR_IDS)
def test_frr_pbr_matches_running_config(tpl_lab: dict[str, Any], intent: dict[str, Any]) -> None:
    text = render_router(intent)["pbr"]
    clear_pbr(vtysh("-c", "show running-config"))
    config = TPL_DIR / "pbr-test.conf"
    config.write_text(text)
    vtysh("-f", str(config))
    assert vpop_blocks(vtysh("-c", "show running-config")) == text


@pytest.mark.lab
def test_frr_interface_order_is_pbrds(tpl_lab: dict[str, Any]) -> None:
    clear_pbr(vtysh("-c", "show running-config"))
    args = ["-c", "conf t"]
    for name in sorted(FRR_INTERFACE_ORDER, reverse=True):
        args += ["-c", f"interface {name}", "-c", "pbr-policy vpop-x", "-c", "exit"]
    vtysh(*args)
    running = vtysh("-c", "show running-config")
    assert re.findall(r"^interface (\S+)$", running, re.M) == FRR_INTERFACE_ORDER
    clear_pbr(running)
