"""vpop's HTTP side: the Flask application factory."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from vpop.errors import ConfigError
from vpop.settings import load_settings
from webhooks import auth, problems
from webhooks.api import bp as api_bp
from webhooks.health import bp as health_bp


def enqueue_router(router: str) -> None:
    """The default ``ENQUEUE``: hand the router to the job queue."""
    # imported here: opening the queue's storage is a side effect tests and tools avoid
    import vpop.queue

    vpop.queue.enqueue_router(router)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then ``VPOP_``-prefixed environment, then ``config``.

    Config keys:
        DATABASE_URL: SQLAlchemy URL (default: ``VPOP_DATABASE_URL`` / the settings' default).
            The app never migrates; run ``vpop db upgrade`` first.
        WEBHOOK_SECRETS: comma-separated ``whsec_...`` secrets accepted for Standard Webhooks
            signatures, several during a rotation (default: ``VPOP_WEBHOOK_SECRETS``, may be
            empty: then only bearer tokens are accepted).
        MAX_CONTENT_LENGTH: the largest request body, in bytes (64 KiB).
        ENQUEUE: ``(router) -> None``, called after a new order is committed
            (default: :func:`enqueue_router`).

    Raises:
        ConfigError: a webhook secret is malformed, or ENQUEUE is not callable.
    """
    app = Flask(__name__)
    app.config.from_mapping(
        DATABASE_URL=load_settings().database_url,
        WEBHOOK_SECRETS="",
        MAX_CONTENT_LENGTH=64 * 1024,
        ENQUEUE=enqueue_router,
    )
    app.config.from_prefixed_env("VPOP")
    if config:
        app.config.update(config)
    if not callable(app.config["ENQUEUE"]):
        raise ConfigError("ENQUEUE must be a callable (router) -> None")
    app.extensions[auth.EXTENSION] = auth.load_webhook_secrets(app.config["WEBHOOK_SECRETS"])
    problems.register(app)
    app.register_blueprint(health_bp)
    app.register_blueprint(api_bp)
    return app
