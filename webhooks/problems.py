"""Errors over HTTP: one exception type, one handler, RFC 9457 ``application/problem+json``.

Views raise :class:`Problem` (or let a :class:`vpop.errors.VpopError` through); Werkzeug raises
its ``HTTPException`` for routing (404, 405) and limits (413). :func:`render_problem` turns each
into the same body::

    {"type": "tag:vpop,2025:VPOP-404-ISP", "title": "Not Found", "status": 404,
     "detail": "unknown ISP 'isp-z'", "code": "VPOP-404-ISP"}

``code`` is the stable code that ``docs/errors.md`` explains; ``type`` is the same code as a
tag URI (RFC 4151), an identifier that is not meant to be dereferenced.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from http import HTTPStatus

from flask import Flask, Response, current_app
from werkzeug.exceptions import HTTPException

from vpop.core.errors import VpopError

MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "tag:vpop,2025:"

# stable codes for the problems Werkzeug raises by itself
_HTTP_CODES = {
    400: "VPOP-400-REQUEST",
    404: "VPOP-404-ROUTE",
    405: "VPOP-405-METHOD",
    413: "VPOP-413-TOO-LARGE",
    415: "VPOP-415-MEDIA-TYPE",
    500: "VPOP-500-INTERNAL",
}
_HTTP_DETAILS = {
    404: "no such endpoint; see /api/v1/openapi.json",
    405: "this endpoint does not accept that method; see the Allow header",
    413: "the request body is larger than the limit",
    500: "internal error; the server log has the details",
}


class Problem(Exception):
    """An error answered with a status code and a problem+json body."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Build a problem.

        Args:
            status: The HTTP status code.
            code: The stable vpop code (``VPOP-...``) documented in ``docs/errors.md``.
            detail: What happened to this request, and what to change.
            headers: Extra response headers (``WWW-Authenticate``, ``Allow``...).
        """
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})

    @property
    def title(self) -> str:
        """The HTTP reason phrase of the status."""
        try:
            return HTTPStatus(self.status).phrase
        except ValueError:
            return "Error"

    def body(self) -> dict[str, object]:
        """The RFC 9457 members plus ``code``."""
        return {
            "type": TYPE_PREFIX + self.code,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }

    @classmethod
    def from_exception(cls, err: Exception) -> Problem:
        """The problem an exception stands for (unknown exceptions are a bare 500)."""
        if isinstance(err, Problem):
            return err
        if isinstance(err, VpopError):
            return cls(err.status, err.code, err.message)
        if isinstance(err, HTTPException):
            status = err.code or 500
            headers = {k: v for k, v in err.get_headers() if k.lower() not in {"content-type"}}
            detail = _HTTP_DETAILS.get(status) or err.description or HTTPStatus(status).phrase
            return cls(status, _HTTP_CODES.get(status, f"VPOP-{status}"), detail, headers=headers)
        return cls(500, _HTTP_CODES[500], _HTTP_DETAILS[500])


def problem_response(problem: Problem) -> Response:
    """A Flask response carrying the problem."""
    response = Response(json.dumps(problem.body()), status=problem.status, mimetype=MEDIA_TYPE)
    for key, value in problem.headers.items():
        response.headers[key] = value
    return response


def render_problem(err: Exception) -> Response:
    """The one error handler: any Problem, VpopError or HTTPException as problem+json."""
    problem = Problem.from_exception(err)
    # Flask has already logged the exception an InternalServerError wraps
    if problem.status >= 500 and not isinstance(err, HTTPException):
        current_app.logger.error("%s: %s", problem.code, err, exc_info=err)
    return problem_response(problem)


def register(app: Flask) -> None:
    """Route every error the app can produce through :func:`render_problem`.

    ``HTTPException`` covers routing errors (404, 405), body limits (413) and the
    ``InternalServerError`` Flask wraps around an unhandled exception (500).
    """
    for exc_type in (Problem, VpopError, HTTPException):
        app.register_error_handler(exc_type, render_problem)
