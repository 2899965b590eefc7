#!/usr/bin/python3
"""hsmctl console with a smart card: an administrator whose key is on a
SoftHSM2 token signs Set immediate from the page's API (a pkcs11: URI and
its PIN typed into the page), and the PIN is never echoed back or logged
(docs/console.md, "Passwords and PINs").

usage: console_card_test.py --hsmctl PATH --unit PATH"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from console_support import Console, Fleet  # noqa: E402

ARGS = None
SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
# A PIN no other text of the test contains by chance.
CARD_PIN = "card-pin-7c41d2"


def registers(fleet):
    """Every selected unit's registers, as hsmctl status --json gives them."""
    return {u["unit"]: u["registers"] for u in fleet.json("status")["units"]}


class ConsoleCardTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        # SoftHSM2 tokens of this test only, for every hsmctl it starts (the
        # console's children too: they inherit its environment).
        cls.softhsm = tempfile.TemporaryDirectory(prefix="hsmsim-console-card-")
        tokens = os.path.join(cls.softhsm.name, "tokens")
        os.makedirs(tokens)
        conf = os.path.join(cls.softhsm.name, "softhsm2.conf")
        with open(conf, "w") as f:
            f.write(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n"
                    "log.level = ERROR\n")
        os.environ["SOFTHSM2_CONF"] = conf
        os.environ["HSMSIM_PKCS11_MODULE"] = SOFTHSM_MODULE
        cls.pin_file = os.path.join(cls.softhsm.name, "alice.pin")
        with open(cls.pin_file, "w") as f:
            f.write(CARD_PIN + "\n")
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "alice",
                        "--pin", CARD_PIN, "--so-pin", "so-pin-1"],
                       check=True, capture_output=True, timeout=60)
        cls.fleet = Fleet(ARGS.hsmctl, ARGS.unit, units=2)
        try:
            cls.card_ceremony()
            cls.console = Console(cls.fleet)
        except BaseException:
            cls.fleet.close()
            raise

    @classmethod
    def card_ceremony(cls):
        """alice's administrator key on the card (thresholds 1/1), and a NEW
        master key loaded and committed from two key part files, signed by
        the card (with the PIN from a file: the CLI's way)."""
        fleet = cls.fleet
        token_uri = f"pkcs11:token=alice?pin-source={cls.pin_file}"
        cls.card_uri = "pkcs11:token=alice;object=alice"
        signer = f"{cls.card_uri}?pin-source={cls.pin_file}"
        fleet.run("card", "admin-keygen", token_uri, "--name", "alice", fleet=False)
        fleet.run("admin", "add", signer)
        fleet.run("thresholds", "set", "--signature", "1", "--revocation", "1", "--sign", signer)
        parts = [fleet.path(f"part{i}.kp") for i in (1, 2)]
        for part in parts:
            fleet.run("keypart", "generate", "--out", part, fleet=False)
        fleet.run("mk", "load", "--parts", ",".join(parts), "--sign", signer)
        fleet.run("mk", "commit", "--parts", ",".join(parts), "--yes", "--sign", signer)

    @classmethod
    def tearDownClass(cls):
        cls.console.close()
        cls.fleet.close()
        cls.softhsm.cleanup()

    def assert_pin_nowhere(self):
        for text in [self.console.request("GET", "/api/snapshot")[2],
                     self.console.request("GET", "/api/action")[2],
                     self.console.request("GET", "/api/audit")[2],
                     self.console.error_output()]:
            self.assertNotIn(CARD_PIN, text)
            self.assertNotIn("pin-source", text)

    def test_set_immediate_signed_with_a_card_from_the_page(self):
        before = registers(self.fleet)
        new_vp = before["unit1"]["new"]["verification_pattern"]

        # A wrong PIN: the card's own refusal, nothing changed, the PIN
        # typed nowhere in what the console answers or logs.
        wrong = "wrong-pin-93b0e1"
        state = self.console.action(
            "mk-setimm", {"signers": [{"file": self.card_uri, "password": wrong}]})
        self.assertEqual(state["outcome"], "bad input", state)
        self.assertEqual(state["result"]["error"]["reason"], "WRONG_PIN", state)
        self.assertEqual(registers(self.fleet), before)
        for text in [self.console.request("GET", "/api/snapshot")[2],
                     self.console.error_output()]:
            self.assertNotIn(wrong, text)
        # The page may not put a PIN (or a module) into the URI itself.
        status, answer = self.console.post_json(
            "/api/actions/mk-setimm",
            {"signers": [{"file": self.card_uri + "?pin-value=" + CARD_PIN, "password": ""}]})
        self.assertEqual(status, 400, answer)
        self.assertNotIn(CARD_PIN, str(answer))

        # The right PIN: set immediate signed by alice's card key.
        state = self.console.action(
            "mk-setimm", {"signers": [{"file": self.card_uri, "password": CARD_PIN}]})
        self.assertEqual(state["outcome"], "ok", state)
        self.assertEqual(state["command"], f"hsmctl mk setimm --sign {self.card_uri}")
        after = registers(self.fleet)
        for unit in ("unit1", "unit2"):
            self.assertEqual(after[unit]["current"]["state"], "VALID")
            self.assertEqual(after[unit]["current"]["verification_pattern"], new_vp)
        last = self.fleet.json("audit", "show", "--last", "1")["last_events"][0]
        self.assertEqual(last["command"], "set_immediate")
        self.assertEqual([s["name"] for s in last["signers"]], ["alice"])
        self.assert_pin_nowhere()


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--hsmctl", required=True)
    parser.add_argument("--unit", required=True)
    ARGS, rest = parser.parse_known_args()
    if shutil.which("softhsm2-util") is None or not os.path.exists(SOFTHSM_MODULE):
        print("SKIP: softhsm2 is not installed (scripts/setup.sh installs it)")
        sys.exit(77)
    unittest.main(argv=[sys.argv[0], "-v", *rest])


if __name__ == "__main__":
    main()
