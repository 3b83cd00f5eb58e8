"""The policy endpoints FreeRADIUS's rlm_rest calls on loopback (authorize, post-auth,
accounting), under ``/radius/v1``."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("radius", __name__, url_prefix="/radius/v1")
