"""Liveness: ``GET /healthz``."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> dict[str, str]:
    """Say the process is up."""
    return {"status": "ok"}
