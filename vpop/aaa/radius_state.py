"""Where vpop's FreeRADIUS keeps its files, and the two secrets it holds: the shared token
between rlm_rest and vpop's policy endpoints, and the NAS clients' secret files (0600, under
``$VPOP_STATE_DIR/radius``; never in git or the database)."""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from vpop.core.errors import NotFound, VpopError
from vpop.core.settings import Settings, load_settings

LOCAL_CLIENT = "localhost"  # the 127.0.0.1 client VPOP_RADIUS_SECRET describes
# printable ASCII without quotes, backslash and "$": the secret is written into a
# single-quoted FreeRADIUS string, which must not need escaping
SECRET = re.compile(r"[!#%&(-\[\]-~]{1,128}", re.ASCII)


class RadiusError(VpopError):
    """FreeRADIUS is missing, refuses vpop's configuration, or does not start or stop."""

    code = "VPOP-RADIUS"


class UnknownRadiusClient(NotFound):
    """No NAS client has that name."""

    code = "VPOP-404-RADIUS-CLIENT"


@dataclass(frozen=True)
class RadiusPaths:
    """Where FreeRADIUS's configuration, secrets, token, pid and log files live."""

    root: Path

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> RadiusPaths:
        """The paths under ``$VPOP_STATE_DIR/radius``."""
        settings = settings or load_settings()
        return cls(settings.state_dir / "radius")

    @property
    def secrets(self) -> Path:
        """The directory of the NAS clients' secret files (one file per client name)."""
        return self.root / "secrets"

    @property
    def token(self) -> Path:
        """The shared token rlm_rest sends to vpop's policy endpoints."""
        return self.root / "token"

    @property
    def pid_file(self) -> Path:
        """FreeRADIUS's PID while it runs."""
        return self.root / "radiusd.pid"

    @property
    def log_file(self) -> Path:
        """FreeRADIUS's log when it runs in the background."""
        return self.root / "radiusd.log"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by its owner only (0600)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def radius_token(paths: RadiusPaths | None = None) -> str:
    """The shared token of rlm_rest and the policy endpoints; created on first use.

    Args:
        paths: where it lives (default: under ``$VPOP_STATE_DIR/radius``).

    Returns:
        64 hexadecimal characters (safe in FreeRADIUS's expanded strings).
    """
    paths = paths or RadiusPaths.from_settings()
    if not paths.token.exists():
        paths.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(paths.token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first: read theirs
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32) + "\n")
    return paths.token.read_text().strip()


def token_matches(presented: str | None, paths: RadiusPaths | None = None) -> bool:
    """Whether ``presented`` is the shared token (compared in constant time).

    Never creates the token: while no ``vpop radius`` command has run, nothing matches.

    Args:
        presented: the token a caller sent (``None``: none sent).
        paths: where the token lives (default: under ``$VPOP_STATE_DIR/radius``).
    """
    paths = paths or RadiusPaths.from_settings()
    if not presented:
        return False
    try:
        expected = paths.token.read_text().strip()
    except OSError:
        return False
    return bool(expected) and secrets.compare_digest(presented.encode(), expected.encode())
