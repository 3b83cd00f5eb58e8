"""``vpop router trust``'s use cases: read the host key a router offers, without logging in,
and pin it in the router's known-hosts file once the operator has confirmed it (audited).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tasks.connection import CONNECTION_NAME, ShellError, offered_host_key
from tasks.hostkeys import fingerprint, host_key_pins, known_host_name, read_known_hosts
from vpop.core.audit import audit
from vpop.core.db import session_scope
from vpop.core.errors import ConfigError, NotFound, VpopError
from vpop.network.factory import open_nornir
from vpop.network.hostkeys import (
    HOSTKEY_CONFIG_CODE,
    known_hosts_line,
    replace_known_host,
    write_atomically,
)


class HostKeyScanFailed(VpopError):
    """The router's host key could not be read: unreachable, or not answering SSH."""

    code = "VPOP-502-HOSTKEY-SCAN"
    status = 502


@dataclass(frozen=True)
class OfferedKey:
    """The host key a router offers now, and what is pinned for it."""

    router: str
    hostname: str
    port: int
    known_hosts: Path
    key_type: str
    key: bytes
    pinned: tuple[tuple[str, str], ...]  # (type or "", fingerprint): file and inventory
    in_file: bool  # the offered key is already an entry of the known-hosts file

    @property
    def fingerprint(self) -> str:
        """The offered key's ``SHA256:...`` fingerprint."""
        return fingerprint(self.key)

    @property
    def pinned_fingerprints(self) -> list[str]:
        """The fingerprints pinned now (empty: the router is unknown)."""
        return [fp for _, fp in self.pinned]

    @property
    def is_pinned(self) -> bool:
        """Whether vpop's sessions accept the offered key today."""
        return self.fingerprint in self.pinned_fingerprints


def offered_key(router: str, *, timeout: float = 10.0) -> OfferedKey:
    """Connect to ``router`` without credentials and read the host key it offers.

    The key types pinned now are negotiated first, so the key shown is the one vpop's
    sessions are offered.

    Args:
        router: The router's name in the inventory.
        timeout: Seconds to wait for the router.

    Raises:
        NotFound: no such router in the inventory (``VPOP-404-ROUTER``).
        ConfigError: its pins cannot be read (``VPOP-CFG-HOSTKEY``).
        HostKeyScanFailed: the router does not answer SSH.
    """
    with open_nornir() as nr:
        host = nr.inventory.hosts.get(router)
        if host is None:
            known = ", ".join(sorted(nr.inventory.hosts)) or "none"
            raise NotFound(
                f"unknown router {router!r}; the inventory's routers are: {known}",
                code="VPOP-404-ROUTER",
            )
        params = host.get_connection_parameters(CONNECTION_NAME)
    extras = params.extras or {}
    hostname, port = params.hostname or "127.0.0.1", params.port or 22
    known_hosts = Path(extras["known_hosts"])
    try:
        pins = host_key_pins(
            router, hostname, port, known_hosts=str(known_hosts), host_keys=extras["host_keys"]
        )
        in_file = read_known_hosts(known_hosts, known_host_name(hostname, port))
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"{router}: cannot read its pins: {err}", code=HOSTKEY_CONFIG_CODE
        ) from err
    try:
        key_type, key = offered_host_key(
            hostname, port, algorithms=pins.algorithms, timeout=timeout
        )
    except ShellError as err:
        raise HostKeyScanFailed(f"{router}: {err}") from err
    return OfferedKey(
        router=router,
        hostname=hostname,
        port=port,
        known_hosts=known_hosts,
        key_type=key_type,
        key=key,
        pinned=pins.keys,
        in_file=fingerprint(key) in [fp for _, fp in in_file],
    )


def pin_offered_key(offered: OfferedKey, actor: str, url: str | None = None) -> None:
    """Pin ``offered`` (the key the operator saw) as the router's known-hosts entry.

    The file is replaced atomically, the router's former entries of its own name dropped;
    the audit entry (``router.trust``: old and new fingerprints) is written in the same
    transaction, and the file is put back as it was when that transaction fails.

    Args:
        offered: What :func:`offered_key` read and the operator confirmed.
        actor: Who pins it, for the audit log.
        url: The database URL (default: ``VPOP_DATABASE_URL``).

    Raises:
        ConfigError: the known-hosts file cannot be read or written.
    """
    path = offered.known_hosts
    name = known_host_name(offered.hostname, offered.port)
    try:
        before: str | None = path.read_text()
    except FileNotFoundError:
        before = None
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err}", code=HOSTKEY_CONFIG_CODE) from err
    line = known_hosts_line(name, offered.key_type, offered.key, f"vpop:{offered.router}")
    written = False
    try:
        with session_scope(url) as session:
            audit(
                session,
                actor,
                "router.trust",
                f"router:{offered.router}",
                known_hosts=str(path),
                old=offered.pinned_fingerprints,
                new=offered.fingerprint,
                key_type=offered.key_type,
            )
            session.flush()  # the database takes the entry before the file changes
            try:
                write_atomically(path, replace_known_host(before or "", name, line))
            except OSError as err:
                raise ConfigError(f"cannot write {path}: {err}", code=HOSTKEY_CONFIG_CODE) from err
            written = True
    except BaseException:
        if written:
            if before is None:
                path.unlink(missing_ok=True)
            else:
                write_atomically(path, before)
        raise
