"""The NOC's admin pages: NOC users (disable, enable, reset a password) and API tokens (list,
revoke), the same as ``vpop user`` and ``vpop token``.

Only users of role ``admin`` see or use them (others get 403). Every action is a POST with the
session's CSRF token and is written to the audit log under ``user:<name>`` by the identity
domain's service (:mod:`vpop.identity.service`). Tokens are shown by id, name, role, ISP and
dates, never the token. A disabled user or one with a new password is signed out at their next
request; a revoked token is refused at its next request.
"""

from __future__ import annotations

from flask import (
    Response,
    flash,
    make_response,
    redirect,
    render_template,
    url_for,
)
from werkzeug.wrappers import Response as BaseResponse

from vpop.core.db import session_scope
from vpop.core.errors import BadInput
from vpop.identity.service import (
    disable_user,
    enable_user,
    list_tokens,
    list_users,
    reset_password,
    revoke_token,
    token_view,
    user_view,
)
from webhooks.pages import csrf
from webhooks.pages.helpers import check_form_fields, single_form_value
from webhooks.pages.noc_common import bp, current_actor, database_url, require_admin

PASSWORD_FIELDS = ("csrf_token", "password", "confirm")


def _username(raw: str) -> str:
    """A user name from the path, cut to the longest a name can be (an unknown one is 404)."""
    return raw[:64]


@bp.get("/users")
def users() -> Response:
    """NOC users with their role and state, and the actions on each."""
    require_admin()
    with session_scope(database_url()) as db:
        rows = [user_view(found) for found in list_users(db)]
    return make_response(render_template("noc/users.html", users=rows))


@bp.post("/users/<username>/disable")
def user_disable(username: str) -> BaseResponse:
    """Disable a user: no sign-in, and their sessions end."""
    require_admin()
    csrf.protect()
    check_form_fields(("csrf_token",))
    with session_scope(database_url()) as db:
        disable_user(db, _username(username), actor=current_actor())
    flash(f"User {username} is disabled; their sessions have ended.")
    return redirect(url_for("noc.users"), code=303)


@bp.post("/users/<username>/enable")
def user_enable(username: str) -> BaseResponse:
    """Let a disabled user sign in again."""
    require_admin()
    csrf.protect()
    check_form_fields(("csrf_token",))
    with session_scope(database_url()) as db:
        enable_user(db, _username(username), actor=current_actor())
    flash(f"User {username} is enabled.")
    return redirect(url_for("noc.users"), code=303)


@bp.post("/users/<username>/password")
def user_password(username: str) -> BaseResponse:
    """Set a user's new password (typed twice); their sessions end."""
    require_admin()
    csrf.protect()
    check_form_fields(PASSWORD_FIELDS)
    password = single_form_value("password") or ""
    if password != (single_form_value("confirm") or ""):
        raise BadInput("the two passwords differ; type the same password twice")
    with session_scope(database_url()) as db:
        reset_password(db, _username(username), password[:1024], actor=current_actor())
    flash(f"The password of {username} is reset; their sessions have ended.")
    return redirect(url_for("noc.users"), code=303)


@bp.get("/tokens")
def tokens() -> Response:
    """API tokens by id: name, role, ISP, created, revoked (never the token)."""
    require_admin()
    with session_scope(database_url()) as db:
        rows = [token_view(found) for found in list_tokens(db)]
    return make_response(render_template("noc/tokens.html", tokens=rows))


@bp.post("/tokens/<int:token_id>/revoke")
def token_revoke(token_id: int) -> BaseResponse:
    """Revoke a token: refused from its next request on."""
    require_admin()
    csrf.protect()
    check_form_fields(("csrf_token",))
    with session_scope(database_url()) as db:
        revoke_token(db, token_id, actor=current_actor())
    flash(f"Token {token_id} is revoked.")
    return redirect(url_for("noc.tokens"), code=303)
