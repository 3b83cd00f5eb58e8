"""Pinned SSH host keys against a real SSH server (paramiko's server side, tests/sshd_fake.py):
an unknown or changed key is refused before any credential is sent, a pinned key (known-hosts
entry, hashed or not, or an inventory fingerprint) is accepted, and `vpop router trust` pins
what the operator confirmed, audited."""

from __future__ import annotations

import pickle
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from tasks.connection import CONNECTION_NAME, HostKeyError, close_pool, open_shell
from tasks.hostkeys import fingerprint, host_key_pins, parse_fingerprint, read_known_hosts
from tests.sshd_fake import FakeSshd, fake_sshd, new_host_key
from vpop.cli import main
from vpop.core.audit import AuditEntry
from vpop.core.db import Base, dispose_engines, get_engine, session_scope
from vpop.core.errors import ConfigError
from vpop.network.hostkeys import replace_known_host
from vpop.network.service import offered_key, open_nornir, pin_offered_key


@pytest.fixture
def sshd() -> Iterator[FakeSshd]:
    with fake_sshd() as server:
        yield server
    close_pool()


def connect(server: FakeSshd, **pins: object) -> None:
    """open_shell to the fake server as router r9 with ``pins``; close it when it opens."""
    shell = open_shell(
        "127.0.0.1",
        server.port,
        "ops",
        password="s3cret",
        timeout=5,
        pins=host_key_pins("r9", "127.0.0.1", server.port, **pins),  # type: ignore[arg-type]
    )
    shell.close()


