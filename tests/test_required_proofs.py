"""Skipped real-router proofs fail under CI=true / VPOP_REQUIRE_ALL=1 (tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).resolve().parent / "conftest.py"

INNER = """
import pytest

def test_browser_proof():
    pytest.skip("/usr/bin/chromium is missing: install Debian's chromium package")

def test_iperf3_proof():
    pytest.skip("iperf3 is not installed")

def test_radius_proof():
    pytest.skip("freeradius is not installed: install Debian's freeradius packages")

def test_postgresql_proof():
    pytest.skip("PostgreSQL 15 is not installed (apt-get install postgresql)")

@pytest.mark.lab
def test_marked_lab_proof():
    pytest.skip("no reason that names a prerequisite")

def test_an_ordinary_skip():
    pytest.skip("frr templates do not print the subscriber")
"""


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A throwaway test directory holding the project's conftest and the inner tests."""
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("VPOP_REQUIRE_ALL", raising=False)
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makeini("[pytest]\nmarkers =\n    lab: needs the namespace lab\n")
    pytester.makepyfile(test_inner=INNER)
    return pytester


def test_without_the_flag_proofs_skip(inner: pytest.Pytester) -> None:
    result = inner.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(skipped=6)


@pytest.mark.parametrize(
    ("name", "value"), [("VPOP_REQUIRE_ALL", "1"), ("CI", "true")], ids=["require-all", "ci"]
)
def test_with_the_flag_skipped_proofs_fail(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    result = inner.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=5, skipped=1)
    result.stdout.fnmatch_lines(["*test_browser_proof*a required proof was skipped*chromium*"])


def test_a_skipping_fixture_fails_too(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VPOP_REQUIRE_ALL", "1")
    inner.makepyfile(
        test_fixture="""
import pytest

@pytest.fixture
def lab():
    pytest.skip("the lab needs root (namespaces, FRR, sshd)")

def test_uses_lab(lab):
    pass
"""
    )
    result = inner.runpytest("-p", "no:cacheprovider", "test_fixture.py")
    result.assert_outcomes(errors=1)
