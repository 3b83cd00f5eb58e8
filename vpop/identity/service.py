"""The identity domain's entry point: what other domains, the API, the CLI, pages and jobs use.

Everything outside this package imports from here (import-linter holds it), so the
modules behind it can change shape without touching their callers.
"""

from __future__ import annotations

from vpop.identity.models import ApiToken, User
from vpop.identity.throttle import (
    LOGIN_FAILURES,
    LOGIN_WINDOW,
    clear_login_failures,
    login_failures,
    login_throttled,
    record_login_failure,
)
from vpop.identity.tokens import (
    TokenHolder,
    create_token,
    list_tokens,
    lookup_token,
    revoke_token,
    token_holder,
    token_isp,
    token_view,
)
from vpop.identity.users import (
    ROLES,
    authenticate,
    check_password,
    create_user,
    disable_user,
    enable_user,
    get_user,
    hash_password,
    list_users,
    reset_password,
    session_user,
    user_view,
)

__all__ = [
    "ApiToken",
    "LOGIN_FAILURES",
    "LOGIN_WINDOW",
    "ROLES",
    "User",
    "authenticate",
    "check_password",
    "clear_login_failures",
    "create_token",
    "create_user",
    "disable_user",
    "enable_user",
    "get_user",
    "hash_password",
    "list_tokens",
    "list_users",
    "login_failures",
    "login_throttled",
    "lookup_token",
    "token_holder",
    "token_isp",
    "TokenHolder",
    "record_login_failure",
    "reset_password",
    "revoke_token",
    "session_user",
    "token_view",
    "user_view",
]
