"""libhsmsim-pkcs11.so driven by real PKCS#11 clients: PyKCS11 (python3-pykcs11)
and pkcs11-tool (opensc), against a fleet of real hsmsim-unit processes, with
SoftHSM2 (softhsm2) as the reference for AES-GCM given the same keys.

usage: pkcs11_module_test.py --hsmctl PATH --unit PATH --module PATH
Exits 77 (skipped, with the reason) when PyKCS11 is not installed."""

import argparse
import gc
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "host", "console"))
from console_support import Fleet  # noqa: E402

try:
    import PyKCS11
    from PyKCS11 import LowLevel
except ImportError:  # pragma: no cover - depends on the machine
    print("SKIPPED: PyKCS11 is not installed (Debian python3-pykcs11; scripts/setup.sh)")
    sys.exit(77)

PARSER = argparse.ArgumentParser()
PARSER.add_argument("--hsmctl", required=True)
PARSER.add_argument("--unit", required=True)
PARSER.add_argument("--module", required=True)
ARGS, REST = PARSER.parse_known_args()

PIN = "123456"
SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"

# The GCM specification's test cases (McGrew and Viega, appendix B) 14-16,
# AES-256: (key, iv, aad, plaintext, ciphertext, tag), hex. (Case 13 has an
# empty plaintext, which PyKCS11 refuses to pass; tests/firmware/
# key_use_test.cc runs it.)
K256 = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308"
P64 = ("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
       "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255")
GCM_VECTORS = [
    ("00" * 32, "00" * 12, "", "00" * 16, "cea7403d4d606b6e074ec5d3baf39d18",
     "d0d1c8a799996bf0265b98b5d48ab919"),
    (K256, "cafebabefacedbaddecaf888", "", P64,
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
     "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
     "b094dac5d93471bdec1a502270e3cc6c"),
    (K256, "cafebabefacedbaddecaf888", "feedfacedeadbeeffeedfacedeadbeefabaddad2", P64[:120],
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
     "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
     "76fc6ece0f4e1768cddf8853bb2d551b"),
]


def b(hex_text):
    return list(bytes.fromhex(hex_text))


def gcm(iv, aad=b"", tag_bits=128):
    return PyKCS11.AES_GCM_Mechanism(list(iv), list(aad), tag_bits)


def aes_template(value=None, token=True, size=32, label="t", extra=()):
    t = [(PyKCS11.CKA_CLASS, PyKCS11.CKO_SECRET_KEY), (PyKCS11.CKA_KEY_TYPE, PyKCS11.CKK_AES),
         (PyKCS11.CKA_TOKEN, token), (PyKCS11.CKA_LABEL, label),
         (PyKCS11.CKA_ENCRYPT, True), (PyKCS11.CKA_DECRYPT, True)]
    t += list(extra)
    if value is None:
        t.append((PyKCS11.CKA_VALUE_LEN, size))
    else:
        t.append((PyKCS11.CKA_VALUE, list(value)))
    return t


class ModuleFleet:
    """A fleet with a CURRENT master key, its token's PIN set, and the module
    loaded through PyKCS11 with HSMSIM_FLEET pointing at it."""

    def __init__(self, units=2):
        self.fleet = Fleet(ARGS.hsmctl, ARGS.unit, units=units)
        try:
            self.admin = self.fleet.ceremony()
            self.fleet.run("mk", "setimm", "--sign", self.admin)
            pin_file = self.fleet.path("pin")
            with open(pin_file, "w") as f:
                f.write(PIN + "\n")
            self.fleet.run("pkcs11", "set-pin", "--pin-file", pin_file)
            os.environ["HSMSIM_FLEET"] = self.fleet.dir
            self.lib = PyKCS11.PyKCS11Lib()
            self.lib.load(ARGS.module)
        except BaseException:
            self.fleet.close()
            raise

    def session(self, login=True):
        slot = self.lib.getSlotList(tokenPresent=True)[0]
        s = self.lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
        if login:
            s.login(PIN)
        return s

    def new_master_key(self, tag):
        """Loads and commits a NEW master key from two fresh parts."""
        parts = [self.fleet.path(f"{tag}{i}.kp") for i in (1, 2)]
        for i, part in enumerate(parts):
            self.fleet.run("keypart", "generate", "--out", part, "--description", f"{tag} {i}",
                           fleet=False)
        self.fleet.run("mk", "load", "--parts", ",".join(parts), "--sign", self.admin)
        self.fleet.run("mk", "commit", "--parts", ",".join(parts), "--yes", "--sign", self.admin)

    def close(self):
        # C_Finalize (PyKCS11 unloads the module when the object goes), so the
        # next ModuleFleet's C_Initialize reads its own fleet.
        self.lib = None
        gc.collect()
        self.fleet.close()


