"""vpop's HTTP side: the Flask application factory."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from webhooks.health import bp as health_bp


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then ``VPOP_``-prefixed environment, then ``config``."""
    app = Flask(__name__)
    app.config.from_mapping(MAX_CONTENT_LENGTH=64 * 1024)
    app.config.from_prefixed_env("VPOP")
    if config:
        app.config.update(config)
    app.register_blueprint(health_bp)
    return app
