"""vpop's HTTP side: the Flask application factory."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from flask import Flask, Request, Response
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from werkzeug.exceptions import HTTPException

from vpop.core.errors import ConfigError, VpopError
from vpop.core.secrets import secret_key
from vpop.core.settings import load_settings
from webhooks import auth, problems
from webhooks.api.common import bp as api_bp
from webhooks.health import bp as health_bp
from webhooks.metrics import bp as metrics_bp
from webhooks.pages import helpers as pages
from webhooks.pages import (
    noc,
    noc_aaa,
    noc_admin,
    noc_billing,
    noc_login,
    noc_usage,
    portal_billing,
    portal_consent,
)
from webhooks.pages.noc_common import bp as noc_bp
from webhooks.pages.portal import bp as portal_bp
from webhooks.radius import bp as radius_bp

# hooks that used to be callables in the config; a caller still passing one is told why
REMOVED_HOOKS = ("ENQUEUE", "LEASE_CHANGED", "RECONCILE")


# importing them registers their routes on the NOC and portal blueprints
ROUTE_MODULES = (
    noc,
    noc_login,
    noc_admin,
    noc_aaa,
    noc_usage,
    noc_billing,
    portal_consent,
    portal_billing,
)


#: Paths that never use the pages' session cookie: their requests skip opening it.
SESSIONLESS_PREFIXES = ("/api/", "/radius", "/healthz", "/metrics")


class _PagesOnlySessions(SecureCookieSessionInterface):
    """The pages' signed-cookie session, not opened for API, RADIUS and health requests
    (they never read it; opening it costs a signer per request on the busiest paths)."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if request.path.startswith(SESSIONLESS_PREFIXES):
            return self.null_session_class()
        return super().open_session(app, request)


def render_error(err: Exception) -> Response:
    """The one error handler: an HTML page on the portal and NOC pages, else problem+json."""
    if pages.is_page_request():
        return pages.render_error_page(err)
    return problems.render_problem(err)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: defaults from the settings (:func:`vpop.core.settings.load_settings`,
    the ``VPOP_*`` variables and ``VPOP_CONFIG``), then ``config``.

    Config keys:
        DATABASE_URL: SQLAlchemy URL (default: ``VPOP_DATABASE_URL`` / the settings' default).
            The app never migrates; run ``vpop db upgrade`` first.
        WEBHOOK_SECRETS: comma-separated ``whsec_...`` secrets accepted for Standard Webhooks
            signatures, several during a rotation (default: ``VPOP_WEBHOOK_SECRETS``, may be
            empty: then only bearer tokens are accepted).
        MAX_CONTENT_LENGTH: the largest request body, in bytes (64 KiB).
        SECRET_KEY: signs the pages' session cookie and the portal links (default:
            :func:`vpop.secrets_store.secret_key`, the key ``vpop portal-link`` uses).
        SESSION_COOKIE_SECURE: send the session cookie over HTTPS only (default False: the
            lab's portal is plain HTTP; set ``VPOP_SESSION_COOKIE_SECURE=true`` behind TLS).
        PORTAL_LINK_MAX_AGE: seconds a portal link stays valid (24 hours).

    The portal (``/``) and the NOC pages (``/noc``) answer errors with an HTML page; the API,
    ``/metrics`` and any other path with ``application/problem+json``.

    ``GET /metrics`` is for operators: a bearer token of role admin or noc (see
    :mod:`webhooks.metrics` and ``docs/tenancy.md``).

    The app wires no side effects: the domains announce new orders, changed leases and
    reconcile requests as signals, and the process serving the app connects them to the
    queue once (:func:`vpop.jobs.wiring.connect`).

    Raises:
        ConfigError: a webhook secret is malformed, SESSION_COOKIE_SAMESITE is neither Lax
            nor Strict, or a removed hook key (ENQUEUE, LEASE_CHANGED, RECONCILE) is given.
    """
    settings = load_settings()
    app = Flask(__name__)
    app.session_interface = _PagesOnlySessions()
    app.config.from_mapping(
        DATABASE_URL=settings.database_url,
        WEBHOOK_SECRETS=settings.webhook_secrets,
        MAX_CONTENT_LENGTH=64 * 1024,
        SESSION_COOKIE_NAME="vpop_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.session_cookie_secure,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=8),
        PORTAL_LINK_MAX_AGE=settings.portal_link_max_age,
    )
    if config:
        app.config.update(config)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = secret_key()
    # the pages' protections are not optional, whatever the environment says
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    if app.config["SESSION_COOKIE_SAMESITE"] not in ("Lax", "Strict"):
        raise ConfigError("SESSION_COOKIE_SAMESITE must be Lax or Strict")
    for removed in REMOVED_HOOKS:
        if removed in app.config:
            raise ConfigError(
                f"{removed} is no longer a config key: side effects are signals connected by "
                "vpop.jobs.wiring.connect() (tests connect their own receivers)"
            )
    app.extensions[auth.EXTENSION] = auth.load_webhook_secrets(app.config["WEBHOOK_SECRETS"])
    # problems.register's handler, except on the pages, which answer with HTML
    for exc_type in (problems.Problem, VpopError, HTTPException):
        app.register_error_handler(exc_type, render_error)
    app.register_blueprint(health_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(metrics_bp)
    app.register_blueprint(radius_bp)
    app.register_blueprint(portal_bp)
    app.register_blueprint(noc_bp)
    return app
