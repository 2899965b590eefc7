#!/usr/bin/python3
"""The signed actions of hsmctl console with real processes (docs/console.md
"Actions"): the token in a header, a wrong password, an interlock refusal,
a set immediate that works, one action at a time.

usage: console_actions_test.py --hsmctl PATH --unit PATH"""

import argparse
import json
import subprocess
import os
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from console_support import PASSWORD, Console, EventStream, Fleet  # noqa: E402

ARGS = None


def registers(fleet):
    """Every selected unit's registers, as hsmctl status --json gives them."""
    return {u["unit"]: u["registers"] for u in fleet.json("status")["units"]}


def wait_gone(pid, timeout=60):
    """Waits until process `pid` no longer exists (killed, then reaped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} still there after {timeout} s")


class ConsoleActionsTest(unittest.TestCase):
    """One fleet, the actions in the order of a ceremony (one test method:
    each step starts from the state the last one left)."""

    @classmethod
    def setUpClass(cls):
        cls.fleet = Fleet(ARGS.hsmctl, ARGS.unit, units=2, fault_injection=True)
        try:
            cls.admin = cls.fleet.ceremony()
            cls.console = Console(cls.fleet)
        except BaseException:
            cls.fleet.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.console.close()
        cls.fleet.close()

    def signers(self, password=PASSWORD):
        return {"signers": [{"file": self.admin, "password": password}]}

    def assert_refused_request(self, path, body, status, token=True, content_type=None):
        before = registers(self.fleet)
        got, answer = self.console.post_json(path, body, token=token,
                                             content_type=content_type or "application/json")
        self.assertEqual(got, status, answer)
        self.assertEqual(self.console.get_json("/api/action")["id"], 0, "nothing was started")
        self.assertEqual(registers(self.fleet), before)
        return answer

    def test_ceremony_story(self):
        # Requests that never start anything: no token in the header (the
        # query's is not taken), another Content-Type, an unknown action, a
        # body the action does not take.
        body = self.signers()
        self.assert_refused_request("/api/actions/mk-setimm", body, 401, token=False)
        self.assert_refused_request("/api/actions/mk-setimm?token=" + self.console.token, body,
                                    401, token=False)
        self.assert_refused_request("/api/actions/mk-setimm", body, 415,
                                    content_type="text/plain")
        self.assert_refused_request("/api/actions/mk-zeroize", body, 404)
        answer = self.assert_refused_request("/api/actions/mk-clear", body, 400)
        self.assertIn("register", answer["message"])
        answer = self.assert_refused_request(
            "/api/actions/mk-setimm", {"signers": [{"file": "--force", "password": "x"}]}, 400)
        self.assertIn("--force", answer["message"])
        status, _, _ = self.console.request("GET", "/api/actions/mk-setimm")
        self.assertEqual(status, 405)

        # A wrong password: the command's own error, registers unchanged,
        # the password nowhere in what the console answers or logs.
        before = registers(self.fleet)
        wrong = "not-the-password-7f3a"
        state = self.console.action("mk-setimm", self.signers(wrong))
        self.assertEqual(state["outcome"], "bad input", state)
        self.assertEqual(state["exit_code"], 4)
        self.assertEqual(state["result"]["error"]["reason"], "WRONG_PASSWORD", state)
        self.assertEqual(registers(self.fleet), before)
        for text in [self.console.request("GET", "/api/snapshot")[2],
                     self.console.request("GET", "/api/action")[2], self.console.error_output()]:
            self.assertNotIn(wrong, text)
            self.assertNotIn(PASSWORD, text)

        # Set immediate, signed: the committed NEW becomes CURRENT on every
        # unit, and the answer is the command's --json document.
        new_vp = before["unit1"]["new"]["verification_pattern"]
        state = self.console.action("mk-setimm", self.signers())
        self.assertEqual(state["outcome"], "ok", state)
        self.assertEqual(state["action"], "mk setimm")
        self.assertEqual(state["result"]["ok"], True)
        after = registers(self.fleet)
        for unit in ("unit1", "unit2"):
            self.assertEqual(after[unit]["current"]["state"], "VALID")
            self.assertEqual(after[unit]["current"]["verification_pattern"], new_vp)
        self.assertEqual(self.console.get_json("/api/snapshot")["action"]["id"], state["id"])

        # Clearing CURRENT while keys are stored under it: the interlock's
        # refusal, shown as a refusal with its reason; nothing changed.
        self.fleet.run("keys", "create", "--count", "20")
        before = registers(self.fleet)
        state = self.console.action("mk-clear", dict(self.signers(), register="current"))
        self.assertEqual(state["outcome"], "refused", state)
        self.assertEqual(state["exit_code"], 1)
        self.assertEqual(state["result"]["error"]["reason"], "INTERLOCK", state)
        self.assertEqual(registers(self.fleet), before)

        # Load and commit a new key from two parts typed into the page.
        parts = []
        for i in (1, 2):
            part = self.fleet.path(f"new{i}.kp")
            self.fleet.run("keypart", "generate", "--out", part, fleet=False)
            parts.append({"file": part, "password": PASSWORD})
        state = self.console.action("mk-load", dict(self.signers(), parts=parts))
        self.assertEqual(state["outcome"], "ok", state)
        expected = state["result"]["expected_verification_pattern"]
        # The parts' own VPs stay with the custodians (hsmctl keypart show).
        for part in parts:
            shown = self.fleet.run("keypart", "show", part["file"], "--json", fleet=False)
            vp = json.loads(shown.stdout)["verification_pattern"]
            self.assertEqual(len(vp), 64)
            self.assertNotIn(vp, self.console.request("GET", "/api/snapshot")[2])
        state = self.console.action("mk-commit", dict(self.signers(), vp=expected))
        self.assertEqual(state["outcome"], "ok", state)
        for regs in registers(self.fleet).values():
            self.assertEqual(regs["new"]["state"], "FULL_COMMITTED")
            self.assertEqual(regs["new"]["verification_pattern"], expected)

        self.fleet.run("keys", "create", "--count", "5000")
        self.abort_story(expected)

        # A rotation run by another hsmctl, stalled while units leave a batch
        # unanswered: the console follows its progress from the
        # journal (keys done, keys/s, the samples of the chart).
        events = EventStream(self.console)
        try:
            for unit in ("unit1", "unit2"):
                self.fleet.run("fault", "inject", unit, "reencrypt-after-blobs", "hang", "1500")
            # Each unit leaves one batch unanswered (4 s); the batch is sent
            # again, and the rotation completes.
            self.fleet.run("mk", "rotate", "--batch-size", "500", "--timeout-ms", "4000",
                           "--sign", self.admin)

            def stalled(snap):
                p = snap.get("rotation_progress") or {}
                return p.get("phase") == "REENCRYPTING" and 0 < p.get("keys_done", 0) < 5020
            snap = events.wait_for(stalled, 60)
            self.assertIsNotNone(snap, "the stalled rotation's progress never showed")
            progress = snap["rotation_progress"]
            self.assertEqual(progress["keys_total"], snap["rotation"]["keys_total"])
            self.assertEqual(progress["rotation"]["target_vp"], expected)
            self.assertEqual(progress["samples"][-1][1], progress["keys_done"])

            # What the rotating hsmctl publishes beside the keystore: keys
            # per unit (and its own keys/s and ETA) while it holds the lock.
            def per_unit(snap):
                p = snap.get("rotation_progress") or {}
                return p.get("published") and sum(p.get("keys_per_unit", {}).values()) > 0
            snap = events.wait_for(per_unit, 60)
            self.assertIsNotNone(snap, "no per-unit progress was published")
            progress = snap["rotation_progress"]
            self.assertLessEqual(set(progress["keys_per_unit"]), {"unit1", "unit2"})
            self.assertEqual(snap["rotation"]["lock_holder"]["command"], "mk rotate")
        finally:
            events.close()

        for regs in registers(self.fleet).values():
            self.assertEqual(regs["current"]["verification_pattern"], expected)
        self.fleet.run("keys", "verify")


    def abort_story(self, target_vp):
        """Abort (mk rotate --abort): refused with no rotation open; refused
        while a stalled rotation holds the lock; then, the rotating hsmctl
        killed, it abandons the rotation: every key stays under CURRENT."""
        state = self.console.action("mk-abort", {})
        self.assertEqual(state["action"], "mk rotate --abort")
        self.assertEqual(state["outcome"], "refused", state)
        self.assertEqual(state["result"]["error"]["reason"], "NO_ROTATION_IN_PROGRESS", state)
        before = registers(self.fleet)

        # Each unit leaves one batch unanswered, and this hsmctl waits for
        # it (a long timeout): the rotation stalls at REENCRYPTING.
        for unit in ("unit1", "unit2"):
            self.fleet.run("fault", "inject", unit, "reencrypt-after-blobs", "hang", "1000")
        rotating = subprocess.Popen(
            [self.fleet.hsmctl, "mk", "rotate", "--batch-size", "500", "--timeout-ms", "600000",
             "--sign", self.admin, "--fleet", self.fleet.dir],
            env=self.fleet.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while True:
                rot = self.console.get_json("/api/rotation")
                if rot.get("journal_phase") == "REENCRYPTING" and rot.get("lock_holder"):
                    break
                self.assertLess(time.monotonic(), deadline, rot)
                self.assertIsNone(rotating.poll(), "the rotation ended instead of stalling")
                time.sleep(0.2)
            state = self.console.action("mk-abort", {})
            self.assertEqual(state["outcome"], "refused", state)
            self.assertEqual(state["result"]["error"]["reason"], "ROTATION_LOCKED", state)
        finally:
            rotating.kill()
            rotating.wait(timeout=60)
        # The hung units are killed and started again (the fault is gone).
        for unit in self.fleet.json("fleet", "status")["units"]:
            os.kill(unit["pid"], signal.SIGKILL)
            wait_gone(unit["pid"])
            self.fleet.run("fleet", "restart", unit["unit"], "--allow-fault-injection")
        self.assertEqual(self.console.get_json("/api/rotation")["journal_phase"], "REENCRYPTING")

        state = self.console.action("mk-abort", {})
        self.assertEqual(state["outcome"], "ok", state)
        self.assertEqual(state["result"]["target_verification_pattern"], target_vp, state)
        self.assertEqual(state["result"]["phase_abandoned"], "REENCRYPTING", state)
        self.assertEqual(self.fleet.json("mk", "rotate", "--status")["journal_phase"], "NONE")
        self.assertEqual(registers(self.fleet), before, "no register changed")
        self.fleet.run("keys", "verify")
        # The page's Abort is there only while a rotation is open.
        deadline = time.monotonic() + 60
        while self.console.get_json("/api/rotation")["journal_phase"] != "NONE":
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.2)


class ForgedProgressFileTest(unittest.TestCase):
    """The progress file beside the keystore is not trusted: a damaged,
    forged, oversized or FIFO one neither stops nor hangs the console."""

    def test_console_survives_what_is_put_at_the_progress_file(self):
        fleet = Fleet(ARGS.hsmctl, ARGS.unit, units=1, fault_injection=True)
        console = None
        rotate = None
        try:
            admin = fleet.ceremony()
            fleet.run("mk", "setimm", "--sign", admin)
            fleet.run("keys", "create", "--count", "3000")
            parts = [fleet.path(f"next{i}.kp") for i in (1, 2)]
            for part in parts:
                fleet.run("keypart", "generate", "--out", part, fleet=False)
            fleet.run("mk", "load", "--parts", ",".join(parts), "--sign", admin)
            fleet.run("mk", "commit", "--parts", ",".join(parts), "--yes", "--sign", admin)
            console = Console(fleet, "--poll-ms", "200")
            # A rotation that holds the lock and stalls on its unit: the
            # console reads the progress file on every poll meanwhile.
            fleet.run("fault", "inject", "unit1", "reencrypt-after-blobs", "hang", "1000")
            rotate = subprocess.Popen(
                [fleet.hsmctl, "mk", "rotate", "--batch-size", "500", "--timeout-ms", "60000",
                 "--sign", admin, "--fleet", fleet.dir],
                env=fleet.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
            progress = os.path.join(fleet.dir, "keystore.db.progress.json")

            def locked():
                snap = console.get_json("/api/snapshot")
                holder = (snap.get("rotation") or {}).get("lock_holder")
                return isinstance(holder, dict) and holder.get("pid") == rotate.pid
            deadline = time.monotonic() + 60
            while not locked():
                self.assertLess(time.monotonic(), deadline, "the rotation never took the lock")
                time.sleep(0.2)

            forged = [
                '{"pid": "%d", "keys_per_unit": {"unit1": 5}}' % rotate.pid,
                '{"pid": %d, "keys_per_unit": {"unit1": "many"}, "keys_per_second": "x"}'
                % rotate.pid,
                '{"pid": %d, "keys_per_unit": [1, 2]}' % rotate.pid,
                "not json at all \xff",
                '{"pid": %d, "pad": "%s"}' % (rotate.pid, "x" * (200 * 1024)),
            ]
            for text in forged + ["FIFO"]:
                if os.path.lexists(progress):
                    os.remove(progress)
                if text == "FIFO":
                    os.mkfifo(progress)
                else:
                    with open(progress, "w", encoding="utf-8", errors="surrogateescape") as f:
                        f.write(text)
                time.sleep(0.6)  # three polls
                snap = console.get_json("/api/snapshot")
                self.assertIsNone(console.proc.poll(), f"the console died on {text[:40]!r}")
                p = snap.get("rotation_progress") or {}
                units = p.get("keys_per_unit") or {}
                self.assertTrue(all(isinstance(v, int) for v in units.values()), p)
                if p.get("published"):
                    self.assertIsInstance(p.get("keys_per_second"), (int, float, type(None)), p)
        finally:
            if rotate is not None:
                rotate.kill()
                rotate.wait()
            if console is not None:
                console.close()
            fleet.close()


class OneActionAtATimeTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.fleet = Fleet(ARGS.hsmctl, ARGS.unit, units=1, fault_injection=True)
        try:
            cls.admin = cls.fleet.ceremony()
            # The unit never answers the set immediate (the fault below): the
            # action runs until this timeout or the unit's restart.
            cls.console = Console(cls.fleet, "--timeout-ms", "600000")
        except BaseException:
            cls.fleet.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.console.close()
        cls.fleet.close()

    def test_second_action_while_one_runs_is_409(self):
        self.fleet.run("fault", "inject", "unit1", "before-persist", "hang")
        signers = {"signers": [{"file": self.admin, "password": PASSWORD}]}
        status, first = self.console.post_json("/api/actions/mk-setimm", signers)
        self.assertEqual(status, 202, first)
        self.assertTrue(self.console.get_json("/api/action")["running"])
        before = registers(self.fleet)
        status, second = self.console.post_json("/api/actions/mk-clear",
                                                dict(signers, register="new"))
        self.assertEqual(status, 409, second)
        self.assertIn("another action is running: hsmctl mk setimm", second["message"])
        status, third = self.console.post_json("/api/actions/mk-abort", {})
        self.assertEqual(status, 409, third)
        state = self.console.get_json("/api/action")
        self.assertEqual(state["id"], first["id"], "the second action was not started")
        self.assertTrue(state["running"])
        self.assertEqual(registers(self.fleet), before)
        # The unit killed drops the hung connection: the first action ends
        # (however hsmctl resolves the lost reply), and the next may start.
        pid = self.fleet.json("fleet", "status")["units"][0]["pid"]
        os.kill(pid, signal.SIGKILL)
        wait_gone(pid)
        self.fleet.run("fleet", "restart", "unit1")
        state = self.console.wait_action(first["id"])
        self.assertIn(state["outcome"], ("ok", "unit did not answer"), state)
        state = self.console.action("mk-clear", dict(signers, register="new"))
        self.assertEqual(state["id"], first["id"] + 1)
        self.assertEqual(state["outcome"], "ok", state)


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--hsmctl", required=True)
    parser.add_argument("--unit", required=True)
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0], "-v", *rest])


if __name__ == "__main__":
    main()
