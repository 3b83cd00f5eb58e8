#!/usr/bin/env bash
# The test job: install, lint (ruff), type-check (mypy --strict), then the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
VPOP_INSTALL_TEST=1 scripts/install.sh
.venv/bin/ruff check vpop tasks webhooks tests bench
.venv/bin/mypy --strict vpop tasks webhooks
.venv/bin/lint-imports
mkdir -p artifacts
export VPOP_REQUIRE_ALL=1  # a lab, browser or iperf3 proof that cannot run fails, not skips
.venv/bin/python -m pytest -m "not soak" --junitxml=artifacts/junit.xml "$@"