class SoftHsm:
    """A SoftHSM2 token in a temporary directory, for reference answers."""

    def __init__(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="hsmsim-softhsm-")
        conf = os.path.join(self.tmp.name, "softhsm2.conf")
        os.makedirs(os.path.join(self.tmp.name, "tokens"))
        with open(conf, "w") as f:
            f.write(f"directories.tokendir = {self.tmp.name}/tokens\nobjectstore.backend = file\n")
        os.environ["SOFTHSM2_CONF"] = conf
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "ref", "--pin", PIN,
                        "--so-pin", "87654321"], check=True, capture_output=True)
        self.lib = PyKCS11.PyKCS11Lib()
        self.lib.load(SOFTHSM_MODULE)
        slot = self.lib.getSlotList(tokenPresent=True)[0]
        self.session = self.lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
        self.session.login(PIN)

    def close(self):
        self.session.logout()
        self.session.closeSession()
        self.session = None
        self.lib = None
        gc.collect()
        self.tmp.cleanup()


class Pkcs11ModuleTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.mf = ModuleFleet()

    @classmethod
    def tearDownClass(cls):
        cls.mf.close()

    def test_slot_token_and_mechanisms(self):
        slots = self.mf.lib.getSlotList(tokenPresent=True)
        self.assertEqual(len(slots), 1)
        info = self.mf.lib.getTokenInfo(slots[0])
        self.assertEqual(info.manufacturerID.strip(), "hsmsim")
        self.assertTrue(info.flags & PyKCS11.CKF_USER_PIN_INITIALIZED)
        self.assertTrue(info.flags & PyKCS11.CKF_LOGIN_REQUIRED)
        mechanisms = self.mf.lib.getMechanismList(slots[0])
        self.assertIn("CKM_AES_GCM", mechanisms)
        self.assertIn("CKM_AES_KEY_GEN", mechanisms)
        gcm_info = self.mf.lib.getMechanismInfo(slots[0], "CKM_AES_GCM")
        self.assertIn("CKF_HW", gcm_info.flags2text())
        self.assertNotIn("CKF_HW", self.mf.lib.getMechanismInfo(slots[0], "CKM_SHA256").flags2text())

    def test_gcm_vectors_with_imported_keys(self):
        s = self.mf.session()
        try:
            for key, iv, aad, pt, ct, tag in GCM_VECTORS:
                handle = s.createObject(aes_template(bytes.fromhex(key), token=False))
                out = s.encrypt(handle, b(pt), gcm(bytes.fromhex(iv), bytes.fromhex(aad)))
                self.assertEqual(bytes(out).hex(), ct + tag)
                back = s.decrypt(handle, b(ct + tag), gcm(bytes.fromhex(iv), bytes.fromhex(aad)))
                self.assertEqual(bytes(back).hex(), pt)
        finally:
            s.logout()
            s.closeSession()

    def test_same_answers_as_softhsm_for_generated_sizes(self):
        soft = SoftHsm()
        s = self.mf.session()
        try:
            for size in (16, 24, 32):
                value = os.urandom(size)
                ours = s.createObject(aes_template(value, token=True, label=f"cmp{size}"))
                theirs = soft.session.createObject(aes_template(value, token=False))
                for tag_bits in (96, 104, 112, 120, 128):
                    iv, aad, data = os.urandom(12), os.urandom(20), list(os.urandom(100))
                    a = s.encrypt(ours, data, gcm(iv, aad, tag_bits))
                    c = soft.session.encrypt(theirs, data, gcm(iv, aad, tag_bits))
                    self.assertEqual(bytes(a), bytes(c), f"AES-{size * 8}, {tag_bits}-bit tag")
                    self.assertEqual(bytes(s.decrypt(ours, c, gcm(iv, aad, tag_bits))), bytes(data))
        finally:
            s.logout()
            s.closeSession()
            soft.close()

    def test_generated_token_key_is_found_and_survives_a_new_session(self):
        s = self.mf.session()
        key = s.generateKey(aes_template(size=32, label="generated"))
        iv = os.urandom(12)
        ct = s.encrypt(key, list(b"hello"), gcm(iv))
        s.logout()
        s.closeSession()
        s = self.mf.session()
        try:
            found = s.findObjects([(PyKCS11.CKA_LABEL, "generated")])
            self.assertEqual(len(found), 1)
            self.assertEqual(bytes(s.decrypt(found[0], ct, gcm(iv))), b"hello")
            attrs = s.getAttributeValue(found[0], [PyKCS11.CKA_VALUE_LEN, PyKCS11.CKA_SENSITIVE,
                                                   PyKCS11.CKA_LOCAL])
            self.assertEqual(attrs, [32, True, True])
        finally:
            s.logout()
            s.closeSession()

    def test_attribute_policy(self):
        s = self.mf.session()
        try:
            key = s.generateKey(aes_template(size=16, token=False,
                                             extra=[(PyKCS11.CKA_SENSITIVE, False),
                                                    (PyKCS11.CKA_EXTRACTABLE, True)]))
            # Even a non-sensitive, extractable key's value stays in the units:
            # PyKCS11 turns CKR_ATTRIBUTE_SENSITIVE into None (the code itself
            # is checked in pkcs11_token_test).
            self.assertEqual(s.getAttributeValue(key, [PyKCS11.CKA_VALUE], allAsBinary=True),
                             [None])
            s.setAttributeValue(key, [(PyKCS11.CKA_SENSITIVE, True)])
            with self.assertRaises(PyKCS11.PyKCS11Error) as e:
                s.setAttributeValue(key, [(PyKCS11.CKA_SENSITIVE, False)])
            self.assertEqual(e.exception.value, PyKCS11.CKR_ATTRIBUTE_READ_ONLY)
            s.setAttributeValue(key, [(PyKCS11.CKA_EXTRACTABLE, False)])
            with self.assertRaises(PyKCS11.PyKCS11Error) as e:
                s.setAttributeValue(key, [(PyKCS11.CKA_EXTRACTABLE, True)])
            self.assertEqual(e.exception.value, PyKCS11.CKR_ATTRIBUTE_READ_ONLY)
            s.setAttributeValue(key, [(PyKCS11.CKA_LABEL, "renamed")])
            self.assertEqual(s.getAttributeValue(key, [PyKCS11.CKA_LABEL]), ["renamed"])
        finally:
            s.logout()
            s.closeSession()

    def test_private_objects_need_login_and_altered_ciphertext_fails(self):
        s = self.mf.session()
        key = s.generateKey(aes_template(size=32, label="private-one"))
        iv = os.urandom(12)
        ct = list(s.encrypt(key, list(b"secret"), gcm(iv)))
        ct[0] ^= 1
        with self.assertRaises(PyKCS11.PyKCS11Error) as e:
            s.decrypt(key, ct, gcm(iv))
        self.assertEqual(e.exception.value, PyKCS11.CKR_ENCRYPTED_DATA_INVALID)
        s.logout()
        self.assertEqual(s.findObjects([(PyKCS11.CKA_LABEL, "private-one")]), [])
        s.closeSession()

    def test_digest_and_random(self):
        s = self.mf.session(login=False)
        try:
            digest = s.digest(list(b"abc"), PyKCS11.Mechanism(PyKCS11.CKM_SHA256))
            self.assertEqual(bytes(digest).hex(),
                             "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
            self.assertEqual(len(s.generateRandom(64)), 64)
        finally:
            s.closeSession()

    def test_only_c_functions_are_exported(self):
        nm = shutil.which("nm")
        if nm is None:
            self.skipTest("nm (binutils) is not installed")
        out = subprocess.run([nm, "-D", "--defined-only", ARGS.module], capture_output=True,
                             text=True, check=True).stdout
        names = [line.split()[-1] for line in out.splitlines() if line.strip()]
        self.assertIn("C_GetFunctionList", names)
        self.assertEqual([n for n in names if not n.startswith("C_")], [])
        self.assertEqual(len(names), 68)

    def test_child_of_fork_initializes_again(self):
        s = self.mf.session(login=False)
        pid = os.fork()
        if pid == 0:  # the child: the parent's initialization is not its own
            code = 1
            try:
                lib = PyKCS11.PyKCS11Lib()
                lib.load(ARGS.module)
                slot = lib.getSlotList(tokenPresent=True)[0]
                child = lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION)
                key = child.createObject(aes_template(bytes(16), token=False,
                                                     extra=[(PyKCS11.CKA_PRIVATE, False)]))
                iv = bytes(12)
                ct = child.encrypt(key, list(b"child"), gcm(iv))
                code = 0 if bytes(child.decrypt(key, ct, gcm(iv))) == b"child" else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)
        # The parent's session still works.
        self.assertEqual(len(s.generateRandom(8)), 8)
        s.closeSession()

    def test_pkcs11_tool_lists_logs_in_generates_and_finds(self):
        tool = shutil.which("pkcs11-tool")
        if tool is None:
            self.skipTest("pkcs11-tool (opensc) is not installed")
        env = dict(os.environ, HSMSIM_FLEET=self.mf.fleet.dir)
        run = lambda *a: subprocess.run([tool, "--module", ARGS.module, *a], env=env,  # noqa: E731
                                        capture_output=True, text=True, timeout=120)
        slots = run("--list-slots")
        self.assertEqual(slots.returncode, 0, slots.stderr)
        self.assertIn("hsmsim", slots.stdout)
        gen = run("--login", "--pin", PIN, "--keygen", "--key-type", "AES:32", "--label",
                  "from-tool")
        self.assertEqual(gen.returncode, 0, gen.stdout + gen.stderr)
        listed = run("--login", "--pin", PIN, "--list-objects", "--type", "secrkey")
        self.assertEqual(listed.returncode, 0, listed.stderr)
        self.assertIn("from-tool", listed.stdout)
        wrong = run("--login", "--pin", "000000", "--list-objects")
        self.assertNotEqual(wrong.returncode, 0)
        self.assertIn("CKR_PIN_INCORRECT", wrong.stdout + wrong.stderr)


