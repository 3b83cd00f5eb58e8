"""The network domain's entry point: what other domains, the API, the CLI, pages and jobs use.

Everything outside this package imports from here (import-linter holds it), so the
modules behind it can change shape without touching their callers.
"""

from __future__ import annotations

from vpop.network.factory import one_router, open_nornir
from vpop.network.templates import render_router

__all__ = ["one_router", "open_nornir", "render_router"]
