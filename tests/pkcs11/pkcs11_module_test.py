"""libhsmsim-pkcs11.so driven by real PKCS#11 clients: PyKCS11 (python3-pykcs11)
and pkcs11-tool (opensc), against a fleet of real hsmsim-unit processes, with
SoftHSM2 (softhsm2) as the reference for AES-GCM and AES key wrap with
padding (RFC 5649) given the same keys.

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
import time
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
PARSER.add_argument("--rotation-keys", type=int, default=100_000,
                    help="keystore keys RotationTest rotates (default: the issue's 100,000)")
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


# RFC 5649 section 6: the 192-bit KEK and its two examples (a 20-byte and a
# 7-byte key: no AES keys, so the module can only refuse to unwrap them as
# keys), and AES keys wrapped under the same KEK. The AES answers were
# computed with Python's cryptography (aes_key_wrap_with_padding) and agree
# with tests/firmware/key_use_test.cc.
RFC5649_KEK = "5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8"
RFC5649_WRAPPED20 = "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a"
RFC5649_WRAPPED7 = "afbeb0f07dfbf5419200f2ccb50bb24f"
WRAP_VECTORS = [
    ("000102030405060708090a0b0c0d0e0f", "fae3022b1073e043182236d89f83c916fdaf8828261c3215"),
    ("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
     "fe6a0320617d94d5abcd3cadbb5a15ee23574ad2a6509b3f5a2b3b9d96fda766e6d1204253503895"),
]
WRAP_PAD = PyKCS11.Mechanism(PyKCS11.CKM_AES_KEY_WRAP_PAD)
# NIST SP 800-38A F.2.5 (CBC-AES256): key, IV, four plaintext blocks, their
# ciphertext; CKM_AES_CBC_PAD adds a block of padding (16 x 0x10), which
# encrypts to CBC_PAD_BLOCK after them (computed with Python's cryptography).
CBC_KEY = "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4"
CBC_IV = "000102030405060708090a0b0c0d0e0f"
CBC_PLAINTEXT = ("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
                 "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710")
CBC_CIPHERTEXT = ("f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d"
                  "39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b")
CBC_PAD_BLOCK = "3f461796d6b0d6b2e0c2a72b4d80e644"


def cbc(iv):
    return PyKCS11.Mechanism(PyKCS11.CKM_AES_CBC_PAD, list(iv))
KEK_USES = [(PyKCS11.CKA_WRAP, True), (PyKCS11.CKA_UNWRAP, True)]
EXTRACTABLE = [(PyKCS11.CKA_EXTRACTABLE, True)]


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
        self.assertIn("CKM_AES_KEY_WRAP_PAD", mechanisms)
        self.assertIn("CKM_AES_CBC_PAD", mechanisms)
        wrap_info = self.mf.lib.getMechanismInfo(slots[0], "CKM_AES_KEY_WRAP_PAD").flags2text()
        for flag in ("CKF_HW", "CKF_WRAP", "CKF_UNWRAP"):
            self.assertIn(flag, wrap_info)
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

    def test_cbc_pad_vectors_and_same_answers_as_softhsm(self):
        soft = SoftHsm()
        s = self.mf.session()
        try:
            key = s.createObject(aes_template(bytes.fromhex(CBC_KEY), token=False))
            iv = bytes.fromhex(CBC_IV)
            out = bytes(s.encrypt(key, b(CBC_PLAINTEXT), cbc(iv)))
            self.assertEqual(out.hex(), CBC_CIPHERTEXT + CBC_PAD_BLOCK)
            self.assertEqual(bytes(s.decrypt(key, list(out), cbc(iv))).hex(), CBC_PLAINTEXT)
            # The four blocks without the padding block: no valid padding.
            with self.assertRaises(PyKCS11.PyKCS11Error) as e:
                s.decrypt(key, b(CBC_CIPHERTEXT), cbc(iv))
            self.assertEqual(e.exception.value, PyKCS11.CKR_ENCRYPTED_DATA_INVALID)
            with self.assertRaises(PyKCS11.PyKCS11Error) as e:
                s.encrypt(key, list(b"x"), cbc(iv[:12]))
            self.assertEqual(e.exception.value, PyKCS11.CKR_MECHANISM_PARAM_INVALID)
            with self.assertRaises(PyKCS11.PyKCS11Error) as e:
                s.decrypt(key, list(range(20)), cbc(iv))
            self.assertEqual(e.exception.value, PyKCS11.CKR_ENCRYPTED_DATA_LEN_RANGE)
            for size in (16, 24, 32):
                value = os.urandom(size)
                ours = s.createObject(aes_template(value, token=True, label=f"cbc{size}"))
                theirs = soft.session.createObject(aes_template(value, token=False))
                for n in (1, 15, 16, 17, 100):
                    iv, data = os.urandom(16), list(os.urandom(n))
                    a = bytes(s.encrypt(ours, data, cbc(iv)))
                    c = bytes(soft.session.encrypt(theirs, data, cbc(iv)))
                    self.assertEqual(a, c, f"AES-{size * 8}, {n} bytes")
                    self.assertEqual(bytes(s.decrypt(ours, list(c), cbc(iv))), bytes(data))
        finally:
            s.logout()
            s.closeSession()
            soft.close()

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

    def test_wrap_gives_rfc5649_bytes_and_unwrap_makes_the_same_key(self):
        s = self.mf.session()
        try:
            kek = s.createObject(aes_template(bytes.fromhex(RFC5649_KEK), token=False,
                                              extra=KEK_USES))
            for key_hex, wrapped_hex in WRAP_VECTORS:
                key = s.createObject(aes_template(bytes.fromhex(key_hex), token=True,
                                                  label="to-wrap", extra=EXTRACTABLE))
                wrapped = bytes(s.wrapKey(kek, key, WRAP_PAD))
                self.assertEqual(wrapped.hex(), wrapped_hex)
                back = s.unwrapKey(kek, list(wrapped), aes_template(token=False, size=None)[:-1],
                                   WRAP_PAD)
                # The unwrapped key is the same key: same GCM answers.
                iv = os.urandom(12)
                self.assertEqual(bytes(s.encrypt(back, list(b"same"), gcm(iv))),
                                 bytes(s.encrypt(key, list(b"same"), gcm(iv))))
                attrs = s.getAttributeValue(back, [
                    PyKCS11.CKA_VALUE_LEN, PyKCS11.CKA_LOCAL, PyKCS11.CKA_ALWAYS_SENSITIVE,
                    PyKCS11.CKA_NEVER_EXTRACTABLE, PyKCS11.CKA_KEY_GEN_MECHANISM])
                # PyKCS11 gives CK_UNAVAILABLE_INFORMATION (~0) as -1.
                attrs[4] %= 1 << 64
                self.assertEqual(attrs, [len(key_hex) // 2, False, False, False,
                                         PyKCS11.CK_UNAVAILABLE_INFORMATION])
            # RFC 5649's own examples are no AES keys: the 20-byte key unwraps
            # in the unit (its integrity check passes) and is refused as a key;
            # the 7-byte one has the size of no wrapped AES key.
            for wrapped_hex, code in ((RFC5649_WRAPPED20, PyKCS11.CKR_WRAPPED_KEY_INVALID),
                                      (RFC5649_WRAPPED7, PyKCS11.CKR_WRAPPED_KEY_LEN_RANGE)):
                with self.assertRaises(PyKCS11.PyKCS11Error) as e:
                    s.unwrapKey(kek, b(wrapped_hex), aes_template(token=False)[:-1], WRAP_PAD)
                self.assertEqual(e.exception.value, code)
            altered = b(WRAP_VECTORS[0][1])
            altered[3] ^= 1
            with self.assertRaises(PyKCS11.PyKCS11Error) as e:
                s.unwrapKey(kek, altered, aes_template(token=False)[:-1], WRAP_PAD)
            self.assertEqual(e.exception.value, PyKCS11.CKR_WRAPPED_KEY_INVALID)
        finally:
            s.logout()
            s.closeSession()

    def test_wrap_policy(self):
        s = self.mf.session()
        try:
            kek = s.generateKey(aes_template(size=32, token=False, extra=KEK_USES))
            no_wrap = s.generateKey(aes_template(size=32, token=False, extra=EXTRACTABLE))
            unextractable = s.generateKey(aes_template(size=32, token=True, label="stays"))
            trusted_only = s.generateKey(aes_template(
                size=16, token=False, extra=EXTRACTABLE + [(PyKCS11.CKA_WRAP_WITH_TRUSTED, True)]))
            for wrapping, key, code in (
                    (kek, unextractable, PyKCS11.CKR_KEY_UNEXTRACTABLE),
                    (no_wrap, no_wrap, PyKCS11.CKR_KEY_FUNCTION_NOT_PERMITTED),
                    (kek, trusted_only, PyKCS11.CKR_KEY_NOT_WRAPPABLE)):
                with self.assertRaises(PyKCS11.PyKCS11Error) as e:
                    s.wrapKey(wrapping, key, WRAP_PAD)
                self.assertEqual(e.exception.value, code)
            wrapped = s.wrapKey(kek, no_wrap, WRAP_PAD)
            with self.assertRaises(PyKCS11.PyKCS11Error) as e:
                s.unwrapKey(no_wrap, wrapped, aes_template(token=False)[:-1], WRAP_PAD)
            self.assertEqual(e.exception.value, PyKCS11.CKR_KEY_FUNCTION_NOT_PERMITTED)
            with self.assertRaises(PyKCS11.PyKCS11Error) as e:
                s.wrapKey(kek, no_wrap, PyKCS11.Mechanism(PyKCS11.CKM_AES_KEY_WRAP_PAD, [1, 2, 3, 4]))
            self.assertEqual(e.exception.value, PyKCS11.CKR_MECHANISM_PARAM_INVALID)
            with self.assertRaises(PyKCS11.PyKCS11Error) as e:
                s.unwrapKey(kek, wrapped, aes_template(token=False, size=16), WRAP_PAD)
            self.assertEqual(e.exception.value, PyKCS11.CKR_TEMPLATE_INCONSISTENT)
            # CKA_WRAP_WITH_TRUSTED may be switched on, never off again.
            s.setAttributeValue(no_wrap, [(PyKCS11.CKA_WRAP_WITH_TRUSTED, True)])
            with self.assertRaises(PyKCS11.PyKCS11Error) as e:
                s.wrapKey(kek, no_wrap, WRAP_PAD)
            self.assertEqual(e.exception.value, PyKCS11.CKR_KEY_NOT_WRAPPABLE)
            with self.assertRaises(PyKCS11.PyKCS11Error) as e:
                s.setAttributeValue(no_wrap, [(PyKCS11.CKA_WRAP_WITH_TRUSTED, False)])
            self.assertEqual(e.exception.value, PyKCS11.CKR_ATTRIBUTE_READ_ONLY)
        finally:
            s.logout()
            s.closeSession()

    def test_wrap_here_unwrap_in_softhsm_and_the_reverse(self):
        soft = SoftHsm()
        s = self.mf.session()
        try:
            kek_value = os.urandom(32)
            ours_kek = s.createObject(aes_template(kek_value, token=True, label="kek",
                                                   extra=KEK_USES))
            soft_kek = soft.session.createObject(aes_template(kek_value, token=False,
                                                              extra=KEK_USES))
            unwrap_template = aes_template(token=False)[:-1] + EXTRACTABLE
            iv = os.urandom(12)
            # hsmsim -> SoftHSM2: a key generated in a unit.
            ours = s.generateKey(aes_template(size=24, token=True, label="leaves",
                                              extra=EXTRACTABLE))
            wrapped = s.wrapKey(ours_kek, ours, WRAP_PAD)
            self.assertEqual(len(wrapped), 32)
            theirs = soft.session.unwrapKey(soft_kek, wrapped, unwrap_template, WRAP_PAD)
            self.assertEqual(bytes(soft.session.encrypt(theirs, list(b"across"), gcm(iv))),
                             bytes(s.encrypt(ours, list(b"across"), gcm(iv))))
            # SoftHSM2 -> hsmsim.
            theirs = soft.session.generateKey(aes_template(size=32, token=False,
                                                           extra=EXTRACTABLE),
                                              PyKCS11.Mechanism(PyKCS11.CKM_AES_KEY_GEN))
            wrapped = soft.session.wrapKey(soft_kek, theirs, WRAP_PAD)
            ours = s.unwrapKey(ours_kek, wrapped, aes_template(token=True, label="arrived")[:-1],
                               WRAP_PAD)
            self.assertEqual(bytes(s.encrypt(ours, list(b"back"), gcm(iv))),
                             bytes(soft.session.encrypt(theirs, list(b"back"), gcm(iv))))
            # And both wrap a key they share to the same bytes.
            value = os.urandom(16)
            a = s.createObject(aes_template(value, token=False, extra=EXTRACTABLE))
            c = soft.session.createObject(aes_template(value, token=False, extra=EXTRACTABLE))
            self.assertEqual(bytes(s.wrapKey(ours_kek, a, WRAP_PAD)),
                             bytes(soft.session.wrapKey(soft_kek, c, WRAP_PAD)))
        finally:
            s.logout()
            s.closeSession()
            soft.close()

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
    while 8 application threads use them (decrypt, wrap, unwrap, generate);
    keys made during the rotation end under the target."""

    THREADS = 8
    # hsmctl keys, so the rotation has work to spread over (--rotation-keys).
    BACKGROUND_KEYS = ARGS.rotation_keys

    def test_workload_through_a_rotation(self):
        mf = ModuleFleet()
        try:
            mf.fleet.run("keys", "create", "--count", str(self.BACKGROUND_KEYS))
            s = mf.session()
            keys = [s.generateKey(aes_template(size=32, label=f"rot{i}")) for i in range(5)]
            kek = s.generateKey(aes_template(size=32, label="rot-kek", extra=KEK_USES))
            leaving = s.generateKey(aes_template(size=16, label="rot-out", extra=EXTRACTABLE))
            iv = os.urandom(12)
            before = [bytes(s.encrypt(k, list(b"before"), gcm(iv))) for k in keys]
            # RFC 5649 is deterministic: the same key wraps to the same bytes
            # whichever blobs the units use.
            wrapped_before = bytes(s.wrapKey(kek, leaving, WRAP_PAD))
            leaving_ct = bytes(s.encrypt(leaving, list(b"leaving"), gcm(iv)))
            mf.new_master_key("second")
            failures, operations, made = [], [0] * self.THREADS, []
            stop = threading.Event()

            def workload(n):
                w = mf.session(login=False)  # the login is the application's
                rounds = 0
                while not stop.is_set():
                    rounds += 1
                    try:
                        for k, ct in zip(keys, before):
                            if bytes(w.decrypt(k, list(ct), gcm(iv))) != b"before":
                                failures.append("wrong plaintext")
                            operations[n] += 1
                        if bytes(w.wrapKey(kek, leaving, WRAP_PAD)) != wrapped_before:
                            failures.append("wrong wrapped key")
                        operations[n] += 1
                        if rounds % 4 == 0:
                            back = w.unwrapKey(kek, list(wrapped_before),
                                               aes_template(token=False)[:-1], WRAP_PAD)
                            if bytes(w.decrypt(back, list(leaving_ct), gcm(iv))) != b"leaving":
                                failures.append("unwrapped key is another key")
                            w.destroyObject(back)
                            operations[n] += 2
                        if rounds % 5 == 0:
                            made.append(w.generateKey(aes_template(size=16, label="during")))
                            operations[n] += 1
                    except PyKCS11.PyKCS11Error as e:  # noqa: PERF203
                        failures.append(str(e))
                w.closeSession()

            threads = [threading.Thread(target=workload, args=(n,)) for n in range(self.THREADS)]
            for t in threads:
                t.start()
            started = time.monotonic()
            try:
                mf.fleet.run("mk", "rotate", "--sign", mf.admin)
            finally:
                rotation_seconds = time.monotonic() - started
                stop.set()
                for t in threads:
                    t.join(timeout=120)
            print(f"RotationTest: {self.BACKGROUND_KEYS} keystore keys rotated in "
                  f"{rotation_seconds:.1f} s; {sum(operations)} operations in {self.THREADS} "
                  f"threads during it, {len(failures)} failed", file=sys.stderr)
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

    def test_session_objects_across_two_rotations(self):
        """Session objects are no keystore rows, so no rotation re-encrypts
        them: the module does, from OLD to CURRENT, when a use finds one under
        OLD. Both session keys, the one used between the rotations and the
        one that was not, work after the second."""
        mf = ModuleFleet()
        try:
            s = mf.session()
            used = s.generateKey(aes_template(size=32, token=False, extra=KEK_USES))
            idle = s.createObject(aes_template(os.urandom(16), token=False, extra=EXTRACTABLE))
            iv = os.urandom(12)
            used_ct = bytes(s.encrypt(used, list(b"used"), gcm(iv)))
            idle_ct = bytes(s.encrypt(idle, list(b"idle"), gcm(iv)))
            wrapped = bytes(s.wrapKey(used, idle, WRAP_PAD))
            mf.new_master_key("second")
            mf.fleet.run("mk", "rotate", "--sign", mf.admin)
            self.assertEqual(bytes(s.decrypt(used, list(used_ct), gcm(iv))), b"used")
            mf.new_master_key("third")
            mf.fleet.run("mk", "rotate", "--sign", mf.admin)
            self.assertEqual(bytes(s.decrypt(used, list(used_ct), gcm(iv))), b"used")
            self.assertEqual(bytes(s.decrypt(idle, list(idle_ct), gcm(iv))), b"idle")
            self.assertEqual(bytes(s.wrapKey(used, idle, WRAP_PAD)), wrapped)
            s.logout()
            s.closeSession()
        finally:
            mf.close()


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0]] + REST, verbosity=2)
