"""NOC sign-in and sign-out, throttled after repeated failures per user name and address."""

from __future__ import annotations

import threading
import time

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
from vpop.identity.service import ROLES, authenticate
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
    throttle_key = (username[:64], request.remote_addr or "")
    if _throttled(throttle_key):
        return _login_page(
            f"too many failed sign-ins; wait {LOGIN_WINDOW // 60} minutes and try again", 429
        )
    with session_scope(database_url()) as db:
        user = authenticate(db, username[:64], password[:1024])
        if user is not None and user.role in ROLES:
            audit(db, f"user:{user.username}", "user.login", f"user:{user.username}")
            name = user.username
        else:
            name = None
    if name is None:
        current_app.logger.warning(
            "NOC sign-in refused for %r from %s", username[:64], request.remote_addr
        )
        _record_failure(throttle_key)
        return _login_page("wrong user name or password", 401)
    with _failures_lock:
        _failures().pop(throttle_key, None)
    session.clear()  # a new session: nothing from before the sign-in carries over
    session.permanent = True
    session[SESSION_USER] = name
    session[SESSION_SINCE] = utcnow().timestamp()
    csrf.rotate()
    return redirect(_safe_next(target), code=303)


LOGIN_FAILURES = 5  # failed sign-ins per user name and address ...


LOGIN_WINDOW = 300  # ... within this many seconds, before sign-in is refused for a while


_failures_lock = threading.Lock()


def _failures() -> dict[tuple[str, str], list[float]]:
    """This app's recent failed sign-ins (per process; each app has its own)."""
    table: dict[tuple[str, str], list[float]] = current_app.extensions.setdefault(
        "vpop_login_failures", {}
    )
    return table


def _recent(key: tuple[str, str], now: float) -> list[float]:
    return [t for t in _failures().get(key, []) if now - t < LOGIN_WINDOW]


def _throttled(key: tuple[str, str]) -> bool:
    """True when this user name from this address failed too often lately."""
    with _failures_lock:
        return len(_recent(key, time.monotonic())) >= LOGIN_FAILURES


def _record_failure(key: tuple[str, str]) -> None:
    now = time.monotonic()
    with _failures_lock:
        table = _failures()
        table[key] = [*_recent(key, now), now]
        if len(table) > 10_000:  # bounded memory under a spray of names
            table.clear()


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
