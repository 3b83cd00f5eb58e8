"""The rule order (properties of the pure choice) and `vpop aaa rules` / `vpop aaa decisions`."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_aaa_support import audit_rows, seeded_database
from vpop.aaa.rules import KINDS, Facts, RuleView, matches, order_key, pick_rule, rule_match
from vpop.cli import main
from vpop.core.errors import BadInput


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated, seeded SQLite database."""
    yield from seeded_database(tmp_path)


PREFIXES = ["+3", "+31", "+312", "+3120", "+3120555", "+44", "+4420"]
REALMS = ["example", "isp.example", "a.isp.example", "other.example"]
PROFILES = ["tier=gold", "tier=silver", "business=true", "isp=isp-b"]
MATCHES = {"calling_prefix": PREFIXES, "realm": REALMS, "profile": PROFILES}


@st.composite
def rule_sets(draw: st.DrawFn) -> list[RuleView]:
    """Up to 12 rules with distinct ids, drawn priorities (with ties) and matches."""
    count = draw(st.integers(0, 12))
    found = []
    for rule_id in draw(
        st.lists(st.integers(1, 10_000), min_size=count, max_size=count, unique=True)
    ):
        kind = draw(st.sampled_from(KINDS))
        found.append(
            RuleView(
                id=rule_id,
                kind=kind,
                match=draw(st.sampled_from(MATCHES[kind])),
                isp=draw(st.sampled_from(["isp-a", "isp-b", "isp-c"])),
                priority=draw(st.sampled_from([0, 50, 100, 100, 200])),
            )
        )
    return found


facts = st.builds(
    Facts,
    calling_number=st.sampled_from([None, "+31205550003", "+442071234567", "+12125550000"]),
    realm=st.sampled_from([None, "isp.example", "a.isp.example", "b.other.example"]),
    profile=st.sampled_from([None, {}, {"tier": "gold"}, {"business": True, "tier": "silver"}]),
)


@settings(database=None)
@given(rule_sets(), facts, st.randoms())
def test_the_choice_does_not_depend_on_the_order_rules_are_read(
    rules: list[RuleView], fact: Facts, rnd: random.Random
) -> None:
    shuffled = list(rules)
    rnd.shuffle(shuffled)
    assert pick_rule(shuffled, fact) == pick_rule(rules, fact)


@settings(database=None)
@given(rule_sets(), facts)
def test_the_chosen_rule_matches_and_no_matching_rule_outranks_it(
    rules: list[RuleView], fact: Facts
) -> None:
    chosen = pick_rule(rules, fact)
    matching = [rule for rule in rules if matches(rule, fact)]
    if chosen is None:
        assert matching == []
        return
    assert matches(chosen, fact)
    for rule in matching:
        assert rule.priority <= chosen.priority
        if rule.priority == chosen.priority:
            assert len(rule.match) <= len(chosen.match)
        if rule != chosen:
            assert order_key(chosen) < order_key(rule)  # a total order: no ties


@settings(database=None)
@given(rule_sets(), facts)
def test_a_higher_priority_rule_that_matches_always_wins(
    rules: list[RuleView], fact: Facts
) -> None:
    chosen = pick_rule(rules, fact)
    if chosen is None:
        return
    top = RuleView(id=99_999, kind=chosen.kind, match=chosen.match, isp="isp-z", priority=1_000_000)
    assert pick_rule([*rules, top], fact) == top


def test_the_longest_prefix_wins_at_equal_priority() -> None:
    rules = [
        RuleView(1, "calling_prefix", "+31", "isp-a", 100),
        RuleView(2, "calling_prefix", "+3120555", "isp-c", 100),
        RuleView(3, "realm", "isp.example", "isp-b", 50),
    ]
    fact = Facts(calling_number="+31205550003", realm="isp.example")
    assert pick_rule(rules, fact) == rules[1]
    assert pick_rule(rules, Facts(realm="a.isp.example")) == rules[2]
    assert pick_rule(rules, Facts(realm="xisp.example")) is None


