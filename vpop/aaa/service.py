"""The AAA domain's entry point: what other domains, the API, the CLI, pages and jobs use.

Everything outside this package imports from here (import-linter holds it), so the
modules behind it can change shape without touching their callers.
"""

from __future__ import annotations

from vpop.aaa.models import AaaDecision, AaaRule, RadiusClient, RadiusSession

__all__ = [
    "AaaDecision",
    "AaaRule",
    "RadiusClient",
    "RadiusSession",
]
