"""A migrated SQLite file made once per test process and copied for each test.

Running every migration costs a third of a second; the API and page tests each want a fresh
database, hundreds of times. The first call migrates a template into a private temporary
directory; every call copies it (a file copy of an idle, closed database is a consistent
database). PostgreSQL tests still migrate their own cluster.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from vpop.core.db import dispose_engines
from vpop.core.migrate import upgrade

_template: Path | None = None


def migrated_sqlite(path: Path) -> str:
    """Put a migrated (empty) SQLite database at ``path``; return its URL."""
    global _template
    if _template is None:
        folder = Path(tempfile.mkdtemp(prefix="vpop-template-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        template = folder / "migrated.sqlite"
        upgrade(f"sqlite:///{template}")
        dispose_engines()
        _template = template
    shutil.copyfile(_template, path)
    return f"sqlite:///{path}"
