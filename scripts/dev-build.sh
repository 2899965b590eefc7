#!/usr/bin/env bash
# dev-build.sh [TARGET...]: configure (once) and build build/ under a lock, so
# that only one build runs at a time on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
exec 9>/tmp/hsmsim-build.lock
flock 9
if [ ! -f build/build.ninja ]; then
  cmake -S . -B build -G Ninja -DHSMSIM_WERROR=ON >/dev/null
fi
if [ $# -gt 0 ]; then
  cmake --build build --target "$@"
else
  cmake --build build
fi
