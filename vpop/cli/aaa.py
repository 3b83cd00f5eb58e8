"""``vpop aaa``: the authentication and ISP routing centre's policy (the rules that choose an
ISP for a line, the decisions taken).

Every change is written to the audit log under ``cli:<login>``. Errors are one line; bad
input (a malformed match, an unknown ISP or rule) exits 2.
"""

from __future__ import annotations

import click

from vpop.cli.common import OneLineGroup, bad_input, cli_actor, echo_views, reported_errors


@click.group(cls=OneLineGroup)
def aaa() -> None:
    """The ISP routing centre's policy: rules and decisions."""


@aaa.group(cls=OneLineGroup)
def rules() -> None:
    """Rules that choose an ISP (highest priority first, then the most specific match)."""


@rules.command("add")
@click.option(
    "--calling-prefix", default=None, help="Calling numbers starting with this (+3120555)."
)
@click.option("--realm", default=None, help="User-Names in this realm or its subdomains.")
@click.option("--profile", default=None, metavar="KEY=VALUE", help="Subscribers' profile value.")
@click.option("--isp", required=True, help="The ISP the rule chooses.")
@click.option(
    "--priority",
    type=click.IntRange(0, 1_000_000),
    default=100,
    show_default=True,
    help="Higher is tried first.",
)
def rules_add(
    calling_prefix: str | None, realm: str | None, profile: str | None, isp: str, priority: int
) -> None:
    """Add a rule: exactly one of --calling-prefix, --realm, --profile, and the ISP."""
    from vpop.aaa.service import add_rule
    from vpop.core.db import session_scope

    given = {
        kind: value
        for kind, value in (
            ("calling_prefix", calling_prefix),
            ("realm", realm),
            ("profile", profile),
        )
        if value is not None
    }
    if len(given) != 1:
        raise bad_input(
            "give exactly one of --calling-prefix, --realm and --profile", "VPOP-400-AAA-RULE"
        )
    ((kind, match),) = given.items()
    with reported_errors(), session_scope() as session:
        rule = add_rule(session, kind, match, isp, priority=priority, actor=cli_actor())
        rule_id, canonical = rule.id, rule.match
    click.echo(f"rule {rule_id}: {kind} {canonical} -> {isp} (priority {priority})")


@rules.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def rules_list(as_json: bool) -> None:
    """List the rules in the order they are tried."""
    from vpop.aaa.service import aaa_rule_view
    from vpop.aaa.service import rules as stored_rules
    from vpop.core.db import session_scope

    with reported_errors(), session_scope() as session:
        views = [aaa_rule_view(rule) for rule in stored_rules(session)]
    echo_views(
        views,
        as_json=as_json,
        empty="no rules; add one with `vpop aaa rules add --calling-prefix +31 --isp ISP`",
        line=lambda view: (
            f"{view['id']:>5} {view['priority']:>7} {view['kind']:14} {view['match'][:40]:40} "
            f"{view['isp']}"
        ),
    )


@rules.command("remove")
@click.argument("rule_id", metavar="ID", type=click.IntRange(1, 2**31 - 1))
def rules_remove(rule_id: int) -> None:
    """Remove rule ID (see `vpop aaa rules list`)."""
    from vpop.aaa.service import remove_rule
    from vpop.core.db import session_scope

    with reported_errors(), session_scope() as session:
        remove_rule(session, rule_id, actor=cli_actor())
    click.echo(f"rule {rule_id} removed")


@aaa.command("decisions")
@click.option("--subscriber", default=None, help="Only this subscriber's decisions.")
@click.option(
    "--limit", type=click.IntRange(1, 1000), default=20, show_default=True, help="How many."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def decisions(subscriber: str | None, limit: int, as_json: bool) -> None:
    """The latest Access-Request decisions, newest first: outcome, ISP, reason."""
    from vpop.aaa.service import decision_view
    from vpop.aaa.service import decisions as stored_decisions
    from vpop.core import validate
    from vpop.core.db import session_scope

    with reported_errors():
        name = validate.name(subscriber, "--subscriber") if subscriber is not None else None
        with session_scope() as session:
            views = [
                decision_view(found)
                for found in stored_decisions(session, subscriber=name, limit=limit)
            ]
    echo_views(
        views,
        as_json=as_json,
        empty="no decisions",
        line=lambda view: (
            f"{view['at']} {view['decision_id']} {view['outcome']:6} "
            f"{view['subscriber'] or '-':10} {view['isp'] or '-':10} {view['reason']}"
        ),
    )
