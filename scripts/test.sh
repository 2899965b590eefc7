#!/usr/bin/env bash
# test.sh: everything needed to run hsmsim's test suite on a Debian 12 machine:
# installs the packages (scripts/setup.sh), configures, builds with warnings as
# errors, and runs ctest. Extra arguments go to ctest (e.g. -R firmware).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
build_dir="${HSMSIM_BUILD_DIR:-build}"
exec 9>/tmp/hsmsim-build.lock
flock 9
cmake -S . -B "$build_dir" -G Ninja -DHSMSIM_WERROR=ON >/dev/null
cmake --build "$build_dir"
flock -u 9
cd "$build_dir"
ctest --output-on-failure -j "$(nproc)" "$@"
