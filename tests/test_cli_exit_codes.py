"""Exit codes of every `vpop` command but select/runs/reconcile/serve/worker (tested with
their own modules): 0 ok, 1 a failed run, 2 bad input with one line that says what to fix."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from vpop.catalogue.models import Isp, Subscriber
from vpop.cli import leasing as cli_leasing
from vpop.cli import main
from vpop.core.db import dispose_engines, session_scope
from vpop.core.migrate import upgrade
from vpop.selection.portal_links import read_token

PASSWORD = "a long enough password"
HOSTS_YAML = """\
rc1:
  hostname: 127.0.0.1
  groups: [frr, lab]
  data:
    uplinks:
      isp-a: {interface: isp-a, address: 198.51.100.1/30, next_hop: 198.51.100.2}
"""


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A migrated SQLite database with isp-a and subscriber sub1; no lab; a password file."""
    database = f"sqlite:///{tmp_path}/codes.sqlite"
    monkeypatch.setenv("VPOP_DATABASE_URL", database)
    monkeypatch.setenv("VPOP_LAB_DIR", str(tmp_path / "lab"))
    monkeypatch.setenv("VPOP_LAB_PREFIX", "vpop-codes-")
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(HOSTS_YAML)
    monkeypatch.setenv("VPOP_INVENTORY_HOSTS", str(hosts))
    monkeypatch.setenv("VPOP_PUBLIC_URL", "https://portal.example.net")
    monkeypatch.delenv("VPOP_SERVER_URL", raising=False)
    monkeypatch.setattr(cli_leasing, "lease_enqueuer", lambda: lambda lease_id: None)
    (tmp_path / "password").write_text(PASSWORD + "\n")
    (tmp_path / "short").write_text("short\n")
    monkeypatch.chdir(tmp_path)
    upgrade(database)
    with session_scope(database) as session:
        session.add_all([Isp(id="isp-a", name="Alpha"), Subscriber(id="sub1", name="One")])
    try:
        yield database
    finally:
        dispose_engines()


