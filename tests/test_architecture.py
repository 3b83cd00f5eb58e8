"""The house rules hold: every domain module is behind its service, and lint-imports passes."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# every package of vpop with a service.py is a domain (a new one is checked without listing it)
DOMAINS = tuple(sorted(path.parent.name for path in (ROOT / "vpop").glob("*/service.py")))


def test_the_domains_are_found() -> None:
    assert {"accounting", "billing", "catalogue", "selection", "leasing"} <= set(DOMAINS)


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


SIGNALS = (
    "vpop.selection.service:order_accepted",
    "vpop.selection.service:order_finished",
    "vpop.selection.service:reconcile_needed",
    "vpop.selection.service:reconcile_requested",
    "vpop.leasing.service:lease_changed",
    "vpop.monitoring.service:utilisation_event",
    "vpop.billing.service:payment_changed",
)


def _receivers_after(statements: str, tmp_path: Path) -> list[str]:
    """Run ``statements`` in a fresh interpreter whose queue is a file under ``tmp_path``;
    print each signal's receiver count, then whether the queue file exists."""
    counts = "; ".join(
        f"import {module}; print(len(list({module}.{name}.receivers)))"
        for module, name in (signal.split(":") for signal in SIGNALS)
    )
    code = f"{statements}; {counts}; import os; print(os.path.exists({str(tmp_path / 'q')!r}))"
    env = {**os.environ, "VPOP_QUEUE_URL": f"sqlite:///{tmp_path / 'q' / 'queue.sqlite'}"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env, check=True
    )
    return done.stdout.split()


def test_importing_the_queue_connects_nothing_and_opens_nothing(tmp_path: Path) -> None:
    imports = "import vpop.jobs.queue, vpop.jobs.wiring, webhooks; webhooks.create_app"
    assert _receivers_after(imports, tmp_path) == ["0"] * len(SIGNALS) + ["False"]


def test_the_wiring_connects_every_signal(tmp_path: Path) -> None:
    wired = "import vpop.jobs.wiring as w; w.connect(); w.connect()"
    assert _receivers_after(wired, tmp_path) == ["1"] * len(SIGNALS) + ["False"]
