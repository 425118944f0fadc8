#!/usr/bin/env bash
# Run every test on a fresh machine: installs what the tests need, then the whole test suite.
#   bash tools/run-tests.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

# Real servers and tools the backup tests drive, Ruby for the Chat bootstrap script, nginx for the portal's
# page and server block, openssl for the verification probe's test certificates, iproute2 and openssh for
# the collector's ssh test in a network namespace, Debian's dockerd and debootstrap for the private engine
# the real-engine tests start (tools/engine.py), shellcheck for the shell scripts, aiosmtpd for the SMTP
# relay the alert-mail test sends through (tests/smtp_server.py), skopeo for tools.pin_digests (Debian packages);
# installed only when missing.
apt_packages=(restic postgresql mariadb-server mariadb-client curl ruby nginx-light openssl iproute2 openssh-server openssh-client redis-server
  docker.io debootstrap shellcheck python3-aiosmtpd skopeo)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "run as root once (or install: ${missing[*]})" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # No service starts at install time: tests start their own throwaway servers on loopback.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

# Python: the locked dependency set, in .venv, with the interpreter this machine has.
export UV_PYTHON_DOWNLOADS=never
command -v uv >/dev/null 2>&1 || python3 -m pip install -q "uv==0.13.8"
uv sync --locked --quiet --compile-bytecode  # .pyc now: imports are most of a plan's time

# Two workers (one per core), each taking whole files (module fixtures, and the real-server files stay
# together): the real-server tests mostly wait on their servers, so the suite takes about half the time.
# Each worker that needs one starts its own private dockerd (tools/engine.py picks its address pool by pid).
.venv/bin/python -m pytest --numprocesses=auto --dist=loadfile "$@"
