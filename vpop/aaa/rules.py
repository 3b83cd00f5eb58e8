"""The rules that choose an ISP for a line, and the order in which everything else is asked.

The ISP of an Access-Accept comes from the first of these that gives one:

1. an explicit rule (:class:`~vpop.aaa.models.AaaRule`) that matches: the highest
   ``priority`` first; among equal priorities the most specific match (the longest
   ``match`` string: ``+3120555`` before ``+31``, ``a.example.net`` before ``example.net``);
   then ``calling_prefix`` before ``realm`` before ``profile``; then the oldest rule (lowest
   id). The order is total, so the same rules always give the same answer;
2. the line's confirmed selection (what its router uses now);
3. the subscriber's profile preference (``profile["isp"]``);
4. the default ISP (``VPOP_RADIUS_DEFAULT_ISP``).

None of them: the request is rejected. An ISP named by 2-4 that does not exist is skipped.

Rule kinds and what they match:

- ``calling_prefix``: the line's calling number (E.164) starts with ``match`` (``+3120555``);
- ``realm``: the realm of the User-Name is ``match`` or a subdomain of it;
- ``profile``: ``key=value``; the subscriber's ``profile[key]`` equals ``value`` (a string
  compares as it is, anything else as its JSON text: ``tier=gold``, ``business=true``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vpop.aaa.errors import BadRule, UnknownRule
from vpop.aaa.models import AaaRule
from vpop.catalogue.service import Isp
from vpop.core import validate
from vpop.core.audit import audit
from vpop.core.errors import BadInput, NotFound
from vpop.core.time import iso

KINDS = ("calling_prefix", "realm", "profile")
PRIORITY_MIN, PRIORITY_MAX, PRIORITY_DEFAULT = 0, 1_000_000, 100
_CALLING_PREFIX = re.compile(r"\+[1-9][0-9]{0,14}", re.ASCII)
_REALM = re.compile(
    r"(?=.{1,100}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*",
    re.ASCII,
)
_PROFILE_KEY = re.compile(r"[a-z][a-z0-9_]{0,31}", re.ASCII)


@dataclass(frozen=True)
class RuleView:
    """A rule as the choice reads it (a plain value, so the order can be tested alone)."""

    id: int
    kind: str
    match: str
    isp: str
    priority: int


@dataclass(frozen=True)
class Facts:
    """What the rules look at: the calling number, the realm, the subscriber's profile."""

    calling_number: str | None = None
    realm: str | None = None
    profile: Mapping[str, Any] | None = None


def rule_match(kind: object, match: object) -> str:
    """Validate and canonicalise a rule's match for its kind.

    Args:
        kind: ``calling_prefix``, ``realm`` or ``profile``.
        match: ``+`` and 1-15 digits; a domain name (lower-cased); ``key=value``.

    Returns:
        The canonical match.

    Raises:
        BadRule: for an unknown kind or a malformed match.
    """
    kind_ = validate.one_of(kind, "kind", KINDS)
    if not isinstance(match, str):
        raise BadRule(f"{kind_}: expected a string")
    if kind_ == "calling_prefix":
        if not _CALLING_PREFIX.fullmatch(match):
            raise BadRule(
                f"calling_prefix: {match!r} is not the start of an E.164 number; write '+', "
                "the country code and any further digits, as in +3120555"
            )
        return match
    if kind_ == "realm":
        realm = match.lower()
        if not _REALM.fullmatch(realm):
            raise BadRule(f"realm: {match!r} is not a domain name, as in isp-c.example")
        return realm
    key, equals, value = match.partition("=")
    if not equals or not _PROFILE_KEY.fullmatch(key):
        raise BadRule(
            f"profile: {match!r} is not KEY=VALUE with a key of a-z, 0-9 and '_' (as in tier=gold)"
        )
    try:
        validate.text(value, "profile value", 100 - len(key) - 1)
    except BadInput as err:
        raise BadRule(err.message) from err
    return match