def test_fingerprints_are_the_ones_ssh_keygen_prints(tmp_path: Path) -> None:
    key, public = new_host_key()
    (tmp_path / "key.pub").write_text(public + " r9\n")
    printed = subprocess.run(
        ["ssh-keygen", "-lf", str(tmp_path / "key.pub")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert printed.split()[1] == fingerprint(key.asbytes())
    assert parse_fingerprint(printed) == ("ssh-ed25519", fingerprint(key.asbytes()))
    with pytest.raises(ValueError, match="not a SHA256 fingerprint"):
        parse_fingerprint("MD5:aa:bb")


def test_an_unknown_key_is_refused_before_any_credential(sshd: FakeSshd, tmp_path: Path) -> None:
    offered = fingerprint(sshd.host_key.asbytes())
    with pytest.raises(HostKeyError) as refused:
        connect(sshd, known_hosts=str(tmp_path / "known_hosts"))
    message = str(refused.value)
    assert message.startswith("VPOP-HOSTKEY: r9 (127.0.0.1:")
    assert f"unknown host key ssh-ed25519 {offered}" in message
    assert "nothing was sent" in message and "vpop router trust r9" in message
    sshd.settled()
    assert sshd.attempts == []


def test_a_changed_key_is_refused_with_both_fingerprints(sshd: FakeSshd, tmp_path: Path) -> None:
    old_key, old_public = new_host_key()
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.port} {old_public}\n")
    with pytest.raises(HostKeyError) as refused:
        connect(sshd, known_hosts=str(known))
    assert refused.value.expected == [fingerprint(old_key.asbytes())]
    assert refused.value.offered == fingerprint(sshd.host_key.asbytes())
    assert fingerprint(old_key.asbytes()) in str(refused.value)
    assert fingerprint(sshd.host_key.asbytes()) in str(refused.value)
    assert str(pickle.loads(pickle.dumps(refused.value))) == str(refused.value)  # a run's result
    sshd.settled()
    assert sshd.attempts == []


def test_a_key_pinned_in_known_hosts_is_accepted(sshd: FakeSshd, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    _, other = new_host_key()
    known.write_text(
        f"# routers\n[127.0.0.1]:1 {other}\n[127.0.0.1]:{sshd.port} {sshd.public_line} r9\n"
    )
    connect(sshd, known_hosts=str(known))
    assert sshd.attempts == [("password", "ops")]


def test_a_hashed_known_hosts_entry_is_accepted(sshd: FakeSshd, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.port} {sshd.public_line}\n")
    subprocess.run(["ssh-keygen", "-H", "-f", str(known)], capture_output=True, check=True)
    assert known.read_text().startswith("|1|")
    connect(sshd, known_hosts=str(known))
    assert sshd.attempts == [("password", "ops")]


def test_a_fingerprint_in_the_inventory_is_accepted(sshd: FakeSshd) -> None:
    offered = fingerprint(sshd.host_key.asbytes())
    with pytest.raises(HostKeyError):
        connect(sshd, host_keys=[fingerprint(new_host_key()[0].asbytes())])
    connect(sshd, host_keys=[f"256 {offered} root@r9 (ED25519)"])
    assert sshd.attempts == [("password", "ops")]


@pytest.mark.parametrize(
    ("line", "pinned"),
    [
        ("[127.0.0.1]:2222 {key}", True),
        ("other,[127.0.0.1]:2222 {key}", True),
        ("[127.0.0.1]:22 {key}", False),
        ("127.0.0.1 {key}", False),
        ("[127.0.0.?]:2222 {key}", True),
        ("*,![127.0.0.1]:2222 {key}", False),
        ("[127.0.0.1]:2222 {key}\n@revoked * {key}", False),
        ("@cert-authority [127.0.0.1]:2222 {key}", False),
        ("[127.0.0.1]:2222 ssh-ed25519 not-base64!", False),
    ],
    ids=[
        "exact",
        "list",
        "other-port",
        "port-22-name",
        "wildcard",
        "negated",
        "revoked",
        "ca",
        "garbage",
    ],
)
def test_known_hosts_entries_are_read_as_ssh_reads_them(
    tmp_path: Path, line: str, pinned: bool
) -> None:
    key, public = new_host_key()
    known = tmp_path / "known_hosts"
    known.write_text(line.format(key=public) + "\n")
    expected = [("ssh-ed25519", fingerprint(key.asbytes()))] if pinned else []
    assert read_known_hosts(known, "[127.0.0.1]:2222") == expected


def test_pinning_replaces_the_routers_own_entries_only() -> None:
    _, old = new_host_key()
    _, new = new_host_key()
    text = (
        "# kept\n"
        f"[10.0.0.1]:2222 {old}\n"
        f"r2,[10.0.0.1]:2222 {old}\n"
        f"[10.0.0.*]:2222 {old}\n"
        f"[10.0.0.2]:2222 {old}\n"
    )
    line = f"[10.0.0.1]:2222 {new} vpop:r1\n"
    assert replace_known_host(text, "[10.0.0.1]:2222", line) == (
        f"# kept\nr2 {old}\n[10.0.0.*]:2222 {old}\n[10.0.0.2]:2222 {old}\n{line}"
    )


def inventory(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    port: int,
    data: str = "",
    group: str = "frr",
) -> Path:
    """A hosts file with router r9 on the fake server; returns the file's directory."""
    hosts = tmp_path / "inv" / "hosts.yaml"
    hosts.parent.mkdir(exist_ok=True)
    hosts.write_text(
        f"r9:\n  hostname: 127.0.0.1\n  port: {port}\n  groups: [{group}]\n"
        + (f"  data:\n{data}" if data else "")
    )
    monkeypatch.setenv("VPOP_INVENTORY_HOSTS", str(hosts))
    monkeypatch.setenv("VPOP_ROUTER_USERNAME", "ops")
    monkeypatch.setenv("VPOP_ROUTER_PASSWORD", "s3cret")
    monkeypatch.delenv("VPOP_KNOWN_HOSTS", raising=False)
    return hosts.parent


def test_nornir_connections_get_the_pins_of_the_inventory(
    sshd: FakeSshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    offered = fingerprint(sshd.host_key.asbytes())
    directory = inventory(tmp_path, monkeypatch, sshd.port, f"    host_key: {offered}\n")
    with open_nornir() as nr:
        host = nr.inventory.hosts["r9"]
        netmiko = host.get_connection_parameters("netmiko").extras or {}
        assert netmiko["ssh_strict"] is True and netmiko["system_host_keys"] is False
        assert netmiko["alt_key_file"] == str(directory / "known_hosts")
        assert netmiko["fast_cli"] is True  # the frr group's extras are kept
        napalm = host.get_connection_parameters("napalm").extras or {}
        assert napalm["optional_args"]["ssh_strict"] is True
        host.get_connection(CONNECTION_NAME, nr.config)
    assert sshd.attempts == [("password", "ops")]


def test_nornir_refuses_a_router_whose_key_is_not_pinned(
    sshd: FakeSshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inventory(tmp_path, monkeypatch, sshd.port, group="ios")  # Netmiko logs in by password
    with open_nornir() as nr:
        host = nr.inventory.hosts["r9"]
        with pytest.raises(HostKeyError, match="r9"):
            host.get_connection(CONNECTION_NAME, nr.config)
        with pytest.raises(Exception, match="not found in known_hosts"):
            host.get_connection("netmiko", nr.config)
    sshd.settled()
    assert sshd.attempts == []


def test_the_known_hosts_file_is_chosen_by_inventory_then_setting_then_beside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def chosen() -> str:
        with open_nornir() as nr:
            extras = nr.inventory.hosts["r9"].get_connection_parameters(CONNECTION_NAME).extras
            return str((extras or {})["known_hosts"])

    directory = inventory(tmp_path, monkeypatch, 2222)
    assert chosen() == str(directory / "known_hosts")
    monkeypatch.setenv("VPOP_KNOWN_HOSTS", str(tmp_path / "site_known_hosts"))
    assert chosen() == str(tmp_path / "site_known_hosts")
    inventory(tmp_path, monkeypatch, 2222, f"    known_hosts: {tmp_path / 'mine'}\n")
    monkeypatch.setenv("VPOP_KNOWN_HOSTS", str(tmp_path / "site_known_hosts"))
    assert chosen() == str(tmp_path / "mine")


def test_a_malformed_inventory_fingerprint_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inventory(tmp_path, monkeypatch, 2222, "    host_key: MD5:aa:bb\n")
    with pytest.raises(ConfigError, match="r9: data.host_key") as bad, open_nornir():
        pass
    assert bad.value.code == "VPOP-CFG-HOSTKEY"


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path}/trust.sqlite"
    monkeypatch.setenv("VPOP_DATABASE_URL", url)
    import vpop.models  # noqa: F401 (every table on the metadata)

    Base.metadata.create_all(get_engine(url))
    try:
        yield url
    finally:
        dispose_engines()


def trust_entries(url: str) -> list[AuditEntry]:
    with session_scope(url) as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == "router.trust")))


