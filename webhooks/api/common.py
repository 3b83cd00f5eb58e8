"""What every route of the JSON API shares: the blueprint, strict body and query parsing.

:func:`json_object` reads a body the strict way before any model sees it (declared
``application/json``, UTF-8, no repeated key, no NaN); the domains' request models
(:mod:`vpop.core.schemas`) then check its fields. The query helpers are as strict: known
keys only, each once, integers and booleans spelled one way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NoReturn

from flask import Blueprint, request

from vpop.core.errors import BadInput
from vpop.core.schemas import short
from vpop.core.time import TIME_CODE, parse_time
from vpop.selection.service import Caller, Forbidden
from webhooks.auth import MESSAGE_ID
from webhooks.problems import Problem

bp = Blueprint("api", __name__, url_prefix="/api/v1")


OPERATORS = ("admin", "noc")


# the largest id a database integer holds; a larger one in a URL names nothing
MAX_ID = 2**63 - 1


def json_object() -> dict[str, Any]:
    """The request body as a JSON object, parsed strictly.

    Raises:
        Problem: 415 unless the body is declared ``application/json``; 400 when it is not
            UTF-8 JSON (or repeats a key, or uses NaN/Infinity); 413 when it is too large.
        BadInput: the JSON is not an object.
    """
    if request.mimetype != "application/json":
        raise Problem(415, "VPOP-415-MEDIA-TYPE", "send the body as application/json")
    raw = request.get_data(cache=True)
    try:
        text = raw.decode("utf-8")
        value = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except UnicodeDecodeError as err:
        raise Problem(400, "VPOP-400-JSON", "the body is not UTF-8") from err
    except (ValueError, RecursionError) as err:
        raise Problem(400, "VPOP-400-JSON", f"the body is not valid JSON: {err}") from err
    if not isinstance(value, dict):
        raise BadInput("the body must be a JSON object", code="VPOP-400-TYPE")
    return value


def idempotency_key() -> str | None:
    values = request.headers.getlist("Idempotency-Key")
    if not values:
        return None
    if len(values) > 1 or not MESSAGE_ID.fullmatch(values[0]):
        raise Problem(
            400,
            "VPOP-400-IDEMPOTENCY-KEY",
            "Idempotency-Key must be one header of 1-200 characters of A-Z a-z 0-9 _ . : ~ -",
        )
    return values[0]


def operators_only(caller: Caller) -> None:
    """Runs show every ISP's configuration: only NOC staff and admins read them."""
    if caller.role not in OPERATORS:
        raise Forbidden("runs are for NOC staff and admins (token roles noc, admin)")


def query_args(allowed: Sequence[str]) -> dict[str, str]:
    """The query string as a dict: only ``allowed`` keys, each at most once."""
    for key in request.args:
        if key not in allowed:
            raise BadInput(
                f"unknown query parameter {short(key)}; allowed: {', '.join(allowed)}",
                code="VPOP-400-UNKNOWN-FIELD",
            )
        if len(request.args.getlist(key)) > 1:
            raise BadInput(f"{key} is given more than once", code="VPOP-400-TYPE")
    return dict(request.args.items())


def limit_arg(raw: str | None, default: int, maximum: int) -> int:
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 4:
        raise BadInput(f"limit must be an integer 1-{maximum}", code="VPOP-400-TYPE")
    limit = int(raw)
    if not 1 <= limit <= maximum:
        raise BadInput(f"limit must be an integer 1-{maximum}", code="VPOP-400-RANGE")
    return limit


def window_args(args: Mapping[str, str]) -> tuple[datetime | None, datetime | None]:
    """``since`` and ``until`` from the query, when given; since must come first."""
    since = parse_time(args["since"], "since") if "since" in args else None
    until = parse_time(args["until"], "until") if "until" in args else None
    if since is not None and until is not None and until <= since:
        raise BadInput("since must be before until", code=TIME_CODE)
    return since, until


def boolean_arg(raw: str, name: str) -> bool:
    if raw not in ("true", "false"):
        raise BadInput(f"{name} must be true or false", code="VPOP-400-TYPE")
    return raw == "true"


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise Problem(400, "VPOP-400-JSON", f"the key {short(key)} appears twice")
        seen[key] = value
    return seen


def _no_constant(name: str) -> NoReturn:
    raise Problem(400, "VPOP-400-JSON", f"{name} is not JSON")
