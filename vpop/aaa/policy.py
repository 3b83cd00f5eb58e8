"""The Access-Request policy: who asks (the resolver), may they (authentication), which ISP
(the rules), what the NAS is told (the reply per family), and the routing centre told to
follow (an order when the ISP differs from the line's confirmed selection).

Every request ends in one :class:`~vpop.aaa.models.AaaDecision` row with its reason and a
``decision_id`` that travels in ``Class``; every reject is also in the audit log
(``aaa.reject``, actor ``radius``), and an identity conflict as ``aaa.conflict`` with both
identifiers. Rejections and their reasons:

- ``unknown line``: no identifier names a line;
- ``identifiers conflict``: two identifiers name different lines;
- ``line inactive``, ``subscriber suspended``;
- ``wrong NAS``: the line is bound to another NAS (``Line.nas``);
- ``password required`` / ``bad password``: the subscriber has a PAP password and the
  request carries none, or another one;
- ``no ISP``: no rule, selection, profile or default gives one.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vpop.aaa import replies
from vpop.aaa.errors import IdentityConflict, UnknownLine
from vpop.aaa.models import AaaDecision, AaaRule, RadiusClient
from vpop.aaa.resolver import Identifiers, from_radius, realm_of, resolve_by
from vpop.aaa.rules import Facts, pick_rule, rule_view
from vpop.catalogue.service import Isp, Line, Subscriber
from vpop.core import validate
from vpop.core.audit import audit
from vpop.core.db import session_scope
from vpop.core.errors import BadInput, VpopError
from vpop.core.settings import load_settings
from vpop.core.time import iso
from vpop.identity.service import check_password
from vpop.selection.service import Caller, SelectionRequest, submit_selection

log = logging.getLogger(__name__)

#: The requester of orders the routing centre submits (no CoA follows those: the NAS has
#: the ISP already, from the Access-Accept).
REQUESTER = "radius"
_REASON_MAX = 200


@dataclass(frozen=True)
class AuthResult:
    """What :func:`authorize` decided.

    Attributes:
        accept: Access-Accept (True) or Access-Reject.
        reply: the response body in rlm_rest's JSON shape (the endpoint answers 200 with
            it on accept, 401 on reject so that the Reply-Message still reaches the NAS).
        reason: why, in a few words (also in the decision row and, on reject, the audit log).
        decision_id: the decision's id (``vpop-`` and 32 hex digits), in ``Class``.
    """

    accept: bool
    reply: dict[str, Any]
    reason: str
    decision_id: str


class _Reject(Exception):
    """A rejection on the way through :func:`_decide`."""

    def __init__(self, reason: str, line: Line | None = None, **details: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line
        self.details = details


@dataclass(frozen=True)
class _Choice:
    isp: str
    reason: str


def new_decision_id() -> str:
    """A fresh decision id: ``vpop-`` and a random UUID's 32 hex digits."""
    return "vpop-" + uuid.uuid4().hex


def _first(attributes: dict[str, list[str]], name: str) -> str | None:
    values = attributes.get(name)
    return values[0] if values else None


def family_of(session: Session, nas: str | None) -> str:
    """The reply family of NAS ``nas`` (``generic`` for an unknown or unnamed NAS)."""
    client = session.get(RadiusClient, nas) if nas else None
    family = client.family if client is not None else "generic"
    return family if family in replies.FAMILIES else "generic"


def choose_isp(session: Session, line: Line, identifiers: Identifiers) -> _Choice | None:
    """The ISP for ``line``: a rule, the confirmed selection, the profile, the default.

    The order is documented in :mod:`vpop.aaa.rules`; the reason names the step (and the
    rule's id).
    """
    subscriber = line.subscriber
    facts = Facts(
        calling_number=line.calling_number or identifiers.calling_number,
        realm=realm_of(identifiers.user_name) or realm_of(line.user_name),
        profile=subscriber.profile or {},
    )
    rule = pick_rule((rule_view(r) for r in session.scalars(select(AaaRule))), facts)
    if rule is not None:
        return _Choice(rule.isp, f"rule {rule.id} ({rule.kind} {rule.match})")
    if line.selection is not None:
        return _Choice(line.selection.isp_id, "confirmed selection")
    preferred = (subscriber.profile or {}).get("isp")
    if isinstance(preferred, str) and session.get(Isp, preferred) is not None:
        return _Choice(preferred, "profile preference")
    default = load_settings().radius_default_isp
    if default and session.get(Isp, default) is not None:
        return _Choice(default, "default ISP")
    return None


