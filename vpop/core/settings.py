"""Settings: embedded defaults, overridden by ``VPOP_*`` environment variables.

Secrets (router credentials, webhook keys) are never defaults: they come from the
environment or from files outside the repository (the lab writes its own under
``VPOP_LAB_DIR``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _env(name: str, default: str) -> str:
    return os.environ.get(f"VPOP_{name}", default)


@dataclass(frozen=True)
class Settings:
    """Runtime settings; build with :func:`load_settings`."""

    lab_dir: Path = field(default_factory=lambda: Path(_env("LAB_DIR", "/run/vpop-lab")))
    database_url: str = field(
        default_factory=lambda: _env("DATABASE_URL", f"sqlite:///{PROJECT_ROOT}/var/vpop.sqlite")
    )
    queue_url: str = field(
        default_factory=lambda: _env("QUEUE_URL", f"sqlite:///{PROJECT_ROOT}/var/queue.sqlite")
    )
    inventory_hosts: str = field(default_factory=lambda: _env("INVENTORY_HOSTS", ""))

    @property
    def lab_hosts_file(self) -> Path:
        """The Nornir hosts file that ``vpop lab up`` writes."""
        return self.lab_dir / "hosts.yaml"


def load_settings() -> Settings:
    """Read settings from the environment now (not at import time)."""
    return Settings()
