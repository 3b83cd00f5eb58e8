"""The catalogue domain's entry point: what other domains, the API, the CLI, pages and jobs use.

Everything outside this package imports from here (import-linter holds it), so the
modules behind it can change shape without touching their callers.
"""

from __future__ import annotations

from vpop.catalogue import schemas
from vpop.catalogue.models import Isp, Line, Plan, Selection, Subscriber

__all__ = ["Isp", "Line", "Plan", "Selection", "Subscriber", "schemas"]
