"""Shared fixtures: the namespace lab (once per session) and the golden-file option.

Under ``CI=true`` or ``VPOP_REQUIRE_ALL=1`` (``scripts/test.sh`` sets the latter) a proof that
cannot run here (a ``lab`` test, or a test skipped for want of root, FRR, Chromium or iperf3)
fails instead of skipping, so a green suite means the real-router proofs ran.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from vpop.lab.builder import Lab

ROOT = Path(__file__).resolve().parent.parent
# the server's own secret key file goes to a throwaway directory, not /var/lib/vpop, made
# only when none is given and removed when the run ends
if "VPOP_STATE_DIR" not in os.environ:
    os.environ["VPOP_STATE_DIR"] = tempfile.mkdtemp(prefix="vpop-test-state-")
    atexit.register(shutil.rmtree, os.environ["VPOP_STATE_DIR"], ignore_errors=True)


# skip reasons that mean "this host lacks what a real-router proof needs"
MISSING_PREREQUISITE = re.compile(
    r"needs root|chromium|iperf3|freeradius|radclient|postgresql"
    r"|\bFRR\b[^.]*(missing|not installed)",
    re.IGNORECASE,
)


def skips_are_failures() -> bool:
    """True when skipped proofs must fail the suite (``CI=true`` or ``VPOP_REQUIRE_ALL=1``)."""
    return os.environ.get("CI", "").lower() == "true" or os.environ.get("VPOP_REQUIRE_ALL") == "1"


def is_required_proof(item: pytest.Item, reason: str) -> bool:
    """True when ``item`` is a proof that may not be skipped: marked ``lab`` or skipped
    for a missing prerequisite (root, FRR, Chromium, iperf3)."""
    return item.get_closest_marker("lab") is not None or bool(MISSING_PREREQUISITE.search(reason))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    """Turn the skip of a required proof into a failure when skips are not allowed."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not report.skipped or hasattr(report, "wasxfail") or not skips_are_failures():
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if not is_required_proof(item, reason):
        return
    report.outcome = "failed"
    report.longrepr = (
        f"{item.nodeid}: a required proof was skipped ({reason}); "
        "CI=true / VPOP_REQUIRE_ALL=1 turns that into a failure: install what it needs "
        "(root, FRR, chromium, iperf3) or run without VPOP_REQUIRE_ALL"
    )


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
