"""The JSON API under ``/api/v1``, one module per domain on one blueprint (``api``).

Importing this package registers every route on :data:`bp`.
"""

from __future__ import annotations

from webhooks.api import catalogue, leasing, selection
from webhooks.api.common import bp

__all__ = ["bp", "catalogue", "leasing", "selection"]
