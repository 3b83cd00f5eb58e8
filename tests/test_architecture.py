"""The house rules hold: every domain module is behind its service, and lint-imports passes."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOMAINS = (
    "catalogue",
    "selection",
    "network",
    "monitoring",
    "leasing",
    "identity",
    "reports",
    "lab",
)


def _contracts() -> list[dict[str, object]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts: list[dict[str, object]] = config["tool"]["importlinter"]["contracts"]
    return contracts


@pytest.mark.parametrize("domain", DOMAINS)
def test_every_module_of_a_domain_but_its_service_is_protected(domain: str) -> None:
    modules = {
        f"vpop.{domain}.{path.stem}"
        for path in (ROOT / "vpop" / domain).glob("*.py")
        if path.stem not in ("__init__", "service")
    }
    protected = {
        module
        for contract in _contracts()
        if contract["type"] == "protected"
        for module in contract["protected_modules"]  # type: ignore[attr-defined]
    }
    assert modules - protected == set(), "add these modules to the domain's protected contract"


def test_the_import_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "0 broken" in done.stdout


def test_importing_the_queue_connects_nothing() -> None:
    code = (
        "import vpop.jobs.queue, vpop.selection.service as s; "
        "print(len(list(s.order_finished.receivers)), len(list(s.reconcile_needed.receivers)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["0", "0"]