@pytest.mark.parametrize(
    ("kind", "match"),
    [
        ("calling_prefix", "31"),
        ("calling_prefix", "+0"),
        ("realm", "bad realm"),
        ("realm", "-x.example"),
        ("profile", "tier"),
        ("profile", "Tier=gold"),
        ("profile", "tier=gold\nx"),
        ("colour", "blue"),
    ],
)
def test_malformed_matches_are_refused(kind: str, match: str) -> None:
    with pytest.raises(BadInput):  # BadRule is one
        rule_match(kind, match)


def vpop(*args: str) -> Result:
    """`vpop ARGS` in this process."""
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def cli_db(url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The seeded database as the CLI's VPOP_DATABASE_URL."""
    monkeypatch.setenv("VPOP_DATABASE_URL", url)
    return url


def test_rules_add_list_remove_audited(cli_db: str) -> None:
    added = vpop("aaa", "rules", "add", "--calling-prefix", "+3120555", "--isp", "isp-c")
    assert added.exit_code == 0, added.stderr
    assert added.stdout.startswith("rule 1: calling_prefix +3120555 -> isp-c")
    assert (
        vpop(
            "aaa", "rules", "add", "--realm", "ISP.Example", "--isp", "isp-b", "--priority", "200"
        ).exit_code
        == 0
    )
    listed = json.loads(vpop("aaa", "rules", "list", "--json").stdout)
    assert [(r["id"], r["match"], r["priority"]) for r in listed] == [
        (2, "isp.example", 200),
        (1, "+3120555", 100),
    ]
    assert "+3120555" in vpop("aaa", "rules", "list").stdout
    removed = vpop("aaa", "rules", "remove", "1")
    assert removed.exit_code == 0 and removed.stdout == "rule 1 removed\n"
    assert [e.details["match"] for e in audit_rows(cli_db, "aaa_rule.create")] == [
        "+3120555",
        "isp.example",
    ]
    (gone,) = audit_rows(cli_db, "aaa_rule.remove")
    assert gone.object == "aaa_rule:1" and gone.actor.startswith("cli:")


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["add", "--isp", "isp-a"], "VPOP-400-AAA-RULE"),
        (
            ["add", "--realm", "a.example", "--profile", "t=1", "--isp", "isp-a"],
            "VPOP-400-AAA-RULE",
        ),
        (["add", "--calling-prefix", "31", "--isp", "isp-a"], "VPOP-400-AAA-RULE"),
        (["add", "--calling-prefix", "+31", "--isp", "isp-z"], "VPOP-404-ISP"),
        (["add", "--calling-prefix", "+31", "--isp", "isp-a", "--priority", "-1"], "VPOP-400"),
        (["remove", "42"], "VPOP-404-AAA-RULE"),
        (["remove", "x"], "VPOP-400"),
    ],
    ids=["none", "two", "bad-prefix", "unknown-isp", "bad-priority", "unknown-rule", "bad-id"],
)
def test_bad_rule_commands_exit_2_with_one_line(cli_db: str, args: list[str], code: str) -> None:
    result = vpop("aaa", "rules", *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {code}"), result.stderr


def test_decisions_lists_newest_first_and_filters(cli_db: str) -> None:
    from vpop.aaa.policy import authorize

    authorize({"Calling-Station-Id": ["+31205550001"]}, nas="lab", url=cli_db)
    authorize({"Calling-Station-Id": ["+31209999999"]}, nas="lab", url=cli_db)
    everything = json.loads(vpop("aaa", "decisions", "--json").stdout)
    assert [d["outcome"] for d in everything] == ["reject", "reject"]  # no ISP / unknown line
    mine = json.loads(vpop("aaa", "decisions", "--subscriber", "sub1", "--json").stdout)
    assert [d["subscriber"] for d in mine] == ["sub1"]
    assert vpop("aaa", "decisions", "--limit", "1").stdout.count("\n") == 1
    bad = vpop("aaa", "decisions", "--subscriber", "Sub 1")
    assert bad.exit_code == 2 and bad.stderr.startswith("error: VPOP-400")