def _profile_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def matches(rule: RuleView, facts: Facts) -> bool:
    """True when ``rule`` applies to a line with these facts."""
    if rule.kind == "calling_prefix":
        return facts.calling_number is not None and facts.calling_number.startswith(rule.match)
    if rule.kind == "realm":
        realm = facts.realm
        return realm is not None and (realm == rule.match or realm.endswith("." + rule.match))
    if rule.kind == "profile" and facts.profile is not None:
        key, _, value = rule.match.partition("=")
        return key in facts.profile and _profile_text(facts.profile[key]) == value
    return False


def order_key(rule: RuleView) -> tuple[int, int, int, int]:
    """The sort key of the rule order (the module docstring): smaller comes first."""
    return (-rule.priority, -len(rule.match), KINDS.index(rule.kind), rule.id)


def pick_rule(rules: Iterable[RuleView], facts: Facts) -> RuleView | None:
    """The rule that decides for these facts, or None when no rule matches."""
    candidates = [rule for rule in rules if matches(rule, facts)]
    return min(candidates, key=order_key) if candidates else None


def rule_view(rule: AaaRule) -> RuleView:
    """A stored rule as a :class:`RuleView`."""
    return RuleView(
        id=rule.id, kind=rule.kind, match=rule.match, isp=rule.isp_id, priority=rule.priority
    )


def rules(session: Session) -> list[AaaRule]:
    """Every rule, in the order they are tried."""
    stored = list(session.scalars(select(AaaRule)))
    return sorted(stored, key=lambda rule: order_key(rule_view(rule)))


def add_rule(
    session: Session,
    kind: str,
    match: str,
    isp: str,
    *,
    priority: int = PRIORITY_DEFAULT,
    actor: str,
) -> AaaRule:
    """Add a rule (validated, audited as ``aaa_rule.create``).

    Args:
        session: an open session; the caller's transaction commits.
        kind: ``calling_prefix``, ``realm`` or ``profile``.
        match: what the rule matches (:func:`rule_match`).
        isp: the ISP it chooses.
        priority: 0-1000000; higher is tried first.
        actor: who adds it, for the audit log.

    Raises:
        BadRule: a malformed match or a priority out of range.
        NotFound: no such ISP (``VPOP-404-ISP``).
    """
    canonical = rule_match(kind, match)
    isp_id = validate.name(isp, "isp")
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise BadRule("priority: expected an integer")
    if not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise BadRule(f"priority: {priority} is outside {PRIORITY_MIN}-{PRIORITY_MAX}")
    if session.get(Isp, isp_id) is None:
        raise NotFound(f"unknown ISP {isp_id!r}", code="VPOP-404-ISP")
    rule = AaaRule(
        kind=kind, match=canonical, isp_id=isp_id, priority=priority, created_by=actor[:100]
    )
    session.add(rule)
    session.flush()
    audit(
        session,
        actor,
        "aaa_rule.create",
        f"aaa_rule:{rule.id}",
        kind=kind,
        match=canonical,
        isp=isp_id,
        priority=priority,
    )
    return rule


def remove_rule(session: Session, rule_id: int, *, actor: str) -> AaaRule:
    """Remove rule ``rule_id`` (audited as ``aaa_rule.remove`` with what it was).

    Raises:
        UnknownRule: no rule has that id.
    """
    rule = session.get(AaaRule, rule_id)
    if rule is None:
        raise UnknownRule(f"no AAA rule has id {rule_id}; `vpop aaa rules list` shows them")
    audit(
        session,
        actor,
        "aaa_rule.remove",
        f"aaa_rule:{rule.id}",
        kind=rule.kind,
        match=rule.match,
        isp=rule.isp_id,
        priority=rule.priority,
    )
    session.delete(rule)
    return rule


def aaa_rule_view(rule: AaaRule) -> dict[str, Any]:
    """A rule as JSON (CLI, API)."""
    return {
        "id": rule.id,
        "kind": rule.kind,
        "match": rule.match,
        "isp": rule.isp_id,
        "priority": rule.priority,
        "created_at": iso(rule.created_at),
        "created_by": rule.created_by,
    }
