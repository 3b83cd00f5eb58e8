"""The server's own secret key (session cookies, portal links), kept outside the repository.

``VPOP_SECRET_KEY`` if set; otherwise a key generated once into ``$VPOP_STATE_DIR/secret_key``
(default ``/var/lib/vpop``), readable by its owner only.
"""

from __future__ import annotations

import os
import secrets

from vpop.core.settings import load_settings


def secret_key() -> str:
    """The key; created on first use when not configured."""
    settings = load_settings()
    if settings.secret_key is not None and settings.secret_key.get_secret_value():
        return settings.secret_key.get_secret_value()
    path = settings.state_dir / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
    return path.read_text().strip()
