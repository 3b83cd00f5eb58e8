"""FreeRADIUS in front of vpop, with the real server and the real radclient as the NAS.

Each test that runs FreeRADIUS renders vpop's configuration into its own state directory,
starts FreeRADIUS on free 127.0.0.1 ports and stops it by PID when it ends (even on failure).
vpop's app, when a test needs it, is served on a loopback port by a threaded HTTP server in
this process. Without FreeRADIUS the tests skip with a reason naming it (a required proof:
``VPOP_REQUIRE_ALL=1`` turns that skip into a failure).
"""

from __future__ import annotations

import base64
import socket
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from sqlalchemy import select

from tests.radius_helpers import SECRET, free_port, need_freeradius, radclient, served
from vpop.aaa import freeradius as freeradius_module
from vpop.aaa import service as aaa
from vpop.aaa.models import AaaDecision, RadiusClient, RadiusSession
from vpop.catalogue.models import Isp, Line, Subscriber
from vpop.cli import main
from vpop.core.audit import AuditEntry
from vpop.core.db import dispose_engines, session_scope
from vpop.core.errors import BadInput
from vpop.core.migrate import upgrade
from webhooks import create_app

HOSTS_YAML = """\
rc1:
  hostname: 127.0.0.1
  groups: [frr, lab]
  data:
    uplinks:
      isp-a: {interface: isp-a, address: 198.51.100.1/30, next_hop: 198.51.100.2}
      isp-c: {interface: isp-c, address: 198.51.100.5/30, next_hop: 198.51.100.6}
"""
SUB3 = {"User-Name": "sub3", "User-Password": "ignored", "Calling-Station-Id": "+31205550003"}
START = {
    "Acct-Status-Type": "Start",
    "Acct-Session-Id": "sess-1",
    "User-Name": "sub3",
    "Calling-Station-Id": "+31205550003",
    "NAS-Identifier": "bng1",
}


@dataclass(frozen=True)
class Env:
    """One test's world: its database, state directory and FreeRADIUS ports."""

    url: str
    state: Path
    auth_port: int
    acct_port: int

    @property
    def paths(self) -> aaa.RadiusPaths:
        return aaa.RadiusPaths(self.state / "radius")


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    """A migrated database (isp-a, isp-c; sub1 and sub3 on rc1), a state directory, free
    ports, ``VPOP_RADIUS_SECRET`` (the 127.0.0.1 client) and isp-c as the default ISP."""
    url = f"sqlite:///{tmp_path}/vpop.sqlite"
    state = tmp_path / "state"
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(HOSTS_YAML)
    world = Env(url, state, free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM))
    for name, value in {
        "VPOP_DATABASE_URL": url,
        "VPOP_STATE_DIR": str(state),
        "VPOP_RADIUS_SECRET": SECRET,
        "VPOP_RADIUS_AUTH_PORT": str(world.auth_port),
        "VPOP_RADIUS_ACCT_PORT": str(world.acct_port),
        "VPOP_RADIUS_DEFAULT_ISP": "isp-c",
        "VPOP_INVENTORY_HOSTS": str(hosts),
        "VPOP_LAB_DIR": str(tmp_path / "lab"),
    }.items():
        monkeypatch.setenv(name, value)
    upgrade(url)
    with session_scope(url) as session:
        session.add_all([Isp(id="isp-a", name="Alpha"), Isp(id="isp-c", name="Gamma")])
        for k in (1, 3):
            session.add(Subscriber(id=f"sub{k}", name=f"Subscriber {k}"))
            session.flush()
            session.add(
                Line(
                    subscriber_id=f"sub{k}",
                    router="rc1",
                    interface=f"sub{k}",
                    prefix=f"192.0.2.{4 * k + 2}/32",
                    calling_number=f"+3120555{k:04d}",
                    circuit_id=f"rc1:sub{k}",
                    access_id=f"acc-sub{k}",
                )
            )
    try:
        yield world
    finally:
        aaa.stop_radius(world.paths)
        dispose_engines()


