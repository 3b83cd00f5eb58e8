"""`vpop token list|revoke` and `vpop user list|disable|enable|reset-password`: what they
print, what they change, what they audit, and that the service refuses what they revoke."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from vpop.catalogue.models import Isp
from vpop.cli import main
from vpop.core.audit import AuditEntry
from vpop.core.db import dispose_engines, session_scope
from vpop.core.migrate import upgrade
from vpop.core.time import utcnow
from vpop.identity.service import (
    authenticate,
    create_token,
    create_user,
    lookup_token,
    session_user,
)

PASSWORD = "the first password"
NEW_PASSWORD = "the second password"


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A migrated database with isp-b, users alice (noc) and root (admin), password files."""
    database = f"sqlite:///{tmp_path}/identity.sqlite"
    monkeypatch.setenv("VPOP_DATABASE_URL", database)
    monkeypatch.setenv("USER", "operator")
    monkeypatch.delenv("SUDO_USER", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "new").write_text(NEW_PASSWORD + "\n")
    upgrade(database)
    with session_scope(database) as session:
        session.add(Isp(id="isp-b", name="Bravo"))
        session.flush()
        create_user(session, "alice", PASSWORD, "noc", actor="tests")
        create_user(session, "root", PASSWORD, "admin", actor="tests")
    try:
        yield database
    finally:
        dispose_engines()


def vpop(*args: str) -> Result:
    """`vpop ARGS` in this process."""
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def audited(url: str, action: str) -> list[tuple[str, str]]:
    """(actor, object) of the audit entries with ``action``."""
    with session_scope(url) as session:
        rows = session.scalars(select(AuditEntry).where(AuditEntry.action == action))
        return [(row.actor, row.object) for row in rows]


def test_token_list_shows_everything_but_the_token(url: str) -> None:
    with session_scope(url) as session:
        first = create_token(session, "isp", "isp-b", "bravo-ops", actor="tests")
        second = create_token(session, "admin", name="automation", actor="tests")
    listed = vpop("token", "list")
    assert listed.exit_code == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].split()[:4] == ["1", "bravo-ops", "isp", "isp-b"]
    assert lines[1].split()[:4] == ["2", "automation", "admin", "-"]
    assert all(line.endswith("live") for line in lines)
    as_json = json.loads(vpop("token", "list", "--json").stdout)
    assert set(as_json[0]) == {"id", "name", "role", "isp", "merchant", "created", "revoked"}
    for clear in (first, second):
        assert clear not in listed.stdout and clear[5:15] not in json.dumps(as_json)


def test_a_revoked_token_is_refused_at_once(url: str) -> None:
    with session_scope(url) as session:
        clear = create_token(session, "noc", name="leaked", actor="tests")
    with session_scope(url) as session:
        assert lookup_token(session, clear) is not None
    revoked = vpop("token", "revoke", "1")
    assert revoked.exit_code == 0, revoked.stderr
    assert revoked.stdout == "token 1 (leaked) revoked\n"
    with session_scope(url) as session:
        assert lookup_token(session, clear) is None
    assert audited(url, "token.revoke") == [("cli:operator", "token:1")]
    assert "revoked 20" in vpop("token", "list").stdout
    again = vpop("token", "revoke", "1")
    assert again.exit_code == 2 and "already revoked" in again.stderr


def test_user_list_disable_enable(url: str) -> None:
    listed = vpop("user", "list")
    assert listed.exit_code == 0
    assert [line.split()[:2] for line in listed.stdout.splitlines()] == [
        ["alice", "noc"],
        ["root", "admin"],
    ]
    assert "scrypt" not in listed.stdout
    assert vpop("user", "disable", "alice").exit_code == 0
    with session_scope(url) as session:
        assert authenticate(session, "alice", PASSWORD) is None
    assert "disabled 20" in vpop("user", "list").stdout
    assert vpop("user", "disable", "alice").exit_code == 2  # already
    assert vpop("user", "enable", "alice").exit_code == 0
    with session_scope(url) as session:
        assert authenticate(session, "alice", PASSWORD) is not None
    assert vpop("user", "enable", "alice").exit_code == 2  # not disabled
    assert audited(url, "user.disable") == [("cli:operator", "user:alice")]
    assert audited(url, "user.enable") == [("cli:operator", "user:alice")]


def test_the_last_admin_is_not_disabled(url: str) -> None:
    result = vpop("user", "disable", "root")
    assert result.exit_code == 2
    assert "last enabled admin" in result.stderr and len(result.stderr.splitlines()) == 1


def test_reset_password_from_a_file(url: str) -> None:
    result = vpop("user", "reset-password", "alice", "--password-file", "new")
    assert result.exit_code == 0, result.stderr
    with session_scope(url) as session:
        assert authenticate(session, "alice", PASSWORD) is None
        assert authenticate(session, "alice", NEW_PASSWORD) is not None
    assert audited(url, "user.reset_password") == [("cli:operator", "user:alice")]


def test_reset_password_prompts_twice_without_a_file(url: str) -> None:
    typed = f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n"
    result = CliRunner().invoke(main, ["user", "reset-password", "alice"], input=typed)
    assert result.exit_code == 0, result.output
    assert NEW_PASSWORD not in result.stdout.replace("password", "")
    with session_scope(url) as session:
        assert authenticate(session, "alice", NEW_PASSWORD) is not None


def test_sessions_end_when_a_user_is_disabled_or_gets_a_new_password(url: str) -> None:
    signed_in = utcnow() - timedelta(seconds=1)
    with session_scope(url) as session:
        assert session_user(session, "alice", signed_in) is not None
    assert vpop("user", "reset-password", "alice", "--password-file", "new").exit_code == 0
    with session_scope(url) as session:
        assert session_user(session, "alice", signed_in) is None
        assert session_user(session, "alice", utcnow()) is not None  # a new sign-in is fine
    later = utcnow()
    assert vpop("user", "disable", "alice").exit_code == 0
    assert vpop("user", "enable", "alice").exit_code == 0
    with session_scope(url) as session:
        assert session_user(session, "alice", later) is None  # enabling revives no session
        assert session_user(session, "nobody", later) is None
