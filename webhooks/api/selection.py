"""The selection side of the JSON API: selections (orders to move a line), orders and runs.

``POST /selections`` authenticates (a bearer token or a signed webhook), parses its body
into :class:`~vpop.selection.schemas.SelectionBody` and records the order; the worker
applies it later. An ISP token asking for a line that is not its customer gets a
``PENDING_CONSENT`` order and a signed ``consent_url`` to send the subscriber
(:mod:`vpop.selection.consent`).

Who reads what (docs/tenancy.md): operators (admin, noc) read every order with the run's
whole diff; an ISP token reads the orders its ISP requested, a portal token the orders it
requested, both with only that order's line's part of the diff; any other order is "not
there" (404, the same answer as for an id that does not exist). Runs are for operators
only (403 for everyone else, whatever the id): they show every ISP's configuration.
"""

from __future__ import annotations

import re
import time
from typing import Any

from flask import Response, current_app, jsonify, request
from sqlalchemy import select

from vpop.core import validate
from vpop.core.db import session_scope
from vpop.core.errors import NotFound
from vpop.core.settings import load_settings
from vpop.core.time import iso, utcnow
from vpop.core.wake import FINISHED, Waiter
from vpop.identity.service import token_isp
from vpop.selection.service import (
    Caller,
    Order,
    OrderStatus,
    Run,
    SelectionBody,
    consent_url,
    expire_consents,
    order_view,
    read_order,
    submit_selection,
)
from webhooks.api.common import (
    MAX_ID,
    OPERATORS,
    bp,
    idempotency_key,
    json_object,
    limit_arg,
    operators_only,
    query_args,
)
from webhooks.auth import authenticate

RUNS_DEFAULT_LIMIT = 50


RUNS_MAX_LIMIT = 500


@bp.post("/selections")
def create_selection() -> tuple[dict[str, Any], int, dict[str, str]]:
    """Accept an order to move a line to an ISP; the worker applies it later."""
    who = authenticate(allow_webhook=True)
    key = who.webhook_id if who.webhook_id is not None else idempotency_key()
    req = SelectionBody.parse(json_object()).request()
    order, created = submit_selection(req, who.caller, key, url=current_app.config["DATABASE_URL"])
    headers = {"Location": f"{request.script_root}/api/v1/orders/{order.id}"}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    body: dict[str, Any] = {"order": order.id, "status": order.status}
    if order.status == OrderStatus.PENDING_CONSENT:
        body["consent_url"] = consent_url(
            order.id, public_url(), key=current_app.config["SECRET_KEY"]
        )
        body["consent_expires_at"] = iso(order.consent_expires_at)
    return body, 202, headers


def public_url() -> str:
    """Where subscribers reach the portal: ``PUBLIC_URL`` in the app's config, else
    ``VPOP_PUBLIC_URL`` (:attr:`vpop.core.settings.Settings.public_url`)."""
    configured = current_app.config.get("PUBLIC_URL")
    return str(configured) if configured else load_settings().public_url


@bp.get("/orders/<int:order_id>")
def get_order(order_id: int) -> Response | dict[str, Any]:
    """One order and where it stands (operators see the run's whole diff, others their line's).

    With ``Prefer: wait=N`` (RFC 7240; 1..60 seconds) the answer waits until the order is
    final or N seconds passed, and says ``Preference-Applied: wait=N``: a client learns the
    end of its order without polling (the worker's wake-up on the ``finished`` channel ends
    the wait; :data:`WAIT_RECHECK_SECONDS` is only the safety net).
    """
    caller = authenticate(allow_webhook=False).caller
    wait = prefer_wait(request.headers.getlist("Prefer"))
    deadline = time.monotonic() + (wait or 0)
    while True:
        seen = _finished.generation() if wait else 0
        view = _read_order(caller, order_id)
        remaining = deadline - time.monotonic()
        if not wait or view["final"] or remaining <= 0:
            break
        _finished.wait(seen, min(remaining, WAIT_RECHECK_SECONDS))
    if not wait:
        return view
    response = jsonify(view)
    response.headers["Preference-Applied"] = f"wait={wait}"
    return response


