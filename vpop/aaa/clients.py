"""The NAS clients FreeRADIUS accepts: rows of ``radius_clients`` and their secret files."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from vpop.aaa.models import RadiusClient
from vpop.aaa.radius_state import (
    LOCAL_CLIENT,
    SECRET,
    RadiusError,
    RadiusPaths,
    UnknownRadiusClient,
    write_private,
)
from vpop.aaa.replies import FAMILIES
from vpop.core import validate
from vpop.core.audit import audit
from vpop.core.errors import BadInput
from vpop.core.settings import Settings


def read_secret(text: str, field: str = "secret") -> str:
    """Validate a shared secret read from a file: one non-empty line, no quotes or spaces.

    Args:
        text: the file's content (one trailing newline is allowed).
        field: the name to use in the error message.

    Returns:
        The secret.

    Raises:
        BadInput: the file is empty, has more than one line, or has characters FreeRADIUS's
            configuration cannot hold unescaped (space, quotes, backslash, ``$``).
    """
    secret = text[:-1] if text.endswith("\n") else text
    if secret.endswith("\r"):
        secret = secret[:-1]
    if not secret:
        raise BadInput(f"{field}: the secret file is empty; write the secret on one line")
    if "\n" in secret:
        raise BadInput(f"{field}: the secret file has more than one line; keep one line")
    if not SECRET.fullmatch(secret):
        raise BadInput(
            f"{field}: a secret is 1 to 128 printable ASCII characters without spaces, "
            "quotes, backslash or '$'"
        )
    return secret


def add_radius_client(
    session: Session, name: str, address: str, secret: str, *, family: str, actor: str
) -> RadiusClient:
    """Add a NAS client: its row, and its secret in ``radius/secrets/NAME`` (0600).

    Args:
        session: the transaction to add the row (and its audit entry) to.
        name: the client's name (a vpop name: lower case, digits, ``-``).
        address: the NAS's IP address.
        secret: the shared secret (see :func:`read_secret`).
        family: the attribute family of its replies (:data:`vpop.aaa.replies.FAMILIES`).
        actor: who adds it, for the audit log.

    Returns:
        The new row.

    Raises:
        BadInput: a bad name, address, secret or family, or the name or address is taken.
        RadiusError: the secret file cannot be written (the state directory).
    """
    name = validate.name(name, "name")
    address = validate.address(address, "address")
    family = validate.one_of(family, "family", FAMILIES)
    secret = read_secret(secret)
    if name == LOCAL_CLIENT:
        raise BadInput(f"name: {LOCAL_CLIENT!r} is the VPOP_RADIUS_SECRET client; pick another")
    if session.get(RadiusClient, name) is not None:
        raise BadInput(f"name: a RADIUS client {name!r} exists; remove it first")
    taken = session.scalar(select(RadiusClient).where(RadiusClient.address == address))
    if taken is not None:
        raise BadInput(f"address: {address} is client {taken.name!r}'s; remove it first")
    client = RadiusClient(name=name, address=address, family=family)
    session.add(client)
    audit(session, actor, "radius.client.add", f"radius-client:{name}", address=address,
          family=family)  # fmt: skip
    session.flush()
    path = RadiusPaths.from_settings().secrets / name
    try:
        write_private(path, secret + "\n")
    except OSError as err:  # the row is rolled back with the transaction
        raise RadiusError(f"cannot write the secret file {path}: {err.strerror}") from err
    return client


def list_radius_clients(session: Session) -> list[RadiusClient]:
    """Every NAS client, by name."""
    return list(session.scalars(select(RadiusClient).order_by(RadiusClient.name)))


def remove_radius_client(session: Session, name: str, *, actor: str) -> None:
    """Remove a NAS client and its secret file.

    Args:
        session: the transaction to delete the row (and add its audit entry) in.
        name: the client's name.
        actor: who removes it, for the audit log.

    Raises:
        BadInput: a malformed name.
        UnknownRadiusClient: no client has that name.
    """
    name = validate.name(name, "name")
    client = session.get(RadiusClient, name)
    if client is None:
        raise UnknownRadiusClient(f"no RADIUS client {name!r}; see `vpop radius client list`")
    session.delete(client)
    audit(session, actor, "radius.client.remove", f"radius-client:{name}", address=client.address)
    session.flush()
    (RadiusPaths.from_settings().secrets / name).unlink(missing_ok=True)


def config_clients(
    session: Session, paths: RadiusPaths, settings: Settings
) -> list[dict[str, str]]:
    """The clients FreeRADIUS knows: the table's, then the 127.0.0.1 client of the lab."""
    clients = []
    for client in list_radius_clients(session):
        try:
            secret = read_secret((paths.secrets / client.name).read_text(), client.name)
        except OSError as err:
            raise RadiusError(
                f"client {client.name}: its secret file {paths.secrets / client.name} cannot "
                f"be read ({err.strerror}); remove and add the client again"
            ) from err
        clients.append({"name": client.name, "address": client.address, "secret": secret})
    local = settings.radius_secret.get_secret_value() if settings.radius_secret else ""
    # a client of the table at 127.0.0.1 (with its own family) wins over the lab's
    if local and all(c["address"] != "127.0.0.1" for c in clients):
        secret = read_secret(local, "VPOP_RADIUS_SECRET")
        clients.append({"name": LOCAL_CLIENT, "address": "127.0.0.1", "secret": secret})
    return clients
