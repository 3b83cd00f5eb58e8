"""A throwaway PostgreSQL cluster for the tests that need the real thing: a temporary data
directory, a unix socket only (no TCP port), stopped and removed afterwards."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from vpop.core.db import dispose_engines

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(*args: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True)


@contextmanager
def postgres_cluster(tag: str = "pg") -> Iterator[str]:
    """Start a cluster; yield its SQLAlchemy URL; stop it and remove its files.

    Skips (a required proof: CI turns the skip into a failure) when PostgreSQL is missing.
    """
    if not PG_BIN.exists():
        pytest.skip("PostgreSQL 15 is not installed (apt-get install postgresql)")
    base = Path("/tmp") / f"vpop-{tag}-{uuid.uuid4().hex[:8]}"
    data, sock = base / "data", base / "sock"
    sock.mkdir(parents=True)
    shutil.chown(base, "postgres")
    shutil.chown(sock, "postgres")
    _as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
    _as_postgres(
        str(PG_BIN / "pg_ctl"),
        "-D",
        str(data),
        "-w",
        "-l",
        str(base / "log"),
        "-o",
        f"-c listen_addresses='' -c unix_socket_directories={sock} -c fsync=off",
        "start",
    )
    try:
        yield f"postgresql+psycopg://postgres@/postgres?host={sock}"
    finally:
        dispose_engines()
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)