def _authenticate(
    line: Line, subscriber: Subscriber, nas: str | None, password: str | None
) -> None:
    if not line.active:
        raise _Reject("line inactive", line)
    if subscriber.suspended_at is not None:
        raise _Reject(f"subscriber suspended since {iso(subscriber.suspended_at)}", line)
    if line.nas is not None and line.nas != nas:
        raise _Reject(f"wrong NAS: the line is bound to {line.nas}, asked by {nas or '-'}", line)
    if subscriber.password_hash is not None:
        if password is None:
            raise _Reject("password required (PAP)", line)
        if not check_password(password, subscriber.password_hash):
            raise _Reject("bad password", line)


def _decide(
    session: Session, attributes: dict[str, list[str]], nas: str | None
) -> tuple[Line, Identifiers, str, _Choice]:
    identifiers, unusable = from_radius(attributes)
    try:
        line, kind = resolve_by(session, identifiers, nas=nas)
    except IdentityConflict as err:
        raise _Reject(err.message, None, conflict=err.details()) from err
    except UnknownLine as err:
        raise _Reject(f"unknown line: {err.message}", None, unusable=unusable) from err
    _authenticate(line, line.subscriber, nas, _first(attributes, "User-Password"))
    choice = choose_isp(session, line, identifiers)
    if choice is None:
        raise _Reject("no ISP: no rule, selection, profile or default chooses one", line)
    return line, identifiers, kind, choice


def authorize(
    attributes: dict[str, list[str]], *, nas: str | None, url: str | None = None
) -> AuthResult:
    """Decide an Access-Request: accept with the ISP's attributes, or reject saying why.

    The decision (and, on reject, an audit entry) is committed before this returns. On an
    accept whose ISP differs from the line's confirmed selection, an order moves the line
    (requester ``radius``, idempotency key = the decision id) and its id is stored on the
    decision.

    Args:
        attributes: rlm_rest's request, attribute name -> values (octets as ``0x`` hex).
        nas: the asking NAS (its RADIUS client name), or None when unknown.
        url: the database URL (default: the settings').

    Returns:
        The result, with the response body in rlm_rest's JSON shape.

    Raises:
        BadInput: ``nas`` is not one printable line of at most 32 characters.
    """
    decision_id = new_decision_id()
    settings = load_settings()
    nas = None if nas is None else validate.text(nas, "nas", 32)
    with session_scope(url) as session:
        try:
            line, identifiers, kind, choice = _decide(session, attributes, nas)
        except _Reject as rejected:
            return _rejected(session, decision_id, nas, attributes, rejected)
        family = family_of(session, nas)
        try:
            reply = replies.accept(family, choice.isp, decision_id, settings.radius_interim_seconds)
        except BadInput as err:
            return _rejected(
                session, decision_id, nas, attributes, _Reject(f"bad reply: {err.message}", line)
            )
        reason = f"line found by {kind}; ISP by {choice.reason}"[:_REASON_MAX]
        current = line.selection.isp_id if line.selection is not None else None
        session.add(
            AaaDecision(
                decision_id=decision_id,
                nas=nas,
                line_id=line.id,
                subscriber_id=line.subscriber_id,
                isp_id=choice.isp,
                outcome="accept",
                reason=reason,
                identifiers=identifiers.as_dict(),
            )
        )
        request = _selection_request(line, choice.isp) if current != choice.isp else None
    if request is not None:
        _route(request, decision_id, url)
    log.info("accept %s line %s isp %s: %s", decision_id, line.id, choice.isp, reason)
    return AuthResult(accept=True, reply=reply, reason=reason, decision_id=decision_id)