def test_trust_pins_an_unknown_router_and_audits_it(
    sshd: FakeSshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database: str
) -> None:
    directory = inventory(tmp_path, monkeypatch, sshd.port)
    offered = fingerprint(sshd.host_key.asbytes())
    done = CliRunner().invoke(main, ["router", "trust", "r9", "--yes"])
    assert done.exit_code == 0, done.output
    assert f"r9 (127.0.0.1:{sshd.port}) offers ssh-ed25519 {offered}" in done.output
    assert "no key is pinned for r9 yet" in done.output
    assert sshd.attempts == []  # trust reads the key without logging in
    pinned = read_known_hosts(directory / "known_hosts", f"[127.0.0.1]:{sshd.port}")
    assert pinned == [("ssh-ed25519", offered)]
    [entry] = trust_entries(database)
    assert entry.object == "router:r9" and entry.actor.startswith("cli:")
    assert entry.details["old"] == [] and entry.details["new"] == offered
    with open_nornir() as nr:
        nr.inventory.hosts["r9"].get_connection(CONNECTION_NAME, nr.config)
    assert sshd.attempts == [("password", "ops")]
    again = CliRunner().invoke(main, ["router", "trust", "r9"])
    assert again.exit_code == 0 and "already pinned" in again.output
    assert len(trust_entries(database)) == 1


def test_trust_shows_a_changed_key_and_pins_only_when_confirmed(
    sshd: FakeSshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database: str
) -> None:
    directory = inventory(tmp_path, monkeypatch, sshd.port)
    old_key, old_public = new_host_key()
    known = directory / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.port} {old_public}\nr2 {old_public}\n")
    before = known.read_text()
    old, new = fingerprint(old_key.asbytes()), fingerprint(sshd.host_key.asbytes())
    declined = CliRunner().invoke(main, ["router", "trust", "r9"], input="n\n")
    assert declined.exit_code == 1
    assert f"CHANGED: pinned now {old}, offered {new}" in declined.output
    assert "error: VPOP-HOSTKEY: r9: nothing pinned" in declined.output
    assert known.read_text() == before and trust_entries(database) == []
    confirmed = CliRunner().invoke(main, ["router", "trust", "r9"], input="y\n")
    assert confirmed.exit_code == 0, confirmed.output
    assert read_known_hosts(known, f"[127.0.0.1]:{sshd.port}") == [("ssh-ed25519", new)]
    assert read_known_hosts(known, "r2") == [("ssh-ed25519", old)]  # another router's pin
    [entry] = trust_entries(database)
    assert entry.details["old"] == [old] and entry.details["new"] == new


def test_trust_names_an_unknown_or_unreachable_router(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database: str
) -> None:
    with fake_sshd() as gone:
        port = gone.port
    inventory(tmp_path, monkeypatch, port)
    unknown = CliRunner().invoke(main, ["router", "trust", "r8", "--yes"])
    assert unknown.exit_code == 2
    assert "error: VPOP-404-ROUTER: unknown router 'r8'" in unknown.output
    unreachable = CliRunner().invoke(main, ["router", "trust", "r9", "--yes", "--timeout", "2"])
    assert unreachable.exit_code == 1
    assert "error: VPOP-502-HOSTKEY-SCAN: r9: cannot open SSH" in unreachable.output


def test_an_unaudited_pin_is_not_written(
    sshd: FakeSshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = inventory(tmp_path, monkeypatch, sshd.port)
    offered = offered_key("r9")
    no_tables = f"sqlite:///{tmp_path}/empty.sqlite"
    try:
        with pytest.raises(Exception, match="audit_log"):
            pin_offered_key(offered, "cli:test", no_tables)
    finally:
        dispose_engines()
    assert not (directory / "known_hosts").exists()
