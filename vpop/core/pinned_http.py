"""An HTTP(S) client that connects to exactly the addresses it checked (callbacks).

A callback URL names a host chosen by a caller. Checking the host's addresses and then letting
a library resolve the name again to connect leaves a window: a DNS answer that changes in
between (rebinding) sends the request to an address nobody checked, such as this host's
loopback. Here the name is resolved once, every address it resolves to is checked, and the
connection goes to those addresses only. The request still names the URL's host: its ``Host``
header is the URL's, and for https the certificate is verified against the URL's host name,
which is also the SNI sent. Redirects are not followed (a 3xx is the receiver's answer), and
no proxy from the environment is used, since a proxy would resolve the name itself.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from vpop.core.errors import BadInput

ALLOW_HINT = "set VPOP_CALLBACK_ALLOW_PRIVATE=1 to allow callbacks there"
DEFAULT_PORTS = {"http": 80, "https": 443}


class DestinationRefused(BadInput):
    """A callback URL is not http(s), cannot be resolved, or resolves to an internal address."""

    code = "VPOP-400-CALLBACK-URL"


@dataclass(frozen=True)
class Target:
    """A checked destination: where the URL points and the addresses it may be reached at."""

    scheme: str
    host: str
    port: int
    path: str
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class Answer:
    """What the receiver answered, and the checked address it answered from."""

    status: int
    location: str | None
    address: str


def is_internal(address: str) -> bool:
    """Whether ``address`` is loopback, private, link-local, reserved, multicast or unspecified.

    Args:
        address: an IPv4 or IPv6 address as text (an IPv6 scope suffix is allowed).
    """
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_multicast
        or ip.is_unspecified
    )


def resolve(host: str, port: int) -> tuple[str, ...]:
    """Every address ``host`` resolves to for TCP, in the resolver's order, each once.

    Raises:
        OSError: the name does not resolve.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return tuple(dict.fromkeys(str(info[4][0]) for info in infos))


def checked_target(url: str, *, allow_private: bool) -> Target:
    """Resolve ``url``'s host once and check every address it resolves to.

    Args:
        url: an http or https URL.
        allow_private: let internal addresses pass (``VPOP_CALLBACK_ALLOW_PRIVATE``).

    Raises:
        DestinationRefused: not an http(s) URL with a host, the host does not resolve, or
            (unless ``allow_private``) one of its addresses is internal.
    """
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise DestinationRefused(f"{url!r} is not an http or https URL")
    host = parts.hostname
    if not host:
        raise DestinationRefused("no host in the callback URL")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError as err:
        raise DestinationRefused(f"bad port in the callback URL: {err}") from err
    try:
        addresses = resolve(host, port)
    except OSError as err:
        raise DestinationRefused(f"cannot resolve {host}: {err}") from err
    if not addresses:
        raise DestinationRefused(f"cannot resolve {host}: no address")
    if not allow_private:
        for address in addresses:
            if is_internal(address):
                raise DestinationRefused(f"{host} is {address}, an internal address; {ALLOW_HINT}")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(scheme, host, port, path, addresses)


def _connect(addresses: Sequence[str], port: int, timeout: float | None) -> socket.socket:
    """A TCP connection to the first of ``addresses`` that answers (all of them checked)."""
    error: OSError = OSError("no address to connect to")
    for address in addresses:
        try:
            return socket.create_connection((address, port), timeout)
        except OSError as err:
            error = err
    raise error


class PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection that names ``host`` but connects only to the checked addresses."""

    def __init__(self, target: Target, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self.addresses = target.addresses
        self.peer = ""

    def connect(self) -> None:
        """Connect to a checked address; the name is not resolved again."""
        self.sock = _connect(self.addresses, self.port, self.timeout)
        self.peer = str(self.sock.getpeername()[0])


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """An HTTPS connection to a checked address, TLS verified against the URL's host name."""

    def __init__(self, target: Target, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(target.host, target.port, timeout=timeout, context=context)
        self.addresses = target.addresses
        self.tls = context
        self.peer = ""

    def connect(self) -> None:
        """Connect to a checked address, then TLS with SNI and verification of the URL's host."""
        sock = _connect(self.addresses, self.port, self.timeout)
        self.peer = str(sock.getpeername()[0])
        try:
            self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


def post(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    timeout: float,
    allow_private: bool,
    context: ssl.SSLContext | None = None,
) -> Answer:
    """POST ``body`` to ``url``, connecting only to addresses that passed the check.

    Args:
        url: the http(s) URL; its host is resolved once, here.
        body: the request body.
        headers: request headers (``Host`` and ``Content-Length`` are set from the URL and body).
        timeout: seconds for connecting and for each read.
        allow_private: let internal addresses pass (``VPOP_CALLBACK_ALLOW_PRIVATE``).
        context: TLS context for https (default ``ssl.create_default_context()``: the system's
            trust store, host name checked).

    Returns:
        The answer's status and ``Location`` (a redirect is returned, not followed).

    Raises:
        DestinationRefused: the URL may not be sent to (see :func:`checked_target`).
        OSError: no checked address could be reached, or TLS failed (``ssl.SSLError``).
        http.client.HTTPException: the receiver's answer is not HTTP.
    """
    target = checked_target(url, allow_private=allow_private)
    connection: PinnedHTTPConnection | PinnedHTTPSConnection
    if target.scheme == "https":
        tls = context if context is not None else ssl.create_default_context()
        connection = PinnedHTTPSConnection(target, timeout, tls)
    else:
        connection = PinnedHTTPConnection(target, timeout)
    try:
        connection.request("POST", target.path, body=body, headers=dict(headers))
        response = connection.getresponse()
        return Answer(response.status, response.getheader("location"), connection.peer)
    finally:
        connection.close()
