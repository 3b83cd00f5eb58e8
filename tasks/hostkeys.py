"""Pinned SSH host keys, the part that needs no session: fingerprints, known-hosts files
(OpenSSH's format, read as ``ssh`` reads it), the pins of one router, and a paramiko
transport factory that negotiates the pinned key types first.

:mod:`tasks.connection` refuses any key that is not pinned; ``vpop router trust``
(:mod:`vpop.network.hostkeys`) writes the known-hosts file.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko

FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]{43}(?![A-Za-z0-9+/])")
# key types as known-hosts files and `ssh-keygen -lf` name them -> the host key algorithms
# that negotiate them (an RSA key is signed with rsa-sha2-*, never SHA-1 ssh-rsa)
KEY_ALGORITHMS: dict[str, tuple[str, ...]] = {
    "ssh-ed25519": ("ssh-ed25519",),
    "ED25519": ("ssh-ed25519",),
    "ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256"),
    "RSA": ("rsa-sha2-512", "rsa-sha2-256"),
    "ecdsa-sha2-nistp256": ("ecdsa-sha2-nistp256",),
    "ecdsa-sha2-nistp384": ("ecdsa-sha2-nistp384",),
    "ecdsa-sha2-nistp521": ("ecdsa-sha2-nistp521",),
    "ECDSA": ("ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521"),
}


def fingerprint(blob: bytes) -> str:
    """A public key's SHA256 fingerprint as ``ssh-keygen -lf`` prints it (``SHA256:...``)."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def parse_fingerprint(text: str) -> tuple[str, str]:
    """The key type (or ``""``) and fingerprint of ``SHA256:...``, ``ssh-ed25519 SHA256:...``
    or a whole ``ssh-keygen -lf`` line (``256 SHA256:... comment (ED25519)``).

    Raises:
        ValueError: no SHA256 fingerprint in ``text``.
    """
    found = FINGERPRINT.search(text)
    if found is None:
        raise ValueError(f"{text!r} is not a SHA256 fingerprint (ssh-keygen -lf prints SHA256:...)")
    kind = re.search(r"\((\w+)\)\s*$", text)
    words = [w for w in text.split() if w in KEY_ALGORITHMS]
    key_type = words[0] if words else kind.group(1) if kind else ""
    key_type = {"ED25519": "ssh-ed25519", "RSA": "ssh-rsa"}.get(key_type, key_type)
    return (key_type if key_type in KEY_ALGORITHMS else ""), found.group(0)


def known_host_name(hostname: str, port: int) -> str:
    """The name a known-hosts file gives a host: ``host`` on port 22, else ``[host]:port``."""
    return hostname if port == 22 else f"[{hostname}]:{port}"


def _pattern_matches(pattern: str, name: str) -> bool:
    """OpenSSH's host patterns: ``|1|salt|hash`` (hashed), ``*`` and ``?`` wildcards."""
    if pattern.startswith("|1|"):
        parts = pattern.split("|")
        if len(parts) != 4:
            return False
        try:
            salt, digest = base64.b64decode(parts[2]), base64.b64decode(parts[3])
        except ValueError:
            return False
        return hmac.compare_digest(hmac.new(salt, name.encode(), hashlib.sha1).digest(), digest)
    regex = re.escape(pattern.lower()).replace(r"\*", ".*").replace(r"\?", ".")
    return re.fullmatch(regex, name.lower()) is not None


def names_exactly(pattern: str, name: str) -> bool:
    """Whether one host pattern names ``name`` itself (plainly or hashed), not by wildcard."""
    if pattern.startswith("|1|"):
        return _pattern_matches(pattern, name)
    return pattern.lower() == name.lower()


def host_matches(patterns: str, name: str) -> bool:
    """Whether a known-hosts line's host field (comma-separated patterns) names ``name``."""
    matched = False
    for pattern in patterns.split(","):
        if pattern.startswith("!"):
            if _pattern_matches(pattern[1:], name):
                return False
        elif _pattern_matches(pattern, name):
            matched = True
    return matched


def read_known_hosts(path: Path, name: str) -> list[tuple[str, str]]:
    """The keys an OpenSSH known-hosts file pins for ``name``, as (type, fingerprint).

    ``@revoked`` keys are left out; ``@cert-authority`` lines are not supported (ignored),
    nor are lines that do not parse. A missing file pins nothing.

    Raises:
        OSError: the file exists but cannot be read.
    """
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return []
    keys: list[tuple[str, str]] = []
    revoked: set[str] = set()
    for line in text.splitlines():
        fields = line.split()
        marker = fields.pop(0) if fields and fields[0].startswith("@") else ""
        if len(fields) < 3 or fields[0].startswith("#") or not host_matches(fields[0], name):
            continue
        try:
            key = (fields[1], fingerprint(base64.b64decode(fields[2], validate=True)))
        except ValueError:
            continue
        if marker == "@revoked":
            revoked.add(key[1])
        elif not marker:
            keys.append(key)
    return [k for k in keys if k[1] not in revoked]


@dataclass(frozen=True)
class HostKeyPins:
    """The host keys a router may offer: (type or ``""``, fingerprint), and where from."""

    router: str
    keys: tuple[tuple[str, str], ...]
    source: str

    @property
    def algorithms(self) -> list[str]:
        """The host key algorithms of the pinned keys, to be negotiated first."""
        return [a for t, _ in self.keys for a in KEY_ALGORITHMS.get(t, ())]


def host_key_pins(
    router: str,
    hostname: str,
    port: int,
    *,
    known_hosts: str | None = None,
    host_keys: Iterable[str] = (),
) -> HostKeyPins:
    """A router's pins: its known-hosts entries and the inventory's fingerprints.

    Args:
        router: The router's name (in errors).
        hostname: Its SSH address.
        port: Its SSH port.
        known_hosts: The known-hosts file to read, if any.
        host_keys: Fingerprints from the inventory (see :func:`parse_fingerprint`).

    Raises:
        OSError: the known-hosts file exists but cannot be read.
        ValueError: a fingerprint does not parse.
    """
    keys: list[tuple[str, str]] = []
    sources: list[str] = []
    if known_hosts:
        keys += read_known_hosts(Path(known_hosts), known_host_name(hostname, port))
        sources.append(f"known hosts {known_hosts}")
    fingerprints = list(host_keys)
    if fingerprints:
        keys += [parse_fingerprint(text) for text in fingerprints]
        sources.append("inventory host_key")
    return HostKeyPins(router, tuple(dict.fromkeys(keys)), ", ".join(sources) or "no pins")


class PinnedTransport:
    """A paramiko transport factory that negotiates the pinned key types first, so that a
    router with several host keys shows the one that was pinned."""

    def __init__(self, algorithms: Sequence[str]) -> None:
        self.algorithms = algorithms

    def __call__(self, sock: Any, /, **kwargs: Any) -> paramiko.Transport:
        """A transport on ``sock`` (paramiko's ``transport_factory`` protocol)."""
        transport = paramiko.Transport(sock, **kwargs)
        options = transport.get_security_options()
        first = [a for a in dict.fromkeys(self.algorithms) if a in options.key_types]
        options.key_types = first + [a for a in options.key_types if a not in first]
        return transport
