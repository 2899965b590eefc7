#!/usr/bin/env bash
# setup.sh: installs exactly the Debian 12 packages hsmsim needs to build, test
# and run. Idempotent: when everything is present it only checks and returns.
# Must run as root (or with sudo available) on a machine that reaches Debian's
# package mirrors.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config
  libboost1.81-dev
  libssl-dev
  libprotobuf-dev protobuf-compiler
  libabsl-dev
  libgtest-dev libgmock-dev libbenchmark-dev softhsm2 libp11-kit-dev opensc
  libsqlite3-dev
  # the PostgreSQL keystore (libpq) and the server its tests start
  libpq-dev postgresql
  libcli11-dev nlohmann-json3-dev libspdlog-dev libfmt-dev
  openssl
  python3
  # the PKCS#11 module tests (tests/pkcs11/): PyKCS11, beside softhsm2 and opensc above
  python3-pykcs11
  # p11tool, for the p11-kit module file test (tests/pkcs11/p11kit_module_file_test.py)
  gnutls-bin
  # the browser test of hsmctl console (tests/host/console/console_browser_test.py)
  chromium chromium-driver python3-selenium
  # the deployment artifacts' check (tests/deploy/deploy_check.py)
  systemd python3-yaml
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "setup: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done" >&2
