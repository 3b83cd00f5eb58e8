#!/usr/bin/env bash
# The main job: install, bring the lab up, then run the server (API, worker, scheduler).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
exec .venv/bin/vpop serve --with-lab "$@"