@pytest.fixture
def app(env: Env) -> Flask:
    return create_app({"DATABASE_URL": env.url, "SECRET_KEY": "test", "WEBHOOK_SECRETS": ""})


@pytest.fixture
def freeradius(env: Env) -> Iterator[Any]:
    """A function that starts FreeRADIUS with vpop at ``vpop_url``; stopped after the test."""
    need_freeradius()

    def start(vpop_url: str) -> int:
        with session_scope(env.url) as session:
            config_dir = aaa.prepare(session, vpop_url=vpop_url, paths=env.paths)
        return aaa.start_radius(config_dir, paths=env.paths)

    try:
        yield start
    finally:
        aaa.stop_radius(env.paths)


def nobody_listens() -> str:
    return f"http://127.0.0.1:{free_port(socket.SOCK_STREAM)}"


def vpop(*args: str) -> Result:
    """`vpop ARGS` in this process."""
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def basic(token: str) -> dict[str, str]:
    raw = base64.b64encode(f"freeradius:{token}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def rlm_rest(attributes: dict[str, str]) -> dict[str, Any]:
    """A body as rlm_rest sends it."""
    return {name: {"type": "string", "value": [value]} for name, value in attributes.items()}


# ----------------------------------------------------------------------------- configuration


def test_the_configuration_renders_and_freeradius_accepts_it(env: Env) -> None:
    need_freeradius()
    secret_file = env.state.parent / "bng1.secret"
    secret_file.write_text("bng1-secret\n")
    added = vpop(
        "radius", "client", "add", "bng1", "--address", "192.0.2.200",
        "--secret-file", str(secret_file), "--family", "accel-ppp",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    with session_scope(env.url) as session:
        config_dir = aaa.prepare(session, vpop_url="http://127.0.0.1:8080", paths=env.paths)
    radiusd = (config_dir / "radiusd.conf").read_text()
    clients = (config_dir / "clients.conf").read_text()
    assert "\nuser =" not in radiusd and "\ngroup =" not in radiusd
    assert f"port = {env.auth_port}" in radiusd and f"port = {env.acct_port}" in radiusd
    assert radiusd.count("ipaddr = 127.0.0.1") == 2
    assert "start = 0" in radiusd
    assert aaa.radius_token(env.paths) in radiusd
    assert "ipaddr = 192.0.2.200" in clients and "secret = 'bng1-secret'" in clients
    assert f"secret = '{SECRET}'" in clients and "client localhost" in clients
    assert "Accel-VRF-Name\t\t\t1\tstring" in (config_dir / "dictionary").read_text()
    for path in [*config_dir.iterdir(), *(config_dir / "secrets").iterdir()]:
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_a_start_waits_for_the_ready_line_whatever_the_new_process_shows_at_first(
    env: Env, freeradius: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """For a moment after the spawn the kernel shows the new process's command line empty.
    A start that read it then took a running FreeRADIUS for one that had exited, and left it
    running (the suite, once). Here the command line reads as not FreeRADIUS's throughout
    the start, as in that moment: the start still waits for the ready line."""
    monkeypatch.setattr(freeradius_module, "_is_ours", lambda pid, config_dir: False)
    pid = freeradius(nobody_listens())
    monkeypatch.undo()  # the fixture's stop checks the command line, now filled in
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert Path(argv[0].decode()).name == "freeradius"
    assert aaa.radius_status(env.paths).running


def test_a_missing_secret_file_is_named(env: Env) -> None:
    secret_file = env.state.parent / "s"
    secret_file.write_text("x1\n")
    assert vpop("radius", "client", "add", "bng1", "--address", "192.0.2.1",
                "--secret-file", str(secret_file)).exit_code == 0  # fmt: skip
    (env.paths.secrets / "bng1").unlink()
    with session_scope(env.url) as session, pytest.raises(aaa.RadiusError, match="bng1"):
        aaa.prepare(session, vpop_url="http://127.0.0.1:8080", paths=env.paths)


@pytest.mark.parametrize(
    "url",
    ["https://127.0.0.1:8080", "http://192.0.2.1:8080", "http://127.0.0.1:8080/x", "ftp://x"],
)
def test_vpop_url_must_be_http_on_loopback(env: Env, url: str) -> None:
    with session_scope(env.url) as session, pytest.raises(BadInput):
        aaa.prepare(session, vpop_url=url, paths=env.paths)


# ----------------------------------------------------------------------------- vpop down


def test_while_vpop_is_down_freeradius_rejects_and_leaves_accounting_unanswered(
    env: Env, freeradius: Any
) -> None:
    freeradius(nobody_listens())
    answer = radclient(env.auth_port, "auth", SUB3)
    assert answer.code == "Access-Reject", answer.output
    assert answer.first("Reply-Message") == "vpop: the policy service did not answer"
    unanswered = radclient(env.acct_port, "acct", START, timeout=1.0)
    assert unanswered.code is None, unanswered.output
    assert "No reply" in unanswered.output


def test_accounting_unanswered_while_vpop_is_down_is_recorded_once_when_it_is_back(
    env: Env, app: Flask, freeradius: Any
) -> None:
    port = free_port(socket.SOCK_STREAM)
    freeradius(f"http://127.0.0.1:{port}")
    assert radclient(env.acct_port, "acct", START, timeout=1.0).code is None
    with served(app, port):
        # the NAS retransmits, with a new Acct-Delay-Time (so a new packet), then once more
        back = radclient(env.acct_port, "acct", {**START, "Acct-Delay-Time": "3"}, retries=3)
        again = radclient(env.acct_port, "acct", {**START, "Acct-Delay-Time": "6"})
    assert back.code == "Accounting-Response", back.output
    assert again.code == "Accounting-Response", again.output
    with session_scope(env.url) as session:
        sessions = session.scalars(select(RadiusSession)).all()
    assert [s.acct_session_id for s in sessions] == ["sess-1"]


# ----------------------------------------------------------------------------- vpop up


def test_an_access_request_reaches_vpop_and_its_reply_comes_back(
    env: Env, app: Flask, freeradius: Any
) -> None:
    with served(app) as base:
        freeradius(base)
        accepted = radclient(env.auth_port, "auth", SUB3)
        rejected = radclient(env.auth_port, "auth", {**SUB3, "Calling-Station-Id": "+31209999999"})
    assert accepted.code == "Access-Accept", accepted.output
    assert accepted.first("Class") is not None
    assert accepted.first("Acct-Interim-Interval") == "300"
    assert rejected.code == "Access-Reject", rejected.output
    assert rejected.first("Reply-Message"), rejected.output
    with session_scope(env.url) as session:
        decisions = {d.outcome: d for d in session.scalars(select(AaaDecision))}
    assert decisions["accept"].isp_id == "isp-c" and decisions["accept"].nas == "localhost"
    class_ = bytes.fromhex((accepted.first("Class") or "0x")[2:]).decode()
    assert class_ == f"{decisions['accept'].decision_id};isp=isp-c"
    assert decisions["reject"].subscriber_id is None


def test_an_accel_ppp_client_gets_the_vrf_in_vpops_dictionary_attribute(
    env: Env, app: Flask, freeradius: Any
) -> None:
    secret = env.state.parent / "bng.secret"
    secret.write_text("bng-secret-2\n")
    added = vpop("radius", "client", "add", "bng1", "--address", "127.0.0.1",
                 "--secret-file", str(secret), "--family", "accel-ppp")  # fmt: skip
    assert added.exit_code == 0, added.output
    with served(app) as base:
        freeradius(base)
        answer = radclient(env.auth_port, "auth", SUB3, secret="bng-secret-2", raddb=env.paths.root)
    assert answer.code == "Access-Accept", answer.output
    assert answer.first("Accel-VRF-Name") == "vpop-isp-c", answer.output
    with session_scope(env.url) as session:
        assert session.scalars(select(AaaDecision)).one().nas == "bng1"


def test_an_accept_vpop_does_not_acknowledge_in_post_auth_becomes_a_reject(
    env: Env, app: Flask, freeradius: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def post_auth(attributes: dict[str, list[str]], **_: Any) -> None:
        raise RuntimeError("cannot record")

    monkeypatch.setattr(aaa, "post_auth", post_auth)
    with served(app) as base:
        freeradius(base)
        answer = radclient(env.auth_port, "auth", SUB3)
    assert answer.code == "Access-Reject", answer.output


def test_reply_values_are_never_expanded_by_freeradius(
    env: Env, app: Flask, freeradius: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def authorize(attributes: dict[str, list[str]], **_: Any) -> Any:
        reply = {
            "reply:Reply-Message": {"op": ":=", "value": "%{User-Name}", "do_xlat": False},
            "control:Auth-Type": {"op": ":=", "value": "Accept", "do_xlat": False},
        }
        return aaa.AuthResult(accept=True, reply=reply, reason="test", decision_id="vpop-x")

    monkeypatch.setattr(aaa, "authorize", authorize)
    with served(app) as base:
        freeradius(base)
        answer = radclient(env.auth_port, "auth", SUB3)
    assert answer.code == "Access-Accept", answer.output
    assert answer.first("Reply-Message") == "%{User-Name}"


def test_accounting_is_answered_only_after_vpop_committed_it(
    env: Env, app: Flask, freeradius: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    committed: list[int] = []
    real_account = aaa.account

    def account(attributes: dict[str, list[str]], **kwargs: Any) -> None:
        real_account(attributes, **kwargs)
        with session_scope(env.url) as session:  # what a reader sees once it returned
            committed.append(len(session.scalars(select(RadiusSession)).all()))

    with served(app) as base:
        freeradius(base)
        monkeypatch.setattr(aaa, "account", account)
        answered = radclient(env.acct_port, "acct", START)

        def refuse(attributes: dict[str, list[str]], **_: Any) -> None:
            raise RuntimeError("database down")

        monkeypatch.setattr(aaa, "account", refuse)
        unanswered = radclient(
            env.acct_port, "acct", {**START, "Acct-Session-Id": "sess-2"}, timeout=1.0
        )
    assert answered.code == "Accounting-Response", answered.output
    assert committed == [1]
    with session_scope(env.url) as session:
        sessions = session.scalars(select(RadiusSession)).all()
    assert [s.acct_session_id for s in sessions] == ["sess-1"]
    assert unanswered.code is None, unanswered.output


# ----------------------------------------------------------------------------- the endpoints


def test_the_endpoints_need_the_token_and_loopback(env: Env, app: Flask) -> None:
    client = app.test_client()
    body = rlm_rest({"Acct-Status-Type": "Start"})
    for path in ("authorize", "post-auth", "accounting"):
        assert client.post(f"/radius/v1/{path}", json=body).status_code == 401
        wrong = client.post(f"/radius/v1/{path}", json=body, headers=basic("0" * 64))
        assert wrong.status_code == 401
    token = aaa.radius_token(env.paths)
    remote = client.post(
        "/radius/v1/authorize",
        json=body,
        headers=basic(token),
        environ_base={"REMOTE_ADDR": "192.0.2.9"},
    )
    assert remote.status_code == 403
    bad = client.post("/radius/v1/authorize", json={"User-Name": "x"}, headers=basic(token))
    assert bad.status_code == 400
    assert client.post("/radius/v1/post-auth", json=body, headers=basic(token)).status_code == 204


def test_authorize_maps_accept_to_200_and_reject_to_401(env: Env, app: Flask) -> None:
    client = app.test_client()
    headers = basic(aaa.radius_token(env.paths))
    accept = client.post("/radius/v1/authorize?nas=localhost", json=rlm_rest(SUB3), headers=headers)
    assert accept.status_code == 200, accept.get_data(as_text=True)
    body = accept.get_json()
    assert body["control:Auth-Type"]["value"] in ("Accept", ["Accept"])
    assert all(entry.get("do_xlat") is False for entry in body.values())
    reject = client.post(
        "/radius/v1/authorize",
        json=rlm_rest({**SUB3, "Calling-Station-Id": "+31209999999"}),
        headers=headers,
    )
    assert reject.status_code == 401
    assert "reply:Reply-Message" in reject.get_json()


# ----------------------------------------------------------------------------- the CLI


def test_client_add_list_remove(env: Env) -> None:
    secret = env.state.parent / "secret"
    secret.write_text("s3cret-value\n")
    added = vpop("radius", "client", "add", "bng1", "--address", "192.0.2.10",
                 "--secret-file", str(secret), "--family", "cisco")  # fmt: skip
    assert added.exit_code == 0, added.output
    file = env.paths.secrets / "bng1"
    assert file.read_text() == "s3cret-value\n"
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    listed = vpop("radius", "client", "list", "--json")
    assert listed.exit_code == 0
    assert "s3cret" not in listed.output and '"family": "cisco"' in listed.output
    removed = vpop("radius", "client", "remove", "bng1")
    assert removed.exit_code == 0, removed.output
    assert not file.exists()
    with session_scope(env.url) as session:
        assert session.scalars(select(RadiusClient)).all() == []
        actions = [e.action for e in session.scalars(select(AuditEntry))]
    assert actions == ["radius.client.add", "radius.client.remove"]


@pytest.mark.parametrize(
    ("args", "content", "fragment"),
    [
        (["BNG", "--address", "192.0.2.1"], "x\n", "name"),
        (["bng1", "--address", "192.0.2.300"], "x\n", "address"),
        (["bng1", "--address", "192.0.2.1", "--family", "nokia"], "x\n", "family"),
        (["bng1", "--address", "192.0.2.1"], "\n", "empty"),
        (["bng1", "--address", "192.0.2.1"], "a\nb\n", "one line"),
        (["bng1", "--address", "192.0.2.1"], "with space\n", "secret"),
        (["localhost", "--address", "192.0.2.1"], "x\n", "VPOP_RADIUS_SECRET"),
    ],
    ids=["name", "address", "family", "empty", "two-lines", "space", "reserved"],
)
def test_client_add_refuses_bad_input_with_exit_2(
    env: Env, args: list[str], content: str, fragment: str
) -> None:
    secret = env.state.parent / "secret"
    secret.write_text(content)
    result = vpop("radius", "client", "add", *args, "--secret-file", str(secret))
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and fragment in result.stderr, result.stderr
    assert not (env.paths.secrets).exists() or not any(env.paths.secrets.iterdir())


def test_client_remove_unknown_is_exit_2(env: Env) -> None:
    result = vpop("radius", "client", "remove", "nobody")
    assert result.exit_code == 2 and "VPOP-404-RADIUS-CLIENT" in result.stderr


def test_up_status_down(env: Env) -> None:
    need_freeradius()
    stopped = vpop("radius", "status")
    assert stopped.exit_code == 1 and "stopped" in stopped.stderr
    up = vpop("radius", "up", "--vpop-url", nobody_listens())
    assert up.exit_code == 0, up.output
    pid = aaa.radius_status(env.paths).pid
    assert pid is not None and f"running: pid {pid}" in up.output
    again = vpop("radius", "up")
    assert again.exit_code == 1 and "already runs" in again.stderr
    status = vpop("radius", "status")
    assert status.exit_code == 0 and f"auth {env.auth_port}, acct {env.acct_port}" in status.output
    answer = radclient(env.auth_port, "auth", SUB3)
    assert answer.code == "Access-Reject", answer.output  # vpop is not there
    down = vpop("radius", "down")
    assert down.exit_code == 0 and f"pid {pid}" in down.output
    assert not Path(f"/proc/{pid}").exists() or not aaa.radius_status(env.paths).running
    assert vpop("radius", "down").output.strip() == "FreeRADIUS was not running"


def test_up_reports_a_taken_port_on_one_line(env: Env) -> None:
    need_freeradius()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", env.auth_port))
        up = vpop("radius", "up", "--vpop-url", nobody_listens())
    assert up.exit_code == 1, up.output
    assert up.stderr.startswith("error: VPOP-RADIUS:") and up.stderr.count("\n") == 1
    assert not aaa.radius_status(env.paths).running
