"""Callbacks connect to the address that was checked, never to a second answer of the resolver.

A test resolver stands in for DNS (``socket.getaddrinfo`` for the test's names only) and every
TCP connection vpop opens is recorded; connections to the documentation address 203.0.113.10
are refused by the recorder, so nothing is ever sent there. vpop's rule counts the
documentation ranges as internal (Python's ``is_private``), so here 203.0.113.0/24 stands for
the internet: the address check lets it pass and judges every other address by the real rule.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from standardwebhooks.webhooks import Webhook

from vpop.core import pinned_http
from vpop.core.callbacks import post_signed, refused_destination

SECRET = "whsec_" + base64.b64encode(bytes(range(72, 104))).decode()
PUBLIC = "203.0.113.10"  # documentation range: nothing listens there, nothing goes there
INTERNET = ipaddress.ip_network("203.0.113.0/24")


@dataclass
class Listener:
    """A receiver on 127.0.0.1: what it was sent, and the TLS server names it was asked for."""

    port: int
    answer: int = 204
    location: str | None = None
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)


@dataclass
class Network:
    """The test's DNS (name -> answers, one per call, the last repeated) and what vpop did."""

    answers: dict[str, list[list[str]]] = field(default_factory=dict)
    lookups: list[str] = field(default_factory=list)
    connects: list[tuple[str, int]] = field(default_factory=list)

    def addresses(self, host: str) -> list[str]:
        """The answer for this lookup of ``host`` (counted)."""
        self.lookups.append(host)
        answers = self.answers[host]
        return answers[min(self.lookups.count(host), len(answers)) - 1]