def _read_order(caller: Caller, order_id: int) -> dict[str, Any]:
    url = current_app.config["DATABASE_URL"]
    for attempt in range(2):  # a pending order past its time is expired first, then read again
        order = read_order(order_id, url) if order_id <= MAX_ID else None
        if order is None or not _may_read_order(url, caller, order):
            # not yours and not there are one answer: order ids are not secret, orders are
            raise NotFound(f"unknown order {order_id}", code="VPOP-404-ORDER")
        overdue = (
            order.status == OrderStatus.PENDING_CONSENT
            and order.consent_expires_at is not None
            and order.consent_expires_at <= utcnow()
        )
        if not overdue or attempt:
            return order_view(order, whole_diff=caller.role in OPERATORS)
        expire_consents(url, order_ids=[order_id])
    raise AssertionError("unreachable: the second read returns")


#: The longest ``Prefer: wait`` honoured, in seconds (a larger one is cut to this).
MAX_WAIT_SECONDS = 60

#: While a long-poll waits, the order is read again at least this often (in case a wake-up
#: was lost: a worker on another machine sends none).
WAIT_RECHECK_SECONDS = 1.0

_WAIT = re.compile(r"\s*wait\s*=\s*([0-9]{1,6})\s*")

_finished = Waiter(FINISHED)


def prefer_wait(values: list[str]) -> int | None:
    """The seconds of a ``Prefer: wait=N`` preference (capped at :data:`MAX_WAIT_SECONDS`),
    or None when there is none (or it is 0)."""
    for value in values:
        for preference in value.split(","):
            match = _WAIT.fullmatch(preference.split(";")[0])
            if match and int(match.group(1)) > 0:
                return min(int(match.group(1)), MAX_WAIT_SECONDS)
    return None


@bp.get("/runs")
def list_runs() -> dict[str, Any]:
    """The newest runs first, optionally for one router (operators only)."""
    operators_only(authenticate(allow_webhook=False).caller)
    limit, router = _runs_query()
    stmt = select(Run).order_by(Run.id.desc()).limit(limit)
    if router is not None:
        stmt = stmt.where(Run.router == router)
    with session_scope(current_app.config["DATABASE_URL"]) as session:
        return {"runs": [run_view(run) for run in session.scalars(stmt)]}


@bp.get("/runs/<int:run_id>")
def get_run(run_id: int) -> dict[str, Any]:
    """One run: its diff, per-host results and timings (operators only)."""
    operators_only(authenticate(allow_webhook=False).caller)
    with session_scope(current_app.config["DATABASE_URL"]) as session:
        run = session.get(Run, run_id) if run_id <= MAX_ID else None
        if run is None:
            raise NotFound(f"unknown run {run_id}", code="VPOP-404-RUN")
        return run_view(run)


def run_view(run: Run) -> dict[str, Any]:
    """The public JSON shape of a run (:class:`~vpop.selection.schemas.Run`)."""
    return {
        "run": run.id,
        "router": run.router,
        "kind": run.kind,
        "trigger": run.trigger,
        "requester": run.requester,
        "dry_run": run.dry_run,
        "status": run.status,
        "diff": run.diff,
        "result": run.result,
        "timings": run.timings,
        "error": run.error,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }


def _may_read_order(url: str, caller: Caller, order: Order) -> bool:
    """Operators read every order; a portal token the orders it requested; an ISP token the
    orders its ISP requested (with any of its tokens)."""
    if caller.role in OPERATORS or order.requester == caller.name:
        return True
    if caller.role != "isp":
        return False
    token_id = order.requester.removeprefix("token:")
    if not token_id.isdigit() or int(token_id) > MAX_ID:
        return False
    isp = token_isp(url, int(token_id))
    return isp is not None and isp == caller.isp


def _runs_query() -> tuple[int, str | None]:
    args = query_args(("limit", "router"))
    limit = limit_arg(args.get("limit"), RUNS_DEFAULT_LIMIT, RUNS_MAX_LIMIT)
    router = validate.name(args["router"], "router") if "router" in args else None
    return limit, router
