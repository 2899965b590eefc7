#!/usr/bin/env bash
# bench-smoke.sh [BUILD_DIR]: runs each benchmark briefly (a few seconds in
# all, a reduced sweep) to prove they still start, set up and finish. No
# thresholds: figures on a shared CI machine mean nothing; see
# docs/performance.md for how to measure.
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"
min_time=0.05

run() {
  echo "bench-smoke: $*" >&2
  "$@"
}

run "$build/bench/reencrypt_kernel_bench" --benchmark_min_time=$min_time \
  --benchmark_filter='batch:(16|256)/'
run "$build/bench/loopback_bench" --benchmark_min_time=$min_time \
  --benchmark_filter='batch:(256|4096)/inflight:(1|4)/'
if [ -x "$build/bench/softhsm_peer_bench" ]; then
  run "$build/bench/softhsm_peer_bench" --benchmark_min_time=$min_time \
    --benchmark_filter='keys:256/'
else
  echo "bench-smoke: softhsm_peer_bench not built (no PKCS#11 header), skipped" >&2
fi
echo "bench-smoke: ok" >&2
