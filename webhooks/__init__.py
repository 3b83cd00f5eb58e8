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
from webhooks.metrics import bp as metrics_bp


def enqueue_router(router: str) -> None:
    """The default ``ENQUEUE``: hand the router to the job queue."""
    # imported here: opening the queue's storage is a side effect tests and tools avoid
    import vpop.queue

    vpop.queue.enqueue_router(router)


def enqueue_lease(lease_id: int) -> None:
    """The default ``LEASE_CHANGED``: hand the lease to the job queue for provisioning."""
    import vpop.queue

    vpop.queue.enqueue_lease(lease_id)


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
        LEASE_CHANGED: ``(lease_id) -> None``, called after a lease is created or set to
            end through the API (default: :func:`enqueue_lease`).

    ``GET /metrics`` is served without authentication (see :mod:`webhooks.metrics`).

    Raises:
        ConfigError: a webhook secret is malformed, or ENQUEUE or LEASE_CHANGED is not
            callable.
    """
    app = Flask(__name__)
    app.config.from_mapping(
        DATABASE_URL=load_settings().database_url,
        WEBHOOK_SECRETS="",
        MAX_CONTENT_LENGTH=64 * 1024,
        ENQUEUE=enqueue_router,
        LEASE_CHANGED=enqueue_lease,
    )
    app.config.from_prefixed_env("VPOP")
    if config:
        app.config.update(config)
    if not callable(app.config["ENQUEUE"]):
        raise ConfigError("ENQUEUE must be a callable (router) -> None")
    if not callable(app.config["LEASE_CHANGED"]):
        raise ConfigError("LEASE_CHANGED must be a callable (lease_id) -> None")
    app.extensions[auth.EXTENSION] = auth.load_webhook_secrets(app.config["WEBHOOK_SECRETS"])
    problems.register(app)
    app.register_blueprint(health_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(metrics_bp)
    return app
