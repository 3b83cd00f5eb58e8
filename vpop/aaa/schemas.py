"""The AAA domain's JSON bodies: the rule request, and rules, decisions, RADIUS sessions and
NAS clients as the API shows them.

:class:`RuleRequest` is what ``POST /api/v1/aaa/rules`` accepts: its kind from
:data:`vpop.aaa.rules.KINDS`, its priority in the rules' range; the match is checked per kind
by :func:`vpop.aaa.rules.rule_match` when the rule is added. The response models describe
what the domain's views return (``session_view``, ``decision_view``, ``aaa_rule_view``);
the API's tests hold every response against their JSON schemas (through the OpenAPI
document).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from vpop.aaa.rules import KINDS, PRIORITY_DEFAULT, PRIORITY_MAX, PRIORITY_MIN
from vpop.core import validate
from vpop.core.schemas import NAME_PATTERN, Bounds, Canonical, Request, Strict

#: The kinds of rule, in the order a tie is broken (:data:`vpop.aaa.rules.KINDS`).
RULE_KINDS: tuple[str, ...] = KINDS


def _kind(value: object, field: str) -> str:
    return validate.one_of(value, field, KINDS)


def _match(value: object, field: str) -> str:
    return validate.text(value, field, 100)


class RuleRequest(Request):
    """Add a rule: lines it matches get ``isp`` in their Access-Accept.

    ``calling_prefix`` matches the start of the line's calling number (``+3120555``),
    ``realm`` the User-Name's realm or a subdomain of it (``isp-c.example``), ``profile`` a
    subscriber profile's ``key=value`` (``tier=gold``). Higher priorities are tried first.
    """

    missing_message = "missing field(s) {missing}; required: {required}"
    missing_first = True

    kind: Annotated[str, Canonical(_kind, enum=list(KINDS), examples=["calling_prefix"])]
    match: Annotated[
        str, Canonical(_match, maxLength=100, examples=["+3120555", "isp-c.example", "tier=gold"])
    ]
    isp: Annotated[str, Canonical(validate.name, pattern=NAME_PATTERN, examples=["isp-c"])]
    priority: Annotated[int, Bounds(PRIORITY_MIN, PRIORITY_MAX, "higher is tried first")] = (
        PRIORITY_DEFAULT
    )


class Rule(Strict):
    """An explicit choice of ISP for the lines it matches."""

    id: int
    kind: Literal["calling_prefix", "realm", "profile"]
    match: str
    isp: str
    priority: int
    created_at: datetime | None
    created_by: str


class RuleList(Strict):
    """The rules, in the order they are tried."""

    rules: list[Rule]


class Decision(Strict):
    """One Access-Request answered: accept or reject, the ISP and why."""

    decision_id: Annotated[str, Field(description="the id that travels in Class")]
    at: datetime
    nas: str | None
    line: int | None
    subscriber: str | None
    isp: str | None
    outcome: Literal["accept", "reject"]
    reason: str
    identifiers: Annotated[dict[str, Any], Field(description="what the request identified")]
    order: Annotated[int | None, Field(description="the order that bound the line, if any")]


class DecisionList(Strict):
    """Decisions, newest first."""

    decisions: list[Decision]


class RadiusSession(Strict):
    """An accounting session as the NAS reports it; counters are cumulative (Gigawords
    folded in). ``stopped_at`` is null while the session is live."""

    id: int
    nas: str
    acct_session_id: str
    decision_id: Annotated[str, Field(description="the decision id from Class; may be empty")]
    line: int | None
    subscriber: str | None
    isp: str | None
    user_name: str | None
    framed_ip: str | None
    started_at: datetime
    updated_at: datetime
    stopped_at: datetime | None
    stop_cause: str | None
    closed_by: Annotated[str | None, Field(description="stop, nas-off or stale")]
    session_time: Annotated[int, Field(description="seconds")]
    input_octets: int
    output_octets: int
    input_packets: int
    output_packets: int


class RadiusSessionList(Strict):
    """RADIUS sessions, the latest started first."""

    sessions: list[RadiusSession]


class RadiusClient(Strict):
    """A NAS allowed to ask; its shared secret is never shown."""

    name: str
    address: str
    family: Annotated[str, Field(description="the attribute family of its replies")]
    created_at: datetime | None


class RadiusClientList(Strict):
    """The NAS clients, by name."""

    clients: list[RadiusClient]
