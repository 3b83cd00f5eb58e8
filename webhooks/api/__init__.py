"""The JSON API under ``/api/v1``, one module per domain on one blueprint (``api``).

Importing this package registers every route on :data:`bp`, the OpenAPI document's
(:mod:`webhooks.api.openapi`) included.
"""

from __future__ import annotations

from webhooks.api import (
    aaa,
    catalogue,
    leasing,
    openapi,
    payments,
    reports,
    selection,
    settlements,
)
from webhooks.api.common import bp

__all__ = [
    "aaa",
    "bp",
    "catalogue",
    "leasing",
    "openapi",
    "payments",
    "reports",
    "selection",
    "settlements",
]
