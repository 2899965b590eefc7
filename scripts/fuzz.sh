#!/usr/bin/env bash
# fuzz.sh: builds the libFuzzer fuzzers (build-fuzz: clang, HSMSIM_FUZZ=ON,
# ASan+UBSan) and runs each for FUZZ_SECONDS (default 60) on a temporary copy
# of its seed corpus (fuzz/corpus/NAME/). Installs clang and
# libclang-rt-14-dev with apt-get when missing. Exit status: non-zero on any
# finding (crash, sanitizer report, leak, timeout or out-of-memory); the
# reproducer is kept in build-fuzz/findings/NAME/.
#   FUZZ_SECONDS=300 scripts/fuzz.sh              all fuzzers, 5 minutes each
#   scripts/fuzz.sh state_file_fuzzer             one fuzzer
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

missing=()
for p in clang libclang-rt-14-dev; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "fuzz: installing ${missing[*]}" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

seconds="${FUZZ_SECONDS:-60}"
fuzzers=("$@")
if [ ${#fuzzers[@]} -eq 0 ]; then
  fuzzers=(frame_codec_fuzzer request_dispatcher_fuzzer state_file_fuzzer)
fi

(
  flock 9
  cmake -S . -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DHSMSIM_FUZZ=ON \
    -DHSMSIM_SANITIZE=address -DHSMSIM_WERROR=ON -DHSMSIM_BUILD_TESTS=OFF \
    -DHSMSIM_BUILD_BENCH=OFF >/dev/null
  cmake --build build-fuzz --target "${fuzzers[@]}"
) 9>/tmp/hsmsim-build.lock

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
work="$(mktemp -d "${TMPDIR:-/tmp}/hsmsim-fuzz-XXXXXX")"
trap 'rm -rf "$work"' EXIT
status=0
for name in "${fuzzers[@]}"; do
  corpus="$work/$name"
  mkdir -p "$corpus" "build-fuzz/findings/$name"
  cp -r "fuzz/corpus/$name/." "$corpus/"
  echo "fuzz: $name for ${seconds}s ($(ls "$corpus" | wc -l) seeds)" >&2
  if ! "build-fuzz/fuzz/$name" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 \
      -max_len=65536 -print_final_stats=1 -artifact_prefix="build-fuzz/findings/$name/" \
      "$corpus" 2>"$work/$name.log"; then
    echo "fuzz: $name FOUND A PROBLEM; reproducer in build-fuzz/findings/$name/:" >&2
    tail -n 60 "$work/$name.log" >&2
    status=1
    continue
  fi
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' \
    "$work/$name.log" | sed "s/^/fuzz: $name /" >&2
  grep -E '^#[0-9]+[[:space:]]+DONE' "$work/$name.log" | sed "s/^/fuzz: $name /" >&2 || true
done
if [ "$status" -eq 0 ]; then echo "fuzz: no findings" >&2; fi
exit "$status"