def _rejected(
    session: Session,
    decision_id: str,
    nas: str | None,
    attributes: dict[str, list[str]],
    rejected: _Reject,
) -> AuthResult:
    line = rejected.line
    identifiers, _ = from_radius(attributes)
    reason = rejected.reason[:_REASON_MAX]
    session.add(
        AaaDecision(
            decision_id=decision_id,
            nas=nas,
            line_id=line.id if line is not None else None,
            subscriber_id=line.subscriber_id if line is not None else None,
            outcome="reject",
            reason=reason,
            identifiers=identifiers.as_dict(),
        )
    )
    obj = f"line:{line.id}" if line is not None else f"decision:{decision_id}"
    if "conflict" in rejected.details:
        audit(session, REQUESTER, "aaa.conflict", obj, decision=decision_id, **rejected.details)
    audit(
        session,
        REQUESTER,
        "aaa.reject",
        obj,
        decision=decision_id,
        nas=nas,
        reason=reason,
        identifiers=identifiers.as_dict(),
        **{k: v for k, v in rejected.details.items() if k != "conflict"},
    )
    log.info("reject %s: %s", decision_id, reason)
    return AuthResult(
        accept=False, reply=replies.reject(reason), reason=reason, decision_id=decision_id
    )


def _selection_request(line: Line, isp: str) -> SelectionRequest | None:
    """A selection request naming exactly ``line`` (None when no identifier can)."""
    if line.calling_number is not None:
        return SelectionRequest(isp=isp, calling_number=line.calling_number)
    if line.circuit_id is not None:
        return SelectionRequest(isp=isp, circuit_id=line.circuit_id)
    if line.access_id is not None:
        return SelectionRequest(isp=isp, access_id=line.access_id)
    first = line.subscriber.lines[0] if line.subscriber.lines else None
    if first is not None and first.id == line.id:
        return SelectionRequest(isp=isp, subscriber=line.subscriber_id)
    return None


def _route(request: SelectionRequest | None, decision_id: str, url: str | None) -> None:
    """Submit the order that binds the line to the chosen ISP; store its id on the decision.

    A failure here does not undo the accept (the NAS binds the session anyway); it is
    logged and audited, and the next Access-Request tries again.
    """
    with session_scope(url) as session:
        decision = session.scalars(
            select(AaaDecision).where(AaaDecision.decision_id == decision_id)
        ).one()
        line_id = decision.line_id
    if request is None:
        log.warning(
            "decision %s: line %s has no identifier an order can name", decision_id, line_id
        )
        return
    try:
        order, _created = submit_selection(
            request, Caller(name=REQUESTER, role="admin"), idempotency_key=decision_id, url=url
        )
    except VpopError as err:
        log.warning("decision %s: no order for line %s: %s", decision_id, line_id, err.message)
        with session_scope(url) as session:
            audit(
                session,
                REQUESTER,
                "aaa.order_failed",
                f"line:{line_id}",
                decision=decision_id,
                code=err.code,
                error=err.message,
            )
        return
    with session_scope(url) as session:
        decision = session.scalars(
            select(AaaDecision).where(AaaDecision.decision_id == decision_id)
        ).one()
        decision.order_id = order.id


def post_auth(attributes: dict[str, list[str]], *, nas: str | None, url: str | None = None) -> None:
    """Post-Auth: nothing to store; the decision was committed by :func:`authorize`.

    FreeRADIUS calls it after every Access-Accept and Access-Reject it sends; vpop logs it
    so that a request FreeRADIUS rejected on its own (vpop unreachable) is visible.

    Args:
        attributes: rlm_rest's request, attribute name -> values.
        nas: the asking NAS.
        url: the database URL (unused; kept for the endpoints' one signature).
    """
    log.debug("post-auth from %s: %s", nas or "-", _first(attributes, "Calling-Station-Id") or "-")


def decision_view(decision: AaaDecision) -> dict[str, Any]:
    """A decision as JSON (CLI, API, pages)."""
    return {
        "decision_id": decision.decision_id,
        "at": iso(decision.at),
        "nas": decision.nas,
        "line": decision.line_id,
        "subscriber": decision.subscriber_id,
        "isp": decision.isp_id,
        "outcome": decision.outcome,
        "reason": decision.reason,
        "identifiers": decision.identifiers,
        "order": decision.order_id,
    }


def decisions(
    session: Session, *, subscriber: str | None = None, limit: int = 50
) -> list[AaaDecision]:
    """The latest decisions, newest first, optionally of one subscriber.

    Raises:
        BadInput: a limit outside 1-1000.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise BadInput("limit: expected 1-1000", code="VPOP-400-RANGE")
    stmt = select(AaaDecision).order_by(AaaDecision.at.desc(), AaaDecision.id.desc())
    if subscriber is not None:
        stmt = stmt.where(AaaDecision.subscriber_id == subscriber)
    return list(session.scalars(stmt.limit(limit)))
