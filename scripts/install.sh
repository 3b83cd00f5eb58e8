#!/usr/bin/env bash
# Install what vpop needs on Debian 12, idempotently: Debian packages (only when missing) and
# a virtual environment at .venv with the pinned packages (only when the pins changed).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(frr openssh-server openssh-client nftables iproute2 iputils-ping curl iperf3
  python3 python3-venv ca-certificates procps freeradius freeradius-rest freeradius-utils)
if [[ "${VPOP_INSTALL_TEST:-0}" == 1 ]]; then
  # what only the tests use: a real browser, a throwaway PostgreSQL and Redis
  APT_PACKAGES+=(chromium chromium-driver postgresql redis-server)
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "install: apt-get install ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# the Debian package starts nothing we use; the lab runs its own daemons per namespace
mkdir -p /run/sshd
# vpop runs FreeRADIUS with its own configuration (`vpop radius up`): the packaged service
# would hold ports 1812/1813, so it is stopped (by its init script: its pid file) and disabled
if [[ -d /run/systemd/system ]]; then
  if systemctl is-enabled --quiet freeradius 2>/dev/null; then
    systemctl disable --now freeradius >/dev/null 2>&1 || true
  fi
elif [[ -s /run/freeradius/freeradius.pid && -x /etc/init.d/freeradius ]]; then
  /etc/init.d/freeradius stop >/dev/null 2>&1 || true
  update-rc.d freeradius disable >/dev/null 2>&1 || true
fi

stamp=$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)
if [[ ! -x .venv/bin/python || "$(cat .venv/.vpop-stamp 2>/dev/null)" != "$stamp" ]]; then
  echo "install: .venv from requirements.lock" >&2
  python3 -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.lock
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
  echo "$stamp" > .venv/.vpop-stamp
fi
