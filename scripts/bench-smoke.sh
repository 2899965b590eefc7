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
run "$build/bench/keystore_bench" --benchmark_filter='/100000/'
# hsmctl bench rotate with its same-run baselines: the SQLite append limit
# always, the SoftHSMv2 peer when it is built. The report must carry the
# ratios (no thresholds).
peer=()
[ -x "$build/bench/softhsm_peer_bench" ] && peer=(--peer)
run "$build/host/hsmctl" bench rotate --units 2 --keys 5000 "${peer[@]}" --json \
  > "$build/bench-rotate-smoke.json"
/usr/bin/python3 - "$build/bench-rotate-smoke.json" "${#peer[@]}" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
need = ["end_to_end_keys_per_second", "sqlite_append_rows_per_second",
        "end_to_end_vs_sqlite_append"]
if sys.argv[2] != "0":
    need += ["peer_keys_per_second", "end_to_end_vs_peer"]
missing = [k for k in need if not doc.get(k)]
if missing:
    sys.exit(f"bench-smoke: bench rotate --json lacks {missing}: {doc}")
print(f"bench-smoke: bench rotate: end to end {doc['end_to_end_vs_sqlite_append']:.2f} x "
      f"the SQLite append limit", file=sys.stderr)
PY
echo "bench-smoke: ok" >&2
