"""The AAA domain's entry point: what other domains, the API, the CLI, pages and jobs use.

Everything outside this package imports from here (import-linter holds it), so the
modules behind it can change shape without touching their callers.
"""

from __future__ import annotations

from vpop.aaa import schemas
from vpop.aaa.accounting import account, close_stale, session_view
from vpop.aaa.clients import (
    add_radius_client,
    list_radius_clients,
    read_secret,
    remove_radius_client,
)
from vpop.aaa.coa import CoaError, has_open_session, move_line_sessions
from vpop.aaa.errors import AaaError, BadRule, IdentityConflict, UnknownLine, UnknownRule
from vpop.aaa.freeradius import (
    RadiusStatus,
    foreground_argv,
    prepare,
    radius_status,
    start_radius,
    stop_radius,
)
from vpop.aaa.models import AaaDecision, AaaRule, RadiusClient, RadiusSession
from vpop.aaa.policy import AuthResult, authorize, decision_view, decisions, post_auth
from vpop.aaa.radius_state import (
    RadiusError,
    RadiusPaths,
    UnknownRadiusClient,
    radius_token,
    token_matches,
)
from vpop.aaa.resolver import Identifiers, calling_number, from_radius, resolve
from vpop.aaa.rules import aaa_rule_view, add_rule, remove_rule, rules

__all__ = [
    "RadiusError",
    "RadiusPaths",
    "RadiusStatus",
    "UnknownRadiusClient",
    "add_radius_client",
    "foreground_argv",
    "list_radius_clients",
    "prepare",
    "radius_status",
    "radius_token",
    "read_secret",
    "remove_radius_client",
    "start_radius",
    "stop_radius",
    "token_matches",
    "CoaError",
    "has_open_session",
    "move_line_sessions",
    "AaaDecision",
    "AaaRule",
    "RadiusClient",
    "RadiusSession",
    "AaaError",
    "AuthResult",
    "BadRule",
    "IdentityConflict",
    "Identifiers",
    "UnknownLine",
    "UnknownRule",
    "aaa_rule_view",
    "account",
    "close_stale",
    "add_rule",
    "authorize",
    "calling_number",
    "decision_view",
    "decisions",
    "from_radius",
    "post_auth",
    "remove_rule",
    "resolve",
    "rules",
    "schemas",
    "session_view",
]
