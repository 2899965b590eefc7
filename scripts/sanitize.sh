#!/usr/bin/env bash
# sanitize.sh: the test suite under the sanitizers (docs/reliability.md).
#   1. build-asan: -DHSMSIM_SANITIZE=address (ASan + UBSan), the whole ctest
#      suite;
#   2. build-tsan: -DHSMSIM_SANITIZE=thread (TSan), the tests of the emulator
#      and of the host client, where the threads are.
# Installs nothing beyond scripts/setup.sh. Builds take the same lock as
# scripts/dev-build.sh, one at a time. Exit status: non-zero on any failure
# or sanitizer report (the sanitizers abort the test that trips them).
# Extra arguments go to both ctest runs. Benchmarks are not built.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

jobs="$(nproc)"
# Sanitizer reports fail the test; leaks count too (ASan's LeakSanitizer).
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}"

# -O1 -g1: sanitizer builds compile about twice as fast as -O2 -g and still
# give symbolized reports.
build() {  # build DIR SANITIZER CXXFLAGS TARGET...
  local dir="$1" sanitizer="$2" cxxflags="$3"
  shift 3
  (
    flock 9
    cmake -S . -B "$dir" -G Ninja -DHSMSIM_WERROR=ON -DHSMSIM_SANITIZE="$sanitizer" \
      -DCMAKE_CXX_FLAGS="$cxxflags" -DHSMSIM_BUILD_BENCH=OFF \
      -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" >/dev/null
    cmake --build "$dir" "$@"
  ) 9>/tmp/hsmsim-build.lock
}

echo "sanitize: ASan+UBSan build (build-asan), whole suite" >&2
build build-asan address ""
(cd build-asan && ctest --output-on-failure -j "$jobs" "$@")

echo "sanitize: TSan build (build-tsan), emulator and host client tests" >&2
# GCC warns (-Wtsan) that TSan does not model the atomic_thread_fence in
# Boost.Asio's std_fenced_block; that is Asio's, not ours.
build build-tsan thread "-Wno-tsan" --target hsmsim-unit request_dispatcher_test unit_process_test \
  fault_injection_test hostile_input_test unit_client_test
(cd build-tsan && ctest --output-on-failure -j "$jobs" \
  -R 'UnitProcess|UnitClient|RequestDispatcher|Hostile|Fault' "$@")
echo "sanitize: ok" >&2
