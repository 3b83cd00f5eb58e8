"""Cross-site request forgery protection for the HTML forms (portal and NOC pages).

A synchroniser token: a random value kept in the user's signed session cookie and written
into every form as the hidden field ``csrf_token``. A POST is accepted only when the field
is present once and equals the session's value (compared with :func:`hmac.compare_digest`).
Another site can make a browser send the cookie, but cannot read the page to learn the token.
The session cookie is also ``SameSite=Lax`` (see :func:`webhooks.create_app`), a second
layer for browsers that honour it.

A refused form raises :class:`CsrfRefused`, a 400 :class:`~webhooks.problems.Problem` that the
pages' error handler shows as an HTML page saying what to do (reload the form, try again).
The JSON API does not use this module: it authenticates every write with a signature or a
bearer token instead of a cookie, so it cannot be forged this way.
"""

from __future__ import annotations

import hmac
import secrets

from flask import request, session

from webhooks.problems import Problem

FIELD = "csrf_token"
SESSION_KEY = "csrf"
TOKEN_BYTES = 32


class CsrfRefused(Problem):
    """A form came without its CSRF token, or with one that is not this session's."""

    def __init__(self, detail: str) -> None:
        """Refuse with 400 and ``detail`` (shown on the error page)."""
        super().__init__(400, "VPOP-400-REQUEST", detail)


def token() -> str:
    """This session's CSRF token, created on first use (for templates: ``csrf_token()``)."""
    current = session.get(SESSION_KEY)
    if not isinstance(current, str) or not current:
        current = secrets.token_urlsafe(TOKEN_BYTES)
        session[SESSION_KEY] = current
    return current


def rotate() -> str:
    """A new token for this session (after a sign-in, so a token seen before it is void)."""
    session[SESSION_KEY] = secrets.token_urlsafe(TOKEN_BYTES)
    return str(session[SESSION_KEY])


def protect() -> None:
    """Check the current request's form token against the session's.

    Raises:
        CsrfRefused: the field is missing, repeated, or does not match; or the session has
            no token (a cookie that expired, or one never set because cookies are off).
    """
    sent = request.form.getlist(FIELD)
    expected = session.get(SESSION_KEY)
    if len(sent) != 1 or not sent[0]:
        raise CsrfRefused(
            "this form arrived without its security token; reload the page and send it again"
        )
    if not isinstance(expected, str) or not expected:
        raise CsrfRefused(
            "your session has expired or cookies are blocked; allow cookies for this site, "
            "reload the page and send the form again"
        )
    if not hmac.compare_digest(sent[0].encode(), expected.encode()):
        raise CsrfRefused(
            "this form's security token does not belong to your session; reload the page and "
            "send the form again"
        )
