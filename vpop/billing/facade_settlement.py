"""The billing domain's settlement names, re-exported by :mod:`vpop.billing.service`."""

from __future__ import annotations

__all__: list[str] = []
