"""The billing domain's reports names, re-exported by :mod:`vpop.billing.service`."""

from __future__ import annotations

__all__: list[str] = []
