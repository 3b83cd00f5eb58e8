"""The NOC pages' blueprint and what every NOC page shares: sign-in required, the actor.

Its routes live in :mod:`webhooks.pages.noc` (orders, runs, leases, audit) and
:mod:`webhooks.pages.noc_login` (sign-in and sign-out) and :mod:`webhooks.pages.noc_admin`
(users and tokens, for admins).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import (
    Blueprint,
    current_app,
    g,
    redirect,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response as BaseResponse

from vpop.core.db import session_scope
from vpop.identity.service import session_user
from vpop.selection.service import (
    Caller,
)
from webhooks.pages.helpers import (
    security_headers,
)
from webhooks.problems import Problem

bp = Blueprint("noc", __name__, url_prefix="/noc")
bp.after_request(security_headers)


SESSION_USER = "user"

SESSION_SINCE = "since"  # when the session signed in (a POSIX time)


PUBLIC_ENDPOINTS = ("noc.login_form", "noc.login")


@bp.before_request
def require_login() -> BaseResponse | None:
    """Let only signed-in, enabled ``noc``/``admin`` users past the sign-in form.

    The user is looked up on every request (:func:`vpop.identity.service.session_user`), so
    disabling a user or resetting their password ends their sessions at once.
    """
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    username = session.get(SESSION_USER)
    since = session.get(SESSION_SINCE)
    user = None
    if isinstance(username, str) and isinstance(since, int | float):
        with session_scope(current_app.config["DATABASE_URL"]) as db:
            found = session_user(db, username, datetime.fromtimestamp(since, UTC))
            if found is not None:
                user = {"username": found.username, "role": found.role}
    if user is None:
        session.pop(SESSION_USER, None)
        session.pop(SESSION_SINCE, None)
        target = request.full_path.rstrip("?") if request.method == "GET" else "/noc/"
        return redirect(url_for("noc.login_form", next=target), code=303)
    g.noc_user = user
    return None


def require_admin() -> None:
    """Refuse a signed-in user who is not an ``admin`` (user and token management).

    Raises:
        Problem: 403 ``VPOP-403``, shown as the NOC's error page.
    """
    if g.noc_user["role"] != "admin":
        raise Problem(403, "VPOP-403", "only admins may manage users and tokens")


@bp.context_processor
def _page_globals() -> dict[str, Any]:
    return {"user": g.get("noc_user")}


def current_actor() -> str:
    """The signed-in user as the audit log names them (``user:<name>``)."""
    return f"user:{g.noc_user['username']}"


def current_caller() -> Caller:
    """The signed-in user as a selection caller (name and role)."""
    return Caller(name=current_actor(), role=g.noc_user["role"])


def database_url() -> str:
    """The app's database URL."""
    url: str = current_app.config["DATABASE_URL"]
    return url
