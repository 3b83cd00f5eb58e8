"""NOC sign-in and sign-out, throttled after repeated failures per user name and address.

The failures are counted in the database (``vpop.identity`` throttle), so every server
process refuses the same user name and address, and a restart forgets nothing.
"""

from __future__ import annotations

from flask import (
    Response,
    current_app,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response as BaseResponse

from vpop.core.audit import audit
from vpop.core.db import session_scope
from vpop.core.errors import BadInput
from vpop.core.time import utcnow
from vpop.identity.service import (
    LOGIN_WINDOW,
    ROLES,
    authenticate,
    clear_login_failures,
    login_throttled,
    record_login_failure,
)
from webhooks.pages import csrf
from webhooks.pages.helpers import (
    check_form_fields,
    single_form_value,
)
from webhooks.pages.noc_common import SESSION_SINCE, SESSION_USER, bp, database_url


@bp.get("/login")
def login_form() -> Response:
    """The sign-in form."""
    return _login_page(None, 200)


@bp.post("/login")
def login() -> BaseResponse:
    """Check the name and password; on success start a fresh session."""
    csrf.protect()
    try:
        check_form_fields(("csrf_token", "username", "password", "next"))
        username = single_form_value("username") or ""
        password = single_form_value("password") or ""
        target = single_form_value("next") or ""
    except BadInput as err:
        return _login_page(err.message, 400)
    if not username or not password:
        return _login_page("enter your user name and password", 422)
    address = request.remote_addr or ""
    with session_scope(database_url()) as db:
        throttled = login_throttled(db, username, address)
    if throttled:
        minutes = int(LOGIN_WINDOW.total_seconds()) // 60
        return _login_page(f"too many failed sign-ins; wait {minutes} minutes and try again", 429)
    with session_scope(database_url()) as db:
        user = authenticate(db, username[:64], password[:1024])
        if user is not None and user.role in ROLES:
            audit(db, f"user:{user.username}", "user.login", f"user:{user.username}")
            clear_login_failures(db, username, address)
            name = user.username
        else:
            record_login_failure(db, username, address)
            name = None
    if name is None:
        current_app.logger.warning("NOC sign-in refused for %r from %s", username[:64], address)
        return _login_page("wrong user name or password", 401)
    session.clear()  # a new session: nothing from before the sign-in carries over
    session.permanent = True
    session[SESSION_USER] = name
    session[SESSION_SINCE] = utcnow().timestamp()
    csrf.rotate()
    return redirect(_safe_next(target), code=303)


@bp.post("/logout")
def logout() -> BaseResponse:
    """End the session."""
    csrf.protect()
    session.clear()
    return redirect(url_for("noc.login_form"), code=303)


def _login_page(error: str | None, status: int) -> Response:
    target = request.values.get("next", "")
    return make_response(
        render_template("noc/login.html", error=error, next=_safe_next(target)), status
    )


def _safe_next(target: str) -> str:
    """Where to go after signing in: only a path under /noc on this site (no open redirect)."""
    if (
        (target == "/noc" or target.startswith("/noc/"))
        and "\\" not in target
        and "//" not in target
    ):
        return target
    return url_for("noc.orders")
