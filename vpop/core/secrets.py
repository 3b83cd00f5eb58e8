"""The server's own secret key (session cookies, portal links), kept outside the repository.

``VPOP_SECRET_KEY`` if set; otherwise a key generated once into ``$VPOP_STATE_DIR/secret_key``
(default ``/var/lib/vpop``), readable by its owner only.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def secret_key() -> str:
    """The key; created on first use when not configured."""
    configured = os.environ.get("VPOP_SECRET_KEY")
    if configured:
        return configured
    path = Path(os.environ.get("VPOP_STATE_DIR", "/var/lib/vpop")) / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
    return path.read_text().strip()