class RotationTest(unittest.TestCase):
    """Keys made through the module keep working through a master key rotation
    while 8 application threads use them; keys made during the rotation end
    under the target."""

    THREADS = 8
    BACKGROUND_KEYS = 2000  # hsmctl keys, so the rotation has work to spread over

    def test_workload_through_a_rotation(self):
        mf = ModuleFleet()
        try:
            mf.fleet.run("keys", "create", "--count", str(self.BACKGROUND_KEYS))
            s = mf.session()
            keys = [s.generateKey(aes_template(size=32, label=f"rot{i}")) for i in range(5)]
            iv = os.urandom(12)
            before = [bytes(s.encrypt(k, list(b"before"), gcm(iv))) for k in keys]
            mf.new_master_key("second")
            failures, operations, made = [], [0] * self.THREADS, []
            stop = threading.Event()

            def workload(n):
                w = mf.session(login=False)  # the login is the application's
                while not stop.is_set():
                    try:
                        for k, ct in zip(keys, before):
                            if bytes(w.decrypt(k, list(ct), gcm(iv))) != b"before":
                                failures.append("wrong plaintext")
                            operations[n] += 1
                        if operations[n] % 20 == 0:
                            made.append(w.generateKey(aes_template(size=16, label="during")))
                    except PyKCS11.PyKCS11Error as e:  # noqa: PERF203
                        failures.append(str(e))
                w.closeSession()

            threads = [threading.Thread(target=workload, args=(n,)) for n in range(self.THREADS)]
            for t in threads:
                t.start()
            try:
                mf.fleet.run("mk", "rotate", "--sign", mf.admin)
            finally:
                stop.set()
                for t in threads:
                    t.join(timeout=120)
            self.assertEqual(failures, [])
            self.assertTrue(all(n > 0 for n in operations), operations)
            self.assertGreater(len(made), 0)
            # After the rotation: old ciphertexts decrypt, keys made during it work.
            for k, ct in zip(keys, before):
                self.assertEqual(bytes(s.decrypt(k, list(ct), gcm(iv))), b"before")
            for k in made:
                ct = s.encrypt(k, list(b"after"), gcm(iv))
                self.assertEqual(bytes(s.decrypt(k, ct, gcm(iv))), b"after")
            # Every key of the keystore, the module's too, is under the new
            # CURRENT and opens in every unit: keys verify says so.
            mf.fleet.run("keys", "verify")
            s.logout()
            s.closeSession()
        finally:
            mf.close()


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0]] + REST, verbosity=2)
