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
def running_cluster(base: Path, *, fresh: bool = True, stop: str = "immediate") -> Iterator[str]:
    """Run a cluster whose files live in ``base``; yield its SQLAlchemy URL; stop it.

    Created anew (``initdb``) when ``fresh`` or when ``base`` holds none, else started from
    its data directory. A unix socket only, no TCP port. Stopped with ``pg_ctl -m stop``
    (``immediate`` for a throwaway cluster, ``fast`` to keep the data); the files stay.
    """
    data, sock = base / "data", base / "sock"
    if fresh or not (data / "PG_VERSION").exists():
        shutil.rmtree(base, ignore_errors=True)
        sock.mkdir(parents=True)
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")
        _as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
    options = f"-c listen_addresses='' -c unix_socket_directories={sock} -c fsync=off"
    pg_ctl = (str(PG_BIN / "pg_ctl"), "-D", str(data), "-w")
    _as_postgres(*pg_ctl, "-l", str(base / "log"), "-o", options, "start")
    try:
        yield f"postgresql+psycopg://postgres@/postgres?host={sock}"
    finally:
        dispose_engines()
        _as_postgres(*pg_ctl, "-m", stop, "stop")


@contextmanager
def postgres_cluster(tag: str = "pg") -> Iterator[str]:
    """Start a cluster; yield its SQLAlchemy URL; stop it and remove its files.

    Skips (a required proof: CI turns the skip into a failure) when PostgreSQL is missing.
    """
    if not PG_BIN.exists():
        pytest.skip("PostgreSQL 15 is not installed (apt-get install postgresql)")
    base = Path("/tmp") / f"vpop-{tag}-{uuid.uuid4().hex[:8]}"
    try:
        with running_cluster(base) as url:
            yield url
    finally:
        shutil.rmtree(base, ignore_errors=True)
