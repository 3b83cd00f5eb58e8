"""The NOC's AAA pages: RADIUS sessions (live and past), the decision log, the rules that
choose an ISP, and the NAS clients.

Every signed-in NOC user (``noc`` or ``admin``) reads them and adds or removes rules, the
same as ``vpop aaa rules add|remove``: each action is a POST with the session's CSRF token,
audited under ``user:<name>`` by the AAA domain (:func:`vpop.aaa.service.add_rule`,
:func:`vpop.aaa.service.remove_rule`). NAS clients are listed without their secrets; they are
added and removed with ``vpop radius client`` only. The pages show the API's views
(:func:`vpop.aaa.service.session_view`, :func:`vpop.aaa.service.decision_view`,
:func:`vpop.aaa.service.aaa_rule_view`), so they name things as the API does.
"""

from __future__ import annotations

from flask import Response, flash, make_response, redirect, render_template, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response as BaseResponse

from vpop.aaa import service as aaa
from vpop.aaa.service import AaaDecision, RadiusSession
from vpop.catalogue.service import Isp
from vpop.core import validate
from vpop.core.db import session_scope
from vpop.core.errors import BadInput, NotFound
from webhooks.api.aaa import OUTCOMES, client_view
from webhooks.api.common import MAX_ID
from webhooks.pages import csrf
from webhooks.pages.helpers import check_form_fields, single_form_value
from webhooks.pages.noc_common import bp, current_actor, database_url

PAGE_SIZE = 100

RULE_FIELDS = ("csrf_token", "kind", "match", "isp", "priority")


@bp.get("/radius/sessions")
def radius_sessions() -> Response:
    """RADIUS sessions, the latest started first; filter by subscriber, ISP, NAS, live."""
    subscriber = _arg_name("subscriber")
    isp = _arg_name("isp")
    nas = _arg_name("nas")
    state = _arg_choice("state", ("live", "ended"))
    stmt = (
        select(RadiusSession)
        .order_by(RadiusSession.started_at.desc(), RadiusSession.id.desc())
        .limit(PAGE_SIZE)
    )
    if subscriber is not None:
        stmt = stmt.where(RadiusSession.subscriber_id == subscriber)
    if isp is not None:
        stmt = stmt.where(RadiusSession.isp_id == isp)
    if nas is not None:
        stmt = stmt.where(RadiusSession.nas == nas)
    if state is not None:
        live = RadiusSession.stopped_at.is_(None)
        stmt = stmt.where(live if state == "live" else ~live)
    with session_scope(database_url()) as db:
        rows = [aaa.session_view(row) for row in db.scalars(stmt)]
        isps = _isp_names(db)
        clients = [client.name for client in aaa.list_radius_clients(db)]
    return make_response(
        render_template(
            "noc/aaa_sessions.html",
            sessions=rows,
            isps=isps,
            clients=clients,
            subscriber=subscriber or "",
            isp=isp,
            nas=nas,
            state=state,
            full=len(rows) == PAGE_SIZE,
        )
    )


@bp.get("/aaa/decisions")
def aaa_decisions() -> Response:
    """The decision log, newest first; filter by subscriber, ISP and outcome."""
    subscriber = _arg_name("subscriber")
    isp = _arg_name("isp")
    outcome = _arg_choice("outcome", OUTCOMES)
    stmt = select(AaaDecision).order_by(AaaDecision.at.desc(), AaaDecision.id.desc())
    if subscriber is not None:
        stmt = stmt.where(AaaDecision.subscriber_id == subscriber)
    if isp is not None:
        stmt = stmt.where(AaaDecision.isp_id == isp)
    if outcome is not None:
        stmt = stmt.where(AaaDecision.outcome == outcome)
    with session_scope(database_url()) as db:
        rows = [aaa.decision_view(row) for row in db.scalars(stmt.limit(PAGE_SIZE))]
        isps = _isp_names(db)
    return make_response(
        render_template(
            "noc/aaa_decisions.html",
            decisions=rows,
            isps=isps,
            subscriber=subscriber or "",
            isp=isp,
            outcome=outcome,
            outcomes=OUTCOMES,
            full=len(rows) == PAGE_SIZE,
        )
    )


@bp.get("/aaa/rules")
def aaa_rules() -> Response:
    """The rules in the order they are tried, with the forms to add and remove them."""
    return _rules_page(None, {}, 200)


@bp.post("/aaa/rules")
def aaa_rule_add() -> Response | BaseResponse:
    """Add a rule from the form; a refused one shows the page again with the reason."""
    csrf.protect()
    check_form_fields(RULE_FIELDS)
    form = {name: single_form_value(name) or "" for name in RULE_FIELDS[1:]}
    try:
        priority = _priority(form["priority"])
        with session_scope(database_url()) as db:
            rule = aaa.add_rule(
                db,
                form["kind"],
                form["match"],
                form["isp"],
                priority=priority,
                actor=current_actor(),
            )
            rule_id = rule.id
    except (BadInput, NotFound) as err:
        return _rules_page(err.message, form, err.status)
    flash(f"Rule {rule_id} is added: {form['kind']} {form['match']} -> {form['isp']}.")
    return redirect(url_for("noc.aaa_rules"), code=303)


@bp.post("/aaa/rules/<int:rule_id>/remove")
def aaa_rule_remove(rule_id: int) -> BaseResponse:
    """Remove a rule."""
    csrf.protect()
    check_form_fields(("csrf_token",))
    if rule_id > MAX_ID:
        raise aaa.UnknownRule(f"no AAA rule has id {rule_id}")
    with session_scope(database_url()) as db:
        aaa.remove_rule(db, rule_id, actor=current_actor())
    flash(f"Rule {rule_id} is removed.")
    return redirect(url_for("noc.aaa_rules"), code=303)


@bp.get("/radius/clients")
def radius_clients() -> Response:
    """The NAS clients by name, never their secrets."""
    with session_scope(database_url()) as db:
        rows = [client_view(client) for client in aaa.list_radius_clients(db)]
    return make_response(render_template("noc/aaa_clients.html", clients=rows))


def _rules_page(error: str | None, form: dict[str, str], status: int) -> Response:
    with session_scope(database_url()) as db:
        rows = [aaa.aaa_rule_view(rule) for rule in aaa.rules(db)]
        isps = _isp_names(db)
    page = render_template(
        "noc/aaa_rules.html",
        rules=rows,
        isps=isps,
        kinds=aaa.schemas.RULE_KINDS,
        error=error,
        form=form,
    )
    return make_response(page, status)


def _priority(raw: str) -> int:
    if raw == "":
        return 100
    if not raw.isascii() or not raw.isdigit() or len(raw) > 7:
        raise BadInput("priority: a whole number from 0 to 1000000", code="VPOP-400-TYPE")
    return int(raw)


def _isp_names(db: Session) -> dict[str, str]:
    return {isp: name for isp, name in db.execute(select(Isp.id, Isp.name).order_by(Isp.id))}


def _arg(name: str) -> str | None:
    values = request.args.getlist(name)
    if len(values) > 1:
        raise BadInput(f"{name} is given more than once", code="VPOP-400-TYPE")
    return values[0] if values and values[0] != "" else None


def _arg_name(name: str) -> str | None:
    raw = _arg(name)
    return None if raw is None else validate.name(raw, name)


def _arg_choice(name: str, choices: tuple[str, ...]) -> str | None:
    raw = _arg(name)
    return None if raw is None else validate.one_of(raw, name, choices)
