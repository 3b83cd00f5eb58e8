"""Pinned router host keys, vpop's side: where a router's pins come from, the connection
options that make every plugin enforce them, and writing a pin into a known-hosts file.

A router's host key is pinned by an entry of its known-hosts file (OpenSSH's format, keyed
``[host]:port`` as ``ssh`` keys it) and/or by ``host_key`` fingerprints in its inventory
data. The known-hosts file is, first found:

1. the ``known_hosts`` of the host's inventory data (a host, a group or the defaults file;
   the lab's hosts file names the lab's own this way);
2. ``VPOP_KNOWN_HOSTS``;
3. ``known_hosts`` beside the inventory's hosts file.

``vpop_shell`` sessions accept a key either pins (:mod:`tasks.connection`); Netmiko and
NAPALM's IOS driver read the same known-hosts file with paramiko's ``RejectPolicy``
(``ssh_strict``), so they honour its entries only. The checks that need no session live in
:mod:`tasks.hostkeys`; ``vpop router trust`` is :mod:`vpop.network.trust`.
"""

from __future__ import annotations

import base64
import os
import tempfile
from pathlib import Path
from typing import Any

from nornir.core.inventory import ConnectionOptions, Host

from tasks.connection import CONNECTION_NAME
from tasks.hostkeys import host_matches, names_exactly, parse_fingerprint
from vpop.core.errors import ConfigError
from vpop.core.settings import PROJECT_ROOT, Settings

KNOWN_HOSTS = "known_hosts"  # the file's name beside a hosts file, and the inventory data key
HOST_KEY = "host_key"  # inventory data: one fingerprint or a list of them
HOSTKEY_CONFIG_CODE = "VPOP-CFG-HOSTKEY"


def known_hosts_file(host: Host, settings: Settings, hosts_path: Path) -> Path:
    """The known-hosts file that pins ``host`` (see the module docstring for the order).

    Args:
        host: The inventory host.
        settings: The settings (``VPOP_KNOWN_HOSTS``).
        hosts_path: The inventory's hosts file.

    Raises:
        ConfigError: the inventory's ``known_hosts`` is not a string.
    """
    named = host.get(KNOWN_HOSTS)
    if named is not None:
        if not isinstance(named, str) or not named:
            raise ConfigError(
                f"inventory host {host.name}: data.{KNOWN_HOSTS} must be a file name",
                code=HOSTKEY_CONFIG_CODE,
            )
        return PROJECT_ROOT / Path(named).expanduser()
    if settings.known_hosts is not None:
        return settings.known_hosts.expanduser()
    return hosts_path.parent / KNOWN_HOSTS


def inventory_fingerprints(host: Host) -> list[str]:
    """The ``host_key`` fingerprints of ``host``'s inventory data, checked.

    Raises:
        ConfigError: ``host_key`` is not a fingerprint or a list of them.
    """
    value = host.get(HOST_KEY)
    if value is None:
        return []
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ConfigError(
            f"inventory host {host.name}: data.{HOST_KEY} must be a fingerprint or a list",
            code=HOSTKEY_CONFIG_CODE,
        )
    for text in values:
        try:
            parse_fingerprint(text)
        except ValueError as err:
            raise ConfigError(
                f"inventory host {host.name}: data.{HOST_KEY}: {err}", code=HOSTKEY_CONFIG_CODE
            ) from err
    return list(values)


def _merge_extras(host: Host, connection: str, extras: dict[str, Any]) -> None:
    """Add ``extras`` to what the host's ``connection`` options already resolve to.

    Nornir takes a host's own ``extras`` instead of its groups', not merged with them, so
    the host gets the resolved extras (its own, else its groups', else the defaults') plus
    these.
    """
    resolved = host.get_connection_parameters(connection).extras or {}
    options = host.connection_options.get(connection)
    if options is None:
        options = host.connection_options[connection] = ConnectionOptions()
    options.extras = {**resolved, **extras}


def pin_connections(host: Host, known_hosts: Path) -> None:
    """Make every connection plugin of ``host`` check its host key before logging in.

    ``vpop_shell`` gets the router's name, the known-hosts file and the inventory's
    fingerprints; Netmiko gets ``ssh_strict`` with the known-hosts file and no system
    host keys; NAPALM the same as ``optional_args`` (its IOS driver passes them to
    Netmiko).

    Raises:
        ConfigError: the inventory's ``host_key`` is malformed.
    """
    strict = {
        "ssh_strict": True,
        "system_host_keys": False,
        "alt_host_keys": True,
        "alt_key_file": str(known_hosts),
    }
    _merge_extras(
        host,
        CONNECTION_NAME,
        {
            "router": host.name,
            "known_hosts": str(known_hosts),
            "host_keys": inventory_fingerprints(host),
        },
    )
    _merge_extras(host, "netmiko", strict)
    napalm = host.get_connection_parameters("napalm").extras or {}
    _merge_extras(host, "napalm", {"optional_args": {**napalm.get("optional_args", {}), **strict}})


def known_hosts_line(name: str, key_type: str, key: bytes, comment: str = "") -> str:
    """One known-hosts line (``[host]:port ssh-ed25519 AAAA... comment``)."""
    line = f"{name} {key_type} {base64.b64encode(key).decode()}"
    return f"{line} {comment}\n" if comment else line + "\n"


def replace_known_host(text: str, name: str, line: str) -> str:
    """``text`` (a known-hosts file) with ``line`` as the one entry naming ``name``.

    Entries that name ``name`` itself (plainly or hashed) lose that name, and go when it
    was their only one; entries that match it by wildcard, markers (``@revoked``,
    ``@cert-authority``) and comments are kept as they are.
    """
    kept: list[str] = []
    for old in text.splitlines():
        fields = old.split()
        if not fields or fields[0].startswith(("#", "@")) or not host_matches(fields[0], name):
            kept.append(old)
            continue
        patterns = [p for p in fields[0].split(",") if not names_exactly(p, name)]
        if patterns:
            kept.append(" ".join([",".join(patterns), *fields[1:]]))
    return "".join(f"{k}\n" for k in kept) + line


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` at once: readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_known_hosts(path: Path, entries: list[str]) -> None:
    """Write a fresh known-hosts file of ``entries`` (lines), atomically (``vpop lab up``)."""
    write_atomically(path, "".join(entries))
