#!/usr/bin/env bash
# demo.sh: the whole story on one machine. Sets up and builds (like
# scripts/test.sh), launches a 3-unit fleet in a temporary directory, runs
# the ceremony (2 administrators, signature threshold 2, 3 key parts),
# creates KEYS root keys (default 100,000), wraps sample data keys, rotates
# the master key, verifies every key, unwraps every sample to the same bytes,
# prints the status table and the throughput, and shuts the fleet down.
# CARDS=1: administrators and key parts on smart cards (SoftHSM2 tokens made
# in the temporary directory, docs/smart-cards.md).
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS="${KEYS:-100000}"
build_dir="${HSMSIM_BUILD_DIR:-build}"

if [ "${HSMSIM_SKIP_BUILD:-0}" != 1 ]; then
  bash scripts/setup.sh
  exec 9>/tmp/hsmsim-build.lock
  flock 9
  cmake -S . -B "$build_dir" -G Ninja >/dev/null
  cmake --build "$build_dir" --target hsmctl hsmsim-unit
  flock -u 9
fi
hsmctl="$PWD/$build_dir/host/hsmctl"
export HSMSIM_UNIT_BINARY="$PWD/$build_dir/emulator/hsmsim-unit"

work="$(mktemp -d /tmp/hsmsim-demo.XXXXXX)"
export HSMSIM_FLEET="$work/fleet"
export HSMSIM_PASSWORD="demo-password-$$"
cleanup() {
  "$hsmctl" fleet down >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
step() { printf '\n== %s\n' "$*"; }
start=$(date +%s.%N)

step "launch 3 units (instance demo)"
"$hsmctl" fleet up --units 3 --instance demo --dir "$HSMSIM_FLEET"

if [ "${CARDS:-0}" = 1 ]; then
  # Smart cards (docs/smart-cards.md): SoftHSM2 tokens in $work, two admin
  # cards (alice's key made by pkcs11-tool, bob's by hsmctl) and three part
  # cards. The PIN comes from a pin-source file named in each URI.
  step "cards: 2 administrator cards, 3 key part cards (SoftHSM2)"
  export SOFTHSM2_CONF="$work/softhsm2.conf"
  export HSMSIM_PKCS11_MODULE="${HSMSIM_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}"
  mkdir -p "$work/tokens"
  printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' \
    "$work" > "$SOFTHSM2_CONF"
  pin="demo-pin-$$"
  printf '%s\n' "$pin" > "$work/pin"
  chmod 600 "$work/pin"
  card() { printf 'pkcs11:token=%s%s?pin-source=%s' "$1" "${2:+;object=$2}" "$work/pin"; }
  for t in alice bob part-card-1 part-card-2 part-card-3; do
    softhsm2-util --init-token --free --label "$t" --pin "$pin" --so-pin "so-$pin" >/dev/null
  done
  pkcs11-tool --module "$HSMSIM_PKCS11_MODULE" --token-label alice --login --pin "$pin" \
    --keypairgen --key-type EC:secp521r1 --label alice --id a1 >/dev/null
  "$hsmctl" card admin-keygen "$(card bob)" --name bob
  "$hsmctl" card list "$(card alice)"
  sign="$(card alice alice),$(card bob bob)"
  admins=("$(card alice alice)" "$(card bob bob)")
  for i in 1 2 3; do
    "$hsmctl" card part-generate "$(card part-card-$i)" --label "first-$i"
    "$hsmctl" card part-generate "$(card part-card-$i)" --label "second-$i"
  done
  first_parts="$(card part-card-1 first-1),$(card part-card-2 first-2),$(card part-card-3 first-3)"
  next_parts="$(card part-card-1 second-1),$(card part-card-2 second-2),$(card part-card-3 second-3)"
else
  "$hsmctl" admin keygen --name alice --out "$work/alice.key"
  "$hsmctl" admin keygen --name bob --out "$work/bob.key"
  sign="$work/alice.key,$work/bob.key"
  admins=("$work/alice.key" "$work/bob.key")
  first_parts="$work/part1.kp,$work/part2.kp,$work/part3.kp"
  next_parts="$work/part4.kp,$work/part5.kp,$work/part6.kp"
fi

step "ceremony: 2 administrators, thresholds 2/2"
"$hsmctl" admin add "${admins[@]}"
"$hsmctl" thresholds set --signature 2 --revocation 2 --sign "$sign"

step "ceremony: first master key from 3 key parts"
if [ "${CARDS:-0}" != 1 ]; then
  for i in 1 2 3; do
    "$hsmctl" keypart generate --out "$work/part$i.kp" --description "first key, part $i"
  done
fi
"$hsmctl" mk load --parts "$first_parts" --sign "$sign"
"$hsmctl" mk commit --parts "$first_parts" --yes --sign "$sign"
"$hsmctl" mk setimm --sign "$sign"

step "create $KEYS root keys"
"$hsmctl" keys create --count "$KEYS"

step "wrap sample data keys"
for i in 1 2 3 4 5; do
  head -c 32 /dev/urandom > "$work/sample$i.bin"
  "$hsmctl" keys wrap --key "key-$((i * KEYS / 5))" < "$work/sample$i.bin" > "$work/sample$i.wrapped"
done
echo "wrapped 5 sample data keys"

step "load the next master key (3 new parts) and rotate"
if [ "${CARDS:-0}" != 1 ]; then
  for i in 4 5 6; do
    "$hsmctl" keypart generate --out "$work/part$i.kp" --description "second key, part $((i - 3))"
  done
fi
"$hsmctl" mk load --parts "$next_parts" --sign "$sign"
"$hsmctl" mk commit --parts "$next_parts" --yes --sign "$sign"
"$hsmctl" mk rotate --sign "$sign" | tee "$work/rotate.out"

step "verify every key on every unit"
"$hsmctl" keys verify

step "unwrap every sample data key"
for i in 1 2 3 4 5; do
  "$hsmctl" keys unwrap --key "key-$((i * KEYS / 5))" < "$work/sample$i.wrapped" > "$work/sample$i.out"
  cmp -s "$work/sample$i.bin" "$work/sample$i.out" || { echo "sample $i differs" >&2; exit 1; }
done
echo "all 5 sample data keys unwrap to the same bytes"

step "status"
"$hsmctl" status

step "audit log"
"$hsmctl" audit verify

step "throughput"
grep -E "re-encrypted" "$work/rotate.out" || true
end=$(date +%s.%N)
printf 'demo finished in %.1f s (after set-up and build)\n' "$(echo "$end - $start" | bc 2>/dev/null || python3 -c "print($end-$start)")"
