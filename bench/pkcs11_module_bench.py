"""pkcs11_module_bench: libhsmsim-pkcs11.so against SoftHSM2 through the same
harness (PyKCS11) in the same run. For each module it measures

  - gcm4k:       C_EncryptInit + C_Encrypt of a 4 KiB message with AES-256-GCM
                 (a fresh 12-byte IV each, 128-bit tag), with a token key;
  - keygen:      C_GenerateKey of an AES-256 session key;
  - keygen_token C_GenerateKey of an AES-256 token key (hsmsim: a keystore
                 row made in a unit; SoftHSM2: a file in its token directory);

as operations per second over --seconds each, one thread, and prints a table
with the ratios hsmsim / SoftHSM2. The hsmsim fleet (2 units, loopback) and
the SoftHSM2 token live in temporary directories removed at the end.

usage: pkcs11_module_bench.py --hsmctl PATH --unit PATH --module PATH
           [--seconds S] [--units N]
Build target: `cmake --build BUILD --target pkcs11_module_bench` (runs it with
the figures' settings; docs/performance.md, "PKCS#11 module")."""

import argparse
import gc
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "host", "console"))
from console_support import Fleet  # noqa: E402

try:
    import PyKCS11
except ImportError:
    print("SKIPPED: PyKCS11 is not installed (Debian python3-pykcs11; scripts/setup.sh)")
    sys.exit(77)

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "123456"
MESSAGE = 4096


def template(token, label):
    return [(PyKCS11.CKA_CLASS, PyKCS11.CKO_SECRET_KEY), (PyKCS11.CKA_KEY_TYPE, PyKCS11.CKK_AES),
            (PyKCS11.CKA_TOKEN, token), (PyKCS11.CKA_LABEL, label),
            (PyKCS11.CKA_ENCRYPT, True), (PyKCS11.CKA_DECRYPT, True),
            (PyKCS11.CKA_VALUE_LEN, 32)]


def rate(seconds, op):
    """Runs op() for about `seconds` (after one warm-up call); returns
    (operations, operations per second)."""
    op()
    n, start = 0, time.perf_counter()
    while True:
        op()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n, n / elapsed


def measure(session, seconds):
    gen = PyKCS11.Mechanism(PyKCS11.CKM_AES_KEY_GEN)
    key = session.generateKey(template(True, "bench-gcm"), gen)
    data = list(os.urandom(MESSAGE))

    def gcm4k():
        iv = list(os.urandom(12))
        session.encrypt(key, data, PyKCS11.AES_GCM_Mechanism(iv, [], 128))

    made = []

    def keygen():
        made.append(session.generateKey(template(False, "bench-session"), gen))
        if len(made) >= 1000:  # session objects: keep memory flat
            for k in made:
                session.destroyObject(k)
            made.clear()

    def keygen_token():
        session.generateKey(template(True, "bench-token"), gen)

    return {"gcm4k": rate(seconds, gcm4k), "keygen": rate(seconds, keygen),
            "keygen_token": rate(seconds, keygen_token)}


def open_session(lib):
    slot = lib.getSlotList(tokenPresent=True)[0]
    s = lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
    s.login(PIN)
    return s


def bench_hsmsim(args):
    fleet = Fleet(args.hsmctl, args.unit, units=args.units)
    try:
        admin = fleet.ceremony()
        fleet.run("mk", "setimm", "--sign", admin)
        pin_file = fleet.path("pin")
        with open(pin_file, "w") as f:
            f.write(PIN + "\n")
        fleet.run("pkcs11", "set-pin", "--pin-file", pin_file)
        os.environ["HSMSIM_FLEET"] = fleet.dir
        lib = PyKCS11.PyKCS11Lib()
        lib.load(args.module)
        s = open_session(lib)
        result = measure(s, args.seconds)
        s.logout()
        s.closeSession()
        s = lib = None
        gc.collect()
        return result
    finally:
        fleet.close()


def bench_softhsm(args):
    with tempfile.TemporaryDirectory(prefix="hsmsim-softhsm-bench-") as tmp:
        conf = os.path.join(tmp, "softhsm2.conf")
        os.makedirs(os.path.join(tmp, "tokens"))
        with open(conf, "w") as f:
            f.write(f"directories.tokendir = {tmp}/tokens\nobjectstore.backend = file\n")
        os.environ["SOFTHSM2_CONF"] = conf
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "bench", "--pin",
                        PIN, "--so-pin", "87654321"], check=True, capture_output=True)
        lib = PyKCS11.PyKCS11Lib()
        lib.load(SOFTHSM_MODULE)
        s = open_session(lib)
        result = measure(s, args.seconds)
        s.logout()
        s.closeSession()
        s = lib = None
        gc.collect()
        return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--hsmctl", required=True)
    parser.add_argument("--unit", required=True)
    parser.add_argument("--module", required=True)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--units", type=int, default=2)
    args = parser.parse_args()
    if not os.path.exists(SOFTHSM_MODULE):
        print(f"SKIPPED: {SOFTHSM_MODULE} is not installed (Debian softhsm2)")
        return 77
    ours = bench_hsmsim(args)
    theirs = bench_softhsm(args)
    print(f"{'operation':<14} {'hsmsim ops/s':>13} {'SoftHSM2 ops/s':>15} {'ratio':>7}")
    for name in ("gcm4k", "keygen", "keygen_token"):
        a, b = ours[name][1], theirs[name][1]
        print(f"{name:<14} {a:>13.0f} {b:>15.0f} {a / b:>7.3f}")
    print(f"({args.seconds:g} s per operation and module, {args.units} units, one thread, "
          "PyKCS11)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
