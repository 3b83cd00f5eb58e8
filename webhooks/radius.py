"""The policy endpoints FreeRADIUS's rlm_rest calls on loopback (authorize, post-auth,
accounting), under ``/radius/v1``.

rlm_rest posts the request's attributes as JSON (``{"Attr": {"type": ..., "value": [...]}}``)
with HTTP basic auth (user ``freeradius``, the shared token of ``$VPOP_STATE_DIR/radius/token``)
and maps the status back to a module result (``docs/radius.md``):

- ``POST /radius/v1/authorize``: 200 with the reply attributes on accept (rlm_rest's
  ``updated``: they go back with ``do_xlat`` false), 401 with a Reply-Message on reject.
- ``POST /radius/v1/post-auth``: 204.
- ``POST /radius/v1/accounting``: 204 only after vpop committed the record; 503 otherwise, so
  FreeRADIUS sends no Accounting-Response and the NAS retransmits.

Only loopback callers are served (403 otherwise), and only with the token (401 otherwise):
the request carries the subscriber's password in clear text. The ``nas`` query parameter is
FreeRADIUS's client name (``%{client:shortname}``).
"""

from __future__ import annotations

import ipaddress
import json
import logging
from typing import Any

from flask import Blueprint, Response, current_app, request

from vpop.aaa import service as aaa
from vpop.core import validate
from vpop.core.errors import BadInput

bp = Blueprint("radius", __name__, url_prefix="/radius/v1")
log = logging.getLogger(__name__)

MAX_ATTRIBUTES = 256  # rlm_rest sends at most the request list; a NAS sends far fewer


def _answer(status: int, body: dict[str, Any] | None = None) -> Response:
    """A response rlm_rest can decode: JSON attributes, or no body for 204."""
    if body is None:
        return Response(status=status)
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _message(text: str) -> dict[str, Any]:
    """A body with one Reply-Message, never expanded by FreeRADIUS."""
    return {"reply:Reply-Message": {"op": ":=", "value": text, "do_xlat": False}}


def _refusal() -> Response | None:
    """403 for a caller that is not on loopback, 401 without the shared token; else None."""
    try:
        loopback = ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        return _answer(403, _message("vpop: the policy endpoints answer loopback only"))
    auth = request.authorization
    presented = auth.password if auth is not None and auth.type == "basic" else None
    if not aaa.token_matches(presented):
        return _answer(401, _message("vpop: FreeRADIUS's token was refused"))
    return None


def _attributes() -> dict[str, list[str]]:
    """rlm_rest's JSON body as attribute name -> values (all as text).

    Raises:
        BadInput: the body is not rlm_rest's shape.
    """
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or len(body) > MAX_ATTRIBUTES:
        raise BadInput("body: expected rlm_rest's JSON object of attributes")
    attributes: dict[str, list[str]] = {}
    for name, entry in body.items():
        values = entry.get("value") if isinstance(entry, dict) else None
        if not isinstance(values, list) or not all(
            isinstance(v, str | int | float) and not isinstance(v, bool) for v in values
        ):
            raise BadInput(f"body: attribute {name!r} has no value list")
        attributes[name] = [str(v) for v in values]
    return attributes


def _nas() -> str | None:
    """The asking NAS's client name, from the ``nas`` query parameter."""
    try:
        return validate.name(request.args.get("nas", ""), "nas")
    except BadInput:
        return None


def _parsed() -> tuple[dict[str, list[str]], str | None] | Response:
    """The guard and the parsing every endpoint shares: attributes and NAS, or a refusal."""
    refused = _refusal()
    if refused is not None:
        return refused
    try:
        return _attributes(), _nas()
    except BadInput as err:
        return _answer(400, _message(f"vpop: {err.message}"))


@bp.post("/authorize")
def authorize() -> Response:
    """Decide an Access-Request: 200 and the reply on accept, 401 and why on reject."""
    parsed = _parsed()
    if isinstance(parsed, Response):
        return parsed
    attributes, nas = parsed
    result = aaa.authorize(attributes, nas=nas, url=current_app.config["DATABASE_URL"])
    return _answer(200 if result.accept else 401, result.reply)


@bp.post("/post-auth")
def post_auth() -> Response:
    """Post-Auth of an Access-Accept or Access-Reject FreeRADIUS sends: 204."""
    parsed = _parsed()
    if isinstance(parsed, Response):
        return parsed
    attributes, nas = parsed
    aaa.post_auth(attributes, nas=nas, url=current_app.config["DATABASE_URL"])
    return _answer(204)


@bp.post("/accounting")
def accounting() -> Response:
    """Record an Accounting-Request: 204 once committed, else 503 (the NAS retransmits)."""
    parsed = _parsed()
    if isinstance(parsed, Response):
        return parsed
    attributes, nas = parsed
    try:
        aaa.account(attributes, nas=nas, url=current_app.config["DATABASE_URL"])
    except Exception:  # whatever it was, the record is not committed: the NAS must retry
        log.exception("accounting from %s not recorded", nas or "-")
        return _answer(503)
    return _answer(204)
