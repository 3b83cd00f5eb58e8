"""A small SSH server (paramiko's server side) for host key tests: it offers a host key of
the test's choosing and records every authentication attempt, so a test can tell whether a
client sent credentials before it refused the key."""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import paramiko
from paramiko.common import AUTH_FAILED, AUTH_SUCCESSFUL, OPEN_SUCCEEDED

from vpop.lab.processes import keypair


def new_host_key() -> tuple[paramiko.PKey, str]:
    """A fresh Ed25519 host key and its public line (``ssh-ed25519 AAAA...``)."""
    private, public = keypair()
    return paramiko.Ed25519Key(file_obj=io.StringIO(private.decode())), public.decode()


class _Interface(paramiko.ServerInterface):
    def __init__(self, attempts: list[tuple[str, str]]) -> None:
        self.attempts = attempts

    def get_allowed_auths(self, username: str) -> str:
        return "password,publickey"

    def check_auth_none(self, username: str) -> int:
        self.attempts.append(("none", username))
        return AUTH_FAILED

    def check_auth_password(self, username: str, password: str) -> int:
        self.attempts.append(("password", username))
        return AUTH_SUCCESSFUL

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        self.attempts.append(("publickey", username))
        return AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return OPEN_SUCCEEDED


@dataclass
class FakeSshd:
    """The listening server: its port, its host key, the attempts it has seen."""

    port: int
    host_key: paramiko.PKey
    public_line: str
    attempts: list[tuple[str, str]] = field(default_factory=list)
    transports: list[paramiko.Transport] = field(default_factory=list)

    def settled(self, timeout: float = 5.0) -> None:
        """Wait (bounded) until every session the server accepted has ended."""
        deadline = time.monotonic() + timeout
        while any(t.is_active() for t in self.transports):
            if time.monotonic() > deadline:
                raise AssertionError("the fake sshd's sessions did not end")
            time.sleep(0.01)


@contextmanager
def fake_sshd() -> Iterator[FakeSshd]:
    """Serve SSH on 127.0.0.1 (a free port) until the block ends."""
    key, public = new_host_key()
    listener = socket.create_server(("127.0.0.1", 0))
    server = FakeSshd(listener.getsockname()[1], key, public)

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            transport = paramiko.Transport(conn)
            transport.add_server_key(key)
            server.transports.append(transport)
            try:
                transport.start_server(server=_Interface(server.attempts))
            except (paramiko.SSHException, EOFError, OSError):
                transport.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        listener.close()
        for transport in server.transports:
            transport.close()
        thread.join(timeout=5)
