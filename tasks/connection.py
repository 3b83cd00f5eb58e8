"""``vpop_shell``: a lean Nornir connection plugin for Linux + FRR routers.

Netmiko finds the end of a command's output by reading for a prompt, which costs tens of
milliseconds per command even on a warm session. This plugin keeps one SSH channel with a
plain ``sh`` reading commands from stdin, and ends every command with a marker line carrying
a random nonce and the command's exit status, so the end of the output is known exactly, at
once, and a failing command is never mistaken for a successful one.

It is reached, like every connection, through ``task.host.get_connection("vpop_shell", ...)``.
"""

from __future__ import annotations

import json
import secrets
import shlex
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
from nornir.core.configuration import Config
from nornir.core.task import Task

CONNECTION_NAME = "vpop_shell"


class ShellError(Exception):
    """The router's shell could not be reached or stopped answering."""


class ShellTimeout(ShellError):
    """A command did not finish within its timeout; the session is closed."""


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


AGENT_SOURCE = (Path(__file__).resolve().parent / "router_agent.py").read_text()


class Agent:
    """The router-side agent (``tasks/router_agent.py``) on its own channel of the session."""

    def __init__(self, channel: paramiko.Channel) -> None:
        self.channel = channel
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
                answer: dict[str, Any] = json.loads(self._readline(deadline))
            except (OSError, paramiko.SSHException, ShellError, ValueError) as err:
                self.broken = True
                self.channel.close()
                if isinstance(err, ShellError):
                    raise
                raise ShellError(f"router agent failed: {err}") from err
        return answer

    def start(self, timeout: float) -> None:
        """Start the agent and wait for its ready line."""
        self.channel.exec_command("exec python3 -u -c " + shlex.quote(AGENT_SOURCE))
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
                agent = Agent(channel)
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
) -> Shell:
    """Open an SSH session to a router and start a plain ``sh`` on it."""
    try:
        sock = socket.create_connection((hostname, port), timeout=timeout)
    except OSError as err:
        raise ShellError(f"cannot open SSH to {hostname}:{port}: {err}") from err
    # small request/answer messages: never wait for Nagle
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client = paramiko.SSHClient()
    # lab and test routers get fresh host keys per lab; production hosts should pin them
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # noqa: S507
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
        )
        if client.get_transport() is None:
            raise ShellError(f"no SSH transport to {hostname}:{port}")
    except (OSError, paramiko.SSHException) as err:
        client.close()
        sock.close()
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
        self.pooled = bool(extras.get("pool", True))
        self.key = (hostname or "127.0.0.1", port or 22, username or "root")
        shell = pool_get(self.key) if self.pooled else None
        self.connection = shell or open_shell(
            self.key[0],
            self.key[1],
            self.key[2],
            password=password or None,
            key_file=extras.get("key_file"),
            timeout=float(extras.get("timeout", 10.0)),
        )

    def close(self) -> None:
        """Return the session to the pool, or close it (Nornir's ``close_connections``)."""
        if self.pooled:
            pool_put(self.key, self.connection)
        else:
            self.connection.close()
