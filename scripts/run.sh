#!/usr/bin/env bash
# The main job: install, bring the lab up, then run the server (API, worker, scheduler) and
# FreeRADIUS in front of it (127.0.0.1, VPOP_RADIUS_AUTH_PORT / VPOP_RADIUS_ACCT_PORT).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
exec .venv/bin/vpop serve --with-lab --with-radius "$@"
