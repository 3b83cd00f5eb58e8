"""The pages' settings in the app factory: the secret key, the cookie, the hooks."""

from __future__ import annotations

from pathlib import Path

import pytest

from vpop.core.errors import ConfigError
from vpop.selection.portal_links import make_token
from webhooks import create_app


def test_the_default_key_is_the_one_vpop_portal_link_signs_with(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VPOP_SECRET_KEY", raising=False)
    monkeypatch.setenv("VPOP_STATE_DIR", str(tmp_path / "state"))
    app = create_app({"TESTING": True, "DATABASE_URL": database_url})
    stored = (tmp_path / "state" / "secret_key").read_text().strip()
    assert app.config["SECRET_KEY"] == stored
    token = make_token("sub2")  # as `vpop portal-link sub2` does, with no key given
    response = app.test_client().get("/", query_string={"link": token})
    assert response.status_code == 200
    assert "Hello Subscriber 2" in response.get_data(as_text=True)


def test_a_configured_key_wins(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VPOP_SECRET_KEY", "from-the-environment-0123456789")
    assert create_app({"DATABASE_URL": database_url}).config["SECRET_KEY"] == (
        "from-the-environment-0123456789"
    )
    app = create_app({"DATABASE_URL": database_url, "SECRET_KEY": "from-config-0123456789"})
    assert app.config["SECRET_KEY"] == "from-config-0123456789"


def test_the_cookie_stays_http_only_and_same_site(database_url: str) -> None:
    app = create_app(
        {"DATABASE_URL": database_url, "SECRET_KEY": "k" * 32, "SESSION_COOKIE_HTTPONLY": False}
    )
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"
    with pytest.raises(ConfigError, match="SAMESITE"):
        create_app(
            {"DATABASE_URL": database_url, "SECRET_KEY": "k" * 32, "SESSION_COOKIE_SAMESITE": None}
        )


def test_a_reconcile_hook_in_the_config_is_refused(database_url: str) -> None:
    with pytest.raises(ConfigError, match="RECONCILE"):
        create_app({"DATABASE_URL": database_url, "SECRET_KEY": "k" * 32, "RECONCILE": "rc1"})
