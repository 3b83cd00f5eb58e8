"""The NOC's admin pages: users (disable, enable, reset a password) and tokens (list, revoke).

Admins only; CSRF-protected; every action audited with the admin as actor; a disabled user
or one with a new password is signed out at once; a revoked token is refused at once.
"""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.web.helpers import NOC_PASSWORD, form_token, text
from vpop.core.audit import AuditEntry
from vpop.core.db import session_scope
from vpop.identity.service import create_token, create_user

ADMIN_PASSWORD = "admin password of bob"
NEW_PASSWORD = "a brand new password"


def sign_in(app: Flask, username: str, password: str) -> FlaskClient:
    """A browser signed in as ``username``."""
    client = app.test_client()
    token = form_token(client.get("/noc/login"))
    response = client.post(
        "/noc/login", data={"csrf_token": token, "username": username, "password": password}
    )
    assert response.status_code == 303, text(response)
    return client


def sign_in_status(app: Flask, username: str, password: str) -> int:
    """The status of a sign-in attempt from a fresh browser."""
    client = app.test_client()
    token = form_token(client.get("/noc/login"))
    return client.post(
        "/noc/login", data={"csrf_token": token, "username": username, "password": password}
    ).status_code


@pytest.fixture
def admin(app: Flask, database_url: str) -> FlaskClient:
    """A browser signed in as ``bob`` (role admin)."""
    with session_scope(database_url) as session:
        create_user(session, "bob", ADMIN_PASSWORD, "admin", actor="tests")
    return sign_in(app, "bob", ADMIN_PASSWORD)


def post(client: FlaskClient, path: str, **fields: str) -> int:
    """POST a form with the session's CSRF token; the status."""
    token = form_token(client.get("/noc/portal-links"))
    return client.post(path, data={"csrf_token": token, **fields}).status_code


def audited(url: str, action: str) -> list[tuple[str, str]]:
    """(actor, object) of the audit entries with ``action``."""
    with session_scope(url) as session:
        rows = session.scalars(select(AuditEntry).where(AuditEntry.action == action))
        return [(row.actor, row.object) for row in rows]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/noc/users"),
        ("get", "/noc/tokens"),
        ("post", "/noc/users/alice/disable"),
        ("post", "/noc/users/alice/enable"),
        ("post", "/noc/users/alice/password"),
        ("post", "/noc/tokens/1/revoke"),
    ],
    ids=["users", "tokens", "disable", "enable", "password", "revoke"],
)
def test_a_noc_user_may_not_manage_users_or_tokens(
    noc: FlaskClient, database_url: str, method: str, path: str
) -> None:
    if method == "get":
        response = noc.get(path)
    else:
        token = form_token(noc.get("/noc/portal-links"))
        response = noc.post(path, data={"csrf_token": token})
    assert response.status_code == 403
    assert "VPOP-403" in text(response)
    assert audited(database_url, "user.disable") == []


def test_only_admins_see_the_links(noc: FlaskClient, admin: FlaskClient) -> None:
    assert 'href="/noc/users"' not in text(noc.get("/noc/orders"))
    page = text(admin.get("/noc/orders"))
    assert 'href="/noc/users"' in page and 'href="/noc/tokens"' in page


def test_the_user_list_shows_names_roles_and_state(admin: FlaskClient) -> None:
    page = text(admin.get("/noc/users"))
    assert 'data-user-row="alice"' in page and 'data-user-row="bob"' in page
    assert "scrypt$" not in page


def test_disabling_a_user_ends_their_session_and_their_sign_in(
    app: Flask, noc: FlaskClient, admin: FlaskClient, database_url: str
) -> None:
    assert noc.get("/noc/orders").status_code == 200
    assert post(admin, "/noc/users/alice/disable") == 303
    assert noc.get("/noc/orders").status_code == 303  # signed out at the next request
    assert sign_in_status(app, "alice", NOC_PASSWORD) == 401
    assert audited(database_url, "user.disable") == [("user:bob", "user:alice")]
    assert "disabled" in text(admin.get("/noc/users"))
    assert post(admin, "/noc/users/alice/disable") == 422  # already disabled

    assert post(admin, "/noc/users/alice/enable") == 303
    assert audited(database_url, "user.enable") == [("user:bob", "user:alice")]
    assert noc.get("/noc/orders").status_code == 303  # the old session stays ended
    assert sign_in(app, "alice", NOC_PASSWORD).get("/noc/orders").status_code == 200


def test_resetting_a_password_ends_the_sessions_and_the_old_password(
    app: Flask, noc: FlaskClient, admin: FlaskClient, database_url: str
) -> None:
    path = "/noc/users/alice/password"
    assert post(admin, path, password=NEW_PASSWORD, confirm="something else") == 422
    assert post(admin, path, password="short", confirm="short") == 422
    assert noc.get("/noc/orders").status_code == 200
    assert post(admin, path, password=NEW_PASSWORD, confirm=NEW_PASSWORD) == 303
    assert noc.get("/noc/orders").status_code == 303
    assert sign_in_status(app, "alice", NOC_PASSWORD) == 401
    assert sign_in(app, "alice", NEW_PASSWORD).get("/noc/orders").status_code == 200
    assert audited(database_url, "user.reset_password") == [("user:bob", "user:alice")]


def test_the_last_admin_cannot_be_disabled(admin: FlaskClient) -> None:
    response = admin.post(
        "/noc/users/bob/disable", data={"csrf_token": form_token(admin.get("/noc/users"))}
    )
    assert response.status_code == 422 and "last enabled admin" in text(response)
    assert admin.get("/noc/orders").status_code == 200


@pytest.mark.parametrize(
    "path",
    ["/noc/users/alice/disable", "/noc/tokens/1/revoke"],
    ids=["disable", "revoke"],
)
def test_admin_actions_need_the_csrf_token(
    admin: FlaskClient, database_url: str, path: str
) -> None:
    assert admin.post(path, data={}).status_code == 400
    assert admin.post(path, data={"csrf_token": "forged"}).status_code == 400
    assert audited(database_url, "user.disable") == audited(database_url, "token.revoke") == []


def test_unknown_users_and_tokens_are_404(admin: FlaskClient) -> None:
    assert post(admin, "/noc/users/nobody/disable") == 404
    assert post(admin, "/noc/tokens/99/revoke") == 404
    assert post(admin, f"/noc/tokens/{2**70}/revoke") == 404


def test_a_revoked_token_is_refused_at_once(
    app: Flask, admin: FlaskClient, database_url: str
) -> None:
    with session_scope(database_url) as session:
        clear = create_token(session, "isp", "isp-b", "beta-ops", actor="tests")
    api = app.test_client()
    headers = {"Authorization": f"Bearer {clear}"}
    assert api.get("/api/v1/leases", headers=headers).status_code == 200
    page = text(admin.get("/noc/tokens"))
    assert 'data-token-row="1"' in page and "beta-ops" in page and "isp-b" in page
    assert clear not in page and clear[5:20] not in page
    assert post(admin, "/noc/tokens/1/revoke") == 303
    assert api.get("/api/v1/leases", headers=headers).status_code == 401
    assert audited(database_url, "token.revoke") == [("user:bob", "token:1")]
    assert 'data-action="revoke"' not in text(admin.get("/noc/tokens"))
    assert post(admin, "/noc/tokens/1/revoke") == 422
