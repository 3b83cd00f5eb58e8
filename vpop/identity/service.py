"""The identity domain's entry point: what other domains, the API, the CLI, pages and jobs use.

Everything outside this package imports from here (import-linter holds it), so the
modules behind it can change shape without touching their callers.
"""

from __future__ import annotations

from vpop.identity.models import ApiToken, User
from vpop.identity.tokens import create_token, lookup_token
from vpop.identity.users import ROLES, authenticate, create_user

__all__ = [
    "ApiToken",
    "ROLES",
    "User",
    "authenticate",
    "create_token",
    "create_user",
    "lookup_token",
]