def vpop(*args: str) -> Result:
    """`vpop ARGS` in this process."""
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def one_line(result: Result, code: str = "VPOP-") -> str:
    """The single stderr line of a failed command, starting ``error: <code>``."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {code}"), lines[0]
    return lines[0]


# (arguments, exit code, the start of the one error line) for bad input and failed runs
FAILURES = {
    "unknown-command": (["frobnicate"], 2, "VPOP-400"),
    "db-unknown-subcommand": (["db", "frobnicate"], 2, "VPOP-400"),
    "lab-unknown-subcommand": (["lab", "frobnicate"], 2, "VPOP-400"),
    "lab-status-down": (["lab", "status"], 1, "VPOP-LAB"),
    "lab-exec-no-lab": (["lab", "exec", "sub1", "true"], 2, "VPOP-LAB"),
    "lab-restore-no-lab": (["lab", "restore", "rc1"], 1, "VPOP-LAB"),
    "user-bad-role": (["user", "create", "bob", "--role", "boss"], 2, "VPOP-400"),
    "user-short-password": (
        ["user", "create", "bob", "--role", "noc", "--password-file", "short"],
        2,
        "VPOP-400",
    ),
    "user-bad-name": (
        ["user", "create", "Bob!", "--role", "noc", "--password-file", "password"],
        2,
        "VPOP-400",
    ),
    "user-disable-unknown": (["user", "disable", "nobody"], 2, "VPOP-404-USER"),
    "user-enable-unknown": (["user", "enable", "nobody"], 2, "VPOP-404-USER"),
    "user-reset-unknown": (
        ["user", "reset-password", "nobody", "--password-file", "password"],
        2,
        "VPOP-404-USER",
    ),
    "user-missing-argument": (["user", "disable"], 2, "VPOP-400"),
    "token-unknown-isp": (["token", "create", "--role", "isp", "--isp", "isp-z"], 2, "VPOP-404"),
    "token-isp-without-isp": (["token", "create", "--role", "isp"], 2, "VPOP-400-ROLE"),
    "token-bad-role": (["token", "create", "--role", "god"], 2, "VPOP-400"),
    "token-revoke-unknown": (["token", "revoke", "42"], 2, "VPOP-404-TOKEN"),
    "token-revoke-not-a-number": (["token", "revoke", "one"], 2, "VPOP-400"),
    "portal-link-unknown": (["portal-link", "sub9"], 2, "VPOP-404-SUBSCRIBER"),
    "portal-link-bad-name": (["portal-link", "Sub 1"], 2, "VPOP-400"),
    "portal-link-bad-base": (["portal-link", "sub1", "--base-url", "portal"], 2, "VPOP-400"),
    "lease-unknown-isp": (
        ["lease", "create", "--isp", "isp-z", "--router", "rc1"]
        + ["--committed-mbps", "10", "--price-minor", "1"],
        2,
        "VPOP-404",
    ),
    "lease-unknown-router": (
        ["lease", "create", "--isp", "isp-a", "--router", "rc9"]
        + ["--committed-mbps", "10", "--price-minor", "1"],
        2,
        "VPOP-404-ROUTER",
    ),
    "lease-end-unknown": (["lease", "end", "7"], 2, "VPOP-404-LEASE"),
    "report-bad-period": (
        ["report", "qos", "--from", "2025-01-02", "--to", "2025-01-01"],
        2,
        "VPOP-400",
    ),
    "report-bad-time": (["report", "qos", "--from", "yesterday", "--to", "now"], 2, "VPOP-400"),
}


@pytest.mark.parametrize(("args", "exit_code", "code"), FAILURES.values(), ids=list(FAILURES))
def test_failures_exit_1_or_2_with_one_line(
    url: str, args: list[str], exit_code: int, code: str
) -> None:
    result = vpop(*args)
    assert result.exit_code == exit_code, (result.stdout, result.stderr)
    one_line(result, code)
    if exit_code == 2:
        assert result.stdout == "", "bad input prints nothing but the error"


SUCCESSES = {
    "db-upgrade": ["db", "upgrade"],
    "user-create": ["user", "create", "bob", "--role", "admin", "--password-file", "password"],
    "user-list": ["user", "list"],
    "token-create": ["token", "create", "--role", "noc"],
    "token-list": ["token", "list", "--json"],
    "lease-list": ["lease", "list"],
    "report-utilisation": ["report", "utilisation", "--from", "2025-01-01", "--to", "2025-01-02"],
}


@pytest.mark.parametrize("args", SUCCESSES.values(), ids=list(SUCCESSES))
def test_successes_exit_0_quietly_on_stderr(url: str, args: list[str]) -> None:
    result = vpop(*args)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""


def test_portal_link_uses_the_public_url_and_names_the_subscriber(url: str) -> None:
    result = vpop("portal-link", "sub1")
    assert result.exit_code == 0, result.stderr
    link = result.stdout.strip()
    assert link.startswith("https://portal.example.net/?link=")
    assert read_token(link.split("link=", 1)[1]) == "sub1"
    base = vpop("portal-link", "sub1", "--base-url", "http://10.0.0.1:8080/")
    assert base.stdout.startswith("http://10.0.0.1:8080/?link=")


def test_an_unusable_database_url_is_one_line_exit_1(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VPOP_DATABASE_URL", "nosuch://db")
    for args in (["db", "upgrade"], ["token", "list"], ["user", "list"]):
        result = vpop(*args)
        assert result.exit_code == 1, result.stderr
        assert "VPOP_DATABASE_URL" in one_line(result, "VPOP-CFG")


def test_lab_commands_that_change_the_lab_need_root(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    for args in (["lab", "up"], ["lab", "down"], ["lab", "restore", "rc1"]):
        result = vpop(*args)
        assert result.exit_code == 2
        assert "needs root" in one_line(result, "VPOP-400")


def test_lab_status_of_a_lab_that_is_down_says_so(url: str) -> None:
    result = vpop("lab", "status")
    assert result.exit_code == 1
    assert result.stdout.startswith("lab is down")
    assert "vpop lab up" in one_line(result, "VPOP-LAB")
