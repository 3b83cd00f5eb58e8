"""``vpop_shell``: a lean Nornir connection plugin for Linux + FRR routers.

Netmiko finds the end of a command's output by reading for a prompt, which costs tens of
milliseconds per command even on a warm session. This plugin keeps one SSH channel with a
plain ``sh`` reading commands from stdin, and ends every command with a marker line carrying
a random nonce and the command's exit status, so the end of the output is known exactly, at
once, and a failing command is never mistaken for a successful one.

It is reached, like every connection, through ``task.host.get_connection("vpop_shell", ...)``.

Host keys are pinned: a session goes on only when the router's host key is one its
:class:`HostKeyPins` name (the known-hosts file's entries for ``[host]:port``, and
fingerprints from the inventory); any other key refuses the connection before credentials
are sent (paramiko checks the host key before authenticating), with both fingerprints.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import shlex
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import paramiko
from nornir.core.configuration import Config
from nornir.core.task import Task
from pydantic_core import from_json

from tasks.hostkeys import HostKeyPins, PinnedTransport, fingerprint, host_key_pins

CONNECTION_NAME = "vpop_shell"


class ShellError(Exception):
    """The router's shell could not be reached or stopped answering."""


class ShellTimeout(ShellError):
    """A command did not finish within its timeout; the session is closed."""


class HostKeyError(ShellError):
    """The router offered a host key that is not pinned: nothing was sent to it."""

    code = "VPOP-HOSTKEY"

    def __init__(
        self, message: str, router: str = "", expected: Sequence[str] = (), offered: str = ""
    ) -> None:
        super().__init__(message)
        self.router = router
        self.expected = list(expected)
        self.offered = offered

    @classmethod
    def refused(
        cls, pins: HostKeyPins, address: str, offered_type: str, offered: str
    ) -> HostKeyError:
        """The error for a router at ``address`` that offered a key ``pins`` do not name."""
        if pins.keys:
            expected = " or ".join(f"{t} {fp}".strip() for t, fp in pins.keys)
            what = f"offered host key {offered_type} {offered}, not the pinned {expected}"
            fix = "If the router's key really changed, check it and pin it"
        else:
            what = f"offered an unknown host key {offered_type} {offered}: none is pinned"
            fix = "Check it and pin it"
        return cls(
            f"{cls.code}: {pins.router} ({address}) {what} ({pins.source}); "
            f"nothing was sent. {fix}: vpop router trust {pins.router}",
            pins.router,
            [fp for _, fp in pins.keys],
            offered,
        )


class PinnedHostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Accept only a pinned key. The client loads no host keys, so paramiko asks this
    policy about every key, after the key exchange and before any authentication."""

    def __init__(self, pins: HostKeyPins, address: str) -> None:
        self.pins = pins
        self.address = address

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        """Return when ``key`` is pinned; raise :class:`HostKeyError` otherwise."""
        offered = fingerprint(key.asbytes())
        if not any(hmac.compare_digest(offered, fp) for _, fp in self.pins.keys):
            raise HostKeyError.refused(self.pins, self.address, key.get_name(), offered)


def offered_host_key(
    hostname: str, port: int, *, algorithms: Sequence[str] = (), timeout: float = 10.0
) -> tuple[str, bytes]:
    """The host key a router offers (type, public blob), read without authenticating.

    Raises:
        ShellError: the router cannot be reached or does not speak SSH.
    """
    try:
        sock = socket.create_connection((hostname, port), timeout=timeout)
    except OSError as err:
        raise ShellError(f"cannot open SSH to {hostname}:{port}: {err}") from err
    try:
        transport = PinnedTransport(algorithms)(sock)
        transport.banner_timeout = timeout
        try:
            transport.start_client(timeout=timeout)
            key = transport.get_remote_server_key()
            return key.get_name(), key.asbytes()
        finally:
            transport.close()
    except (OSError, paramiko.SSHException) as err:
        raise ShellError(f"cannot read the host key of {hostname}:{port}: {err}") from err
    finally:
        sock.close()


@dataclass(frozen=True)
class CommandResult:
    """What a command printed (stdout and stderr merged) and its exit status."""

    command: str
    output: str
    exit_status: int
    seconds: float

    @property
    def ok(self) -> bool:
        """True when the command exited with status 0."""
        return self.exit_status == 0


TASKS_DIR = Path(__file__).resolve().parent
KERNEL_IMPORT = "from tasks.router_kernel import counters, nft, rules  # inlined when sent\n"


def compose_agent(directory: Path = TASKS_DIR) -> str:
    """The agent's source as routers get it: ``router_kernel.py``, then ``router_agent.py``
    without its import of the former (one standard-library script for ``python3 -c``).

    Raises:
        RuntimeError: the agent no longer imports the kernel part the way this expects.
    """
    agent = (directory / "router_agent.py").read_text()
    if agent.count(KERNEL_IMPORT) != 1:
        raise RuntimeError(f"{directory / 'router_agent.py'}: no {KERNEL_IMPORT.strip()!r}")
    kernel = (directory / "router_kernel.py").read_text()
    return kernel + "\n\n" + agent.replace(KERNEL_IMPORT, "")


AGENT_SOURCE = compose_agent()


def agent_source(extras: dict[str, Any]) -> str:
    """The agent a host's sessions start: the product agent (``tasks/router_agent.py``), or
    the file its ``vpop_shell`` extras name as ``agent_file`` (only a lab inventory does, for
    the lab's drill variant, ``vpop/lab/drill_agent.py``).

    Raises:
        OSError: ``agent_file`` cannot be read.
    """
    path = extras.get("agent_file")
    if not path:
        return AGENT_SOURCE
    # read again only when the file changed (a session is opened for every run of the lab)
    found = os.stat(path)
    return _read_agent(str(path), found.st_ino, found.st_size, found.st_mtime_ns)


@lru_cache(maxsize=8)
def _read_agent(path: str, _inode: int, _size: int, _mtime_ns: int) -> str:
    """The text of the agent file at ``path`` as of that version of it."""
    return Path(path).read_text()


class Agent:
    """The router-side agent (``tasks/router_agent.py``) on its own channel of the session."""

    def __init__(self, channel: paramiko.Channel, source: str = AGENT_SOURCE) -> None:
        self.channel = channel
        self.source = source
        self.lock = threading.Lock()
        self.buf = b""
        self.broken = False

    def _readline(self, deadline: float) -> bytes:
        while b"\n" not in self.buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ShellTimeout("router agent did not answer in time")
            self.channel.settimeout(remaining)
            chunk = self.channel.recv(1 << 16)
            if not chunk:
                raise ShellError("router agent closed the session")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def call(self, request: dict[str, Any], *, timeout: float = 30.0) -> dict[str, Any]:
        """Send one request, return its answer (``ok`` tells success)."""
        deadline = time.monotonic() + timeout
        with self.lock:
            if self.broken:
                raise ShellError("router agent session is broken; reconnect")
            try:
                self.channel.sendall(json.dumps(request).encode() + b"\n")
                # pydantic's JSON parser (Rust): a counter poll's answer (19 kB with 200
                # lines) takes the standard library's decoder 1.7 times as long to read
                answer: dict[str, Any] = from_json(self._readline(deadline))
            except (OSError, paramiko.SSHException, ShellError, ValueError) as err:
                self.broken = True
                self.channel.close()
                if isinstance(err, ShellError):
                    raise
                raise ShellError(f"router agent failed: {err}") from err
        return answer

    def start(self, timeout: float) -> None:
        """Start the agent and wait for its ready line."""
        self.channel.exec_command("exec python3 -u -c " + shlex.quote(self.source))
        hello = json.loads(self._readline(time.monotonic() + timeout))
        if not hello.get("ready"):
            raise ShellError(f"router agent did not start: {hello}")


class Shell:
    """One SSH session to a router: a persistent ``sh`` channel and, on demand, the agent."""

    def __init__(self, client: paramiko.SSHClient, timeout: float = 10.0) -> None:
        self.client = client
        self.timeout = timeout
        self._channel: paramiko.Channel | None = None
        self.lock = threading.Lock()
        self.broken = False
        self._agent: Agent | None = None
        self.agent_source = AGENT_SOURCE  # what agent() starts (see agent_source())

    @property
    def healthy(self) -> bool:
        """True while the session can still be used."""
        transport = self.client.get_transport()
        agent_ok = self._agent is None or not self._agent.broken
        return not self.broken and agent_ok and transport is not None and transport.is_active()

    def agent(self, timeout: float = 10.0) -> Agent:
        """The router agent of this session, started on first use."""
        if self._agent is None or self._agent.broken:
            transport = self.client.get_transport()
            if transport is None or not transport.is_active():
                self.broken = True
                raise ShellError("SSH session is closed")
            try:
                channel = transport.open_session(timeout=timeout)
                channel.set_combine_stderr(False)
                agent = Agent(channel, self.agent_source)
                agent.start(timeout)
            except (OSError, paramiko.SSHException, ValueError) as err:
                self.broken = True
                raise ShellError(f"cannot start the router agent: {err}") from err
            self._agent = agent
        return self._agent

    def run(self, command: str, *, timeout: float = 30.0) -> CommandResult:
        """Run one shell command and return its output and exit status.

        Raises:
            ShellTimeout: no end marker within ``timeout`` seconds (the session is closed,
                since its output stream can no longer be trusted).
            ShellError: the channel closed.
        """
        nonce = secrets.token_hex(8)
        marker = f"__vpop_end_{nonce}__"
        payload = f"{command}\nprintf '\\n{marker} %d\\n' \"$?\"\n"
        started = time.monotonic()
        with self.lock:
            if self.broken:
                raise ShellError("session is broken; reconnect")
            try:
                channel = self._sh_channel()
                channel.sendall(payload.encode())
                buf = b""
                token = f"\n{marker} ".encode()
                while True:
                    idx = buf.find(token)
                    if idx >= 0:
                        end = buf.find(b"\n", idx + len(token))
                        if end >= 0:
                            status = int(buf[idx + len(token) : end])
                            break
                    remaining = timeout - (time.monotonic() - started)
                    if remaining <= 0:
                        raise ShellTimeout(f"no answer to {command[:60]!r} in {timeout}s")
                    channel.settimeout(remaining)
                    chunk = channel.recv(1 << 16)
                    if not chunk:
                        raise ShellError("router closed the session")
                    buf += chunk
            except (OSError, paramiko.SSHException, ShellError) as err:
                self.broken = True
                self.close()
                if isinstance(err, ShellError):
                    raise
                raise ShellError(f"session failed: {err}") from err
        return CommandResult(
            command, buf[:idx].decode(errors="replace"), status, time.monotonic() - started
        )

    def vtysh(self, *commands: str, timeout: float = 30.0) -> CommandResult:
        """Run vtysh with each command as a ``-c`` argument (vtysh stops at the first error)."""
        args = " ".join(f"-c {shlex.quote(c)}" for c in commands)
        return self.run(f"vtysh {args}", timeout=timeout)

    def _sh_channel(self) -> paramiko.Channel:
        """The ``sh`` channel, opened on first use (the agent does not need it)."""
        if self._channel is None:
            transport = self.client.get_transport()
            if transport is None or not transport.is_active():
                raise ShellError("SSH session is closed")
            channel = transport.open_session(timeout=self.timeout)
            channel.set_combine_stderr(True)
            channel.exec_command("exec /bin/sh")
            self._channel = channel
        return self._channel

    def close(self) -> None:
        """Close the channels and the SSH connection."""
        try:
            if self._channel is not None:
                self._channel.close()
            if self._agent is not None:
                self._agent.channel.close()
        finally:
            self.client.close()


def open_shell(
    hostname: str,
    port: int,
    username: str,
    password: str | None = None,
    key_file: str | None = None,
    timeout: float = 10.0,
    *,
    pins: HostKeyPins,
) -> Shell:
    """Open an SSH session to a router whose host key is pinned.

    Raises:
        HostKeyError: the router offered a key ``pins`` does not name; nothing was sent.
        ShellError: the router cannot be reached or refused the login.
    """
    try:
        sock = socket.create_connection((hostname, port), timeout=timeout)
    except OSError as err:
        raise ShellError(f"cannot open SSH to {hostname}:{port}: {err}") from err
    # small request/answer messages: never wait for Nagle
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client = paramiko.SSHClient()  # no host keys loaded: the policy decides every key
    client.set_missing_host_key_policy(PinnedHostKeyPolicy(pins, f"{hostname}:{port}"))
    try:
        client.connect(
            hostname,
            port=port,
            username=username,
            password=password,
            key_filename=key_file,
            look_for_keys=False,
            allow_agent=False,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            sock=sock,
            transport_factory=PinnedTransport(pins.algorithms),
        )
        if client.get_transport() is None:
            raise ShellError(f"no SSH transport to {hostname}:{port}")
    except (OSError, paramiko.SSHException, ShellError) as err:
        client.close()
        sock.close()
        if isinstance(err, ShellError):
            raise
        raise ShellError(f"cannot open SSH to {hostname}:{port}: {err}") from err
    return Shell(client, timeout)


def router_agent(task: Task) -> Agent:
    """The router agent of the task's host, on its (pooled) ``vpop_shell`` session.

    Raises:
        ShellError, OSError: the router cannot be reached or the agent not started.
    """
    shell: Shell = task.host.get_connection(CONNECTION_NAME, task.nornir.config)
    return shell.agent()


_POOL: dict[tuple[str, int, str], list[Shell]] = {}
_POOL_LOCK = threading.Lock()
POOL_SIZE = 4


def pool_get(key: tuple[str, int, str]) -> Shell | None:
    """A warm, healthy session for ``key`` from the process pool, if any."""
    with _POOL_LOCK:
        shells = _POOL.get(key, [])
        while shells:
            shell = shells.pop()
            if shell.healthy:
                return shell
            shell.close()
    return None


def pool_put(key: tuple[str, int, str], shell: Shell) -> None:
    """Keep a healthy session for the next run; close it otherwise."""
    with _POOL_LOCK:
        shells = _POOL.setdefault(key, [])
        if shell.healthy and len(shells) < POOL_SIZE:
            shells.append(shell)
            return
    shell.close()


def close_pool(key: tuple[str, int, str] | None = None) -> None:
    """Close the pooled sessions of ``key`` (hostname, port, username), or all of them."""
    with _POOL_LOCK:
        if key is None:
            shells = [s for group in _POOL.values() for s in group]
            _POOL.clear()
        else:
            shells = _POOL.pop(key, [])
    for shell in shells:
        shell.close()


class VpopShell:
    """Nornir connection plugin wrapping :class:`Shell`.

    Nornir objects are built fresh per run (so no run inherits another's failed hosts), but
    SSH sessions are kept warm in a small process-wide pool: ``close`` hands a healthy session
    back to the pool unless the connection's extras say ``pool: false``.
    """

    def open(
        self,
        hostname: str | None,
        username: str | None,
        password: str | None,
        port: int | None,
        platform: str | None,
        extras: dict[str, Any] | None = None,
        configuration: Config | None = None,
    ) -> None:
        """Open the session (called by Nornir's ``get_connection``)."""
        extras = extras or {}
        source = agent_source(extras)  # read first: a missing file leaves no session open
        self.pooled = bool(extras.get("pool", True))
        self.key = (hostname or "127.0.0.1", port or 22, username or "root")
        shell = pool_get(self.key) if self.pooled else None
        if shell is None:
            # the pins the vpop_credentials transform put in the extras: the router's name,
            # its known-hosts file and inventory fingerprints; with none, every key is refused
            router = str(extras.get("router") or self.key[0])
            try:
                pins = host_key_pins(
                    router,
                    self.key[0],
                    self.key[1],
                    known_hosts=extras.get("known_hosts"),
                    host_keys=extras.get("host_keys") or (),
                )
            except (OSError, ValueError) as err:
                raise ShellError(f"{router}: cannot read its host key pins: {err}") from err
            shell = open_shell(
                self.key[0],
                self.key[1],
                self.key[2],
                password=password or None,
                key_file=extras.get("key_file"),
                timeout=float(extras.get("timeout", 10.0)),
                pins=pins,
            )
        self.connection = shell
        self.connection.agent_source = source

    def close(self) -> None:
        """Return the session to the pool, or close it (Nornir's ``close_connections``)."""
        if self.pooled:
            pool_put(self.key, self.connection)
        else:
            self.connection.close()
