"""The NOC pages' blueprint and what every NOC page shares: sign-in required, the actor.

Its routes live in :mod:`webhooks.pages.noc` (orders, runs, leases, audit) and
:mod:`webhooks.pages.noc_login` (sign-in and sign-out).
"""

from __future__ import annotations

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
from sqlalchemy import select
from werkzeug.wrappers import Response as BaseResponse

from vpop.core.db import session_scope
from vpop.identity.service import ROLES, User
from vpop.selection.service import (
    Caller,
)
from webhooks.pages.helpers import (
    security_headers,
)

bp = Blueprint("noc", __name__, url_prefix="/noc")
bp.after_request(security_headers)


SESSION_USER = "user"


PUBLIC_ENDPOINTS = ("noc.login_form", "noc.login")


@bp.before_request
def require_login() -> BaseResponse | None:
    """Let only signed-in, enabled ``noc``/``admin`` users past the sign-in form."""
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    username = session.get(SESSION_USER)
    user = None
    if isinstance(username, str):
        with session_scope(current_app.config["DATABASE_URL"]) as db:
            found = db.scalars(select(User).where(User.username == username)).first()
            if found is not None and found.disabled_at is None and found.role in ROLES:
                user = {"username": found.username, "role": found.role}
    if user is None:
        session.pop(SESSION_USER, None)
        target = request.full_path.rstrip("?") if request.method == "GET" else "/noc/"
        return redirect(url_for("noc.login_form", next=target), code=303)
    g.noc_user = user
    return None


@bp.context_processor
def _page_globals() -> dict[str, Any]:
    return {"user": g.get("noc_user")}


def current_actor() -> str:
    return f"user:{g.noc_user['username']}"


def current_caller() -> Caller:
    return Caller(name=current_actor(), role=g.noc_user["role"])


def database_url() -> str:
    url: str = current_app.config["DATABASE_URL"]
    return url
