"""Shared fixtures: the namespace lab (once per session) and the golden-file option."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vpop.lab.builder import Lab

ROOT = Path(__file__).resolve().parent.parent
# the server's own secret key file goes to a throwaway directory, not /var/lib/vpop
os.environ.setdefault("VPOP_STATE_DIR", tempfile.mkdtemp(prefix="vpop-test-state-"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update", action="store_true", help="rewrite golden files from current output"
    )


@pytest.fixture(scope="session")
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update"))


@pytest.fixture(scope="session")
def lab() -> Iterator[dict[str, Any]]:
    """The default lab (rc1, rc2, isp-a..c, sub1..sub8), up for the whole session."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (namespaces, FRR, sshd)")
    instance = Lab()
    try:
        state = instance.up(subscribers=8)
        yield state
    finally:
        instance.down()
