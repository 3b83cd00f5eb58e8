"""The network domain's entry point: what other domains, the API, the CLI, pages and jobs use.

Everything outside this package imports from here (import-linter holds it), so the
modules behind it can change shape without touching their callers.
"""

from __future__ import annotations

from vpop.network.factory import (
    one_router,
    open_nornir,
    register_plugins,
    routers_nornir,
)
from vpop.network.hostkeys import write_known_hosts
from vpop.network.templates import render_router
from vpop.network.trust import HostKeyScanFailed, OfferedKey, offered_key, pin_offered_key

__all__ = [
    "HostKeyScanFailed",
    "OfferedKey",
    "offered_key",
    "one_router",
    "open_nornir",
    "pin_offered_key",
    "register_plugins",
    "render_router",
    "routers_nornir",
    "write_known_hosts",
]