@pytest.fixture
def network(monkeypatch: pytest.MonkeyPatch) -> Network:
    """The test resolver and the connection recorder, in place of the socket module's."""
    net = Network()
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.create_connection

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in net.answers:
            return real_getaddrinfo(host, port, *args, **kwargs)
        return [
            (
                socket.AF_INET6 if ":" in a else socket.AF_INET,
                socket.SOCK_STREAM,
                socket.IPPROTO_TCP,
                "",
                (a, int(port or 0)),
            )
            for a in net.addresses(host)
        ]

    def create_connection(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        net.connects.append((address[0], address[1]))
        if address[0] == PUBLIC:
            raise ConnectionRefusedError(f"test: no connection to {PUBLIC}")
        return real_connect(address, *args, **kwargs)

    real_is_internal = pinned_http.is_internal

    def is_internal(address: str) -> bool:
        return ipaddress.ip_address(address) not in INTERNET and real_is_internal(address)

    monkeypatch.setattr(pinned_http, "is_internal", is_internal)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    return net


@pytest.fixture
def listen() -> Iterator[Callable[..., Listener]]:
    """Start receivers on 127.0.0.1 (optionally TLS); all stopped after the test."""
    servers: list[tuple[HTTPServer, threading.Thread]] = []

    def start(
        answer: int = 204, location: str | None = None, tls: ssl.SSLContext | None = None
    ) -> Listener:
        server = HTTPServer(("127.0.0.1", 0), _Handler)
        listener = Listener(server.server_port, answer, location)
        server.listener = listener  # type: ignore[attr-defined]
        if tls is not None:

            def sni(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
                listener.server_names.append(name)

            tls.sni_callback = sni
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return listener

    try:
        yield start
    finally:
        for server, thread in servers:
            server.shutdown()
            server.server_close()
            thread.join()


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        listener: Listener = self.server.listener  # type: ignore[attr-defined]
        length = int(self.headers["Content-Length"])
        headers = {k.lower(): v for k, v in self.headers.items()}
        listener.received.append((headers, self.rfile.read(length)))
        self.send_response(listener.answer)
        if listener.location:
            self.send_header("Location", listener.location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("VPOP_CALLBACK_SECRET", SECRET)
    monkeypatch.delenv("VPOP_CALLBACK_ALLOW_PRIVATE", raising=False)
    return SECRET


def test_a_name_rebound_to_loopback_after_the_check_never_reaches_it(
    network: Network, listen: Callable[..., Listener], secret: str
) -> None:
    receiver = listen()
    # public when checked, loopback on any later lookup: the old check-then-urlopen sent here
    network.answers["rebind.example"] = [[PUBLIC], ["127.0.0.1"]]
    outcome = post_signed(f"http://rebind.example:{receiver.port}/hook", "msg-1", "{}")
    assert outcome.startswith("failed:"), outcome
    assert network.lookups == ["rebind.example"]
    assert network.connects == [(PUBLIC, receiver.port)]
    assert receiver.received == []


def test_a_name_with_an_internal_address_is_not_sent_and_nothing_is_connected(
    network: Network, listen: Callable[..., Listener], secret: str
) -> None:
    receiver = listen()
    network.answers["mixed.example"] = [[PUBLIC, "127.0.0.1"]]
    url = f"http://mixed.example:{receiver.port}/hook"
    outcome = post_signed(url, "msg-2", "{}")
    assert outcome.startswith("not sent:") and "127.0.0.1, an internal address" in outcome
    assert network.connects == []
    assert receiver.received == []
    reason = refused_destination(url)
    assert reason is not None and "internal address" in reason


def test_allowed_private_reaches_the_listener_with_the_urls_host_header(
    network: Network,
    listen: Callable[..., Listener],
    secret: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VPOP_CALLBACK_ALLOW_PRIVATE", "1")
    receiver = listen()
    network.answers["receiver.example"] = [["127.0.0.1"]]
    payload = '{"type": "order.finished"}'
    outcome = post_signed(f"http://receiver.example:{receiver.port}/hook?a=1", "msg-3", payload)
    assert outcome == "delivered: HTTP 204"
    assert network.connects == [("127.0.0.1", receiver.port)]
    [(headers, raw)] = receiver.received
    assert headers["host"] == f"receiver.example:{receiver.port}"
    assert Webhook(secret).verify(raw, headers) == {"type": "order.finished"}


def test_a_redirect_is_reported_not_followed(
    network: Network,
    listen: Callable[..., Listener],
    secret: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VPOP_CALLBACK_ALLOW_PRIVATE", "1")
    elsewhere = listen()
    redirecting = listen(answer=307, location=f"http://127.0.0.1:{elsewhere.port}/")
    network.answers["receiver.example"] = [["127.0.0.1"]]
    outcome = post_signed(f"http://receiver.example:{redirecting.port}/", "msg-4", "{}")
    assert outcome.startswith("failed: HTTP 307") and "not followed" in outcome
    assert len(redirecting.received) == 1
    assert elsewhere.received == []
    assert network.connects == [("127.0.0.1", redirecting.port)]


def _certificate(name: str) -> tuple[bytes, bytes]:
    """A self-signed certificate for DNS name ``name`` (no IP address in it), and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _tls_pair(name: str, tmp_path: Any) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context presenting a certificate for ``name``; a client context trusting it."""
    cert, key = _certificate(name)
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    client = ssl.create_default_context(cadata=cert.decode())
    return server, client


def test_https_goes_to_the_pinned_address_with_the_urls_name_for_sni_and_verification(
    network: Network, listen: Callable[..., Listener], tmp_path: Any
) -> None:
    server_tls, client_tls = _tls_pair("receiver.example", tmp_path)
    receiver = listen(tls=server_tls)
    network.answers["receiver.example"] = [["127.0.0.1"]]
    answer = pinned_http.post(
        f"https://receiver.example:{receiver.port}/hook",
        b"{}",
        {"content-type": "application/json"},
        timeout=5.0,
        allow_private=True,
        context=client_tls,
    )
    assert (answer.status, answer.address) == (204, "127.0.0.1")
    assert network.connects == [("127.0.0.1", receiver.port)]
    assert receiver.server_names == ["receiver.example"]
    [(headers, _)] = receiver.received
    # the certificate names receiver.example only: checking it against 127.0.0.1 would fail
    assert headers["host"] == f"receiver.example:{receiver.port}"


def test_https_refuses_a_certificate_for_another_name(
    network: Network, listen: Callable[..., Listener], tmp_path: Any
) -> None:
    server_tls, client_tls = _tls_pair("other.example", tmp_path)
    receiver = listen(tls=server_tls)
    network.answers["receiver.example"] = [["127.0.0.1"]]
    with pytest.raises(ssl.SSLCertVerificationError, match="receiver.example"):
        pinned_http.post(
            f"https://receiver.example:{receiver.port}/hook",
            b"{}",
            {},
            timeout=5.0,
            allow_private=True,
            context=client_tls,
        )
    assert receiver.received == []
