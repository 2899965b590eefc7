#!/usr/bin/python3
"""hsmctl console with real processes: a fleet of hsmsim-unit, the console,
plain HTTP requests and the event stream (docs/console.md).

usage: console_process_test.py --hsmctl PATH --unit PATH"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from console_support import Console, EventStream, Fleet  # noqa: E402

ARGS = None
# How long a change may take to reach the event stream: generous, never a
# latency under test (the console reads the fleet every 500 ms).
CHANGE_BOUND_S = 60


class ConsoleProcessTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.fleet = Fleet(ARGS.hsmctl, ARGS.unit, units=3)
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

    # ---- the access token -------------------------------------------------

    def test_without_token_every_path_is_401(self):
        for method, path in [("GET", "/"), ("GET", "/api/units"), ("GET", "/api/master-keys"),
                             ("GET", "/api/events"), ("GET", "/api/snapshot"),
                             ("POST", "/api/refresh"), ("GET", "/favicon.ico")]:
            status, headers, body = self.console.request(method, path, token=False)
            self.assertEqual(status, 401, f"{method} {path}")
            self.assertIn("CONSOLE_UNAUTHORIZED", body)
            self.assertNotIn("unit1", body)

    def test_wrong_token_is_401(self):
        wrong = ("0" if self.console.token[0] != "0" else "1") + self.console.token[1:]
        for headers in [{"Authorization": "Bearer " + wrong},
                        {"Authorization": "Bearer " + self.console.token[:-1]},
                        {"Authorization": self.console.token},
                        {"Authorization": "Basic " + self.console.token}]:
            status, _, _ = self.console.request("GET", "/api/units", headers=headers, token=False)
            self.assertEqual(status, 401, headers)
        status, _, _ = self.console.request("GET", "/?token=" + wrong, token=False)
        self.assertEqual(status, 401)

    def test_token_in_query_or_cookie_is_refused_for_post_and_api(self):
        t = self.console.token
        for method, path, headers in [
                ("POST", "/api/refresh?token=" + t, {}),
                ("POST", "/?token=" + t, {}),
                ("POST", "/api/refresh", {"Cookie": "token=" + t}),
                ("GET", "/api/units?token=" + t, {}),
                ("GET", "/api/units", {"Cookie": "token=" + t})]:
            status, _, _ = self.console.request(method, path, headers=headers, token=False)
            self.assertEqual(status, 401, f"{method} {path} {headers}")
        status, _, body = self.console.request("POST", "/api/refresh")
        self.assertEqual(status, 202, body)

    def test_page_opens_with_the_printed_url(self):
        self.assertEqual(self.console.scheme, "http", "a fleet without TLS: plain HTTP")
        status, headers, body = self.console.request(
            "GET", "/?token=" + self.console.token, token=False)
        self.assertEqual(status, 200)
        self.assertIn("<title>hsmctl console</title>", body)
        policy = headers.get("Content-Security-Policy", "")
        self.assertIn("default-src 'none'", policy)
        self.assertIn("connect-src 'self'", policy)
        self.assertNotIn("http", body.replace("http://127", ""),
                         "the page refers to no other site")

    # ---- the JSON API is what hsmctl prints --------------------------------

    def assertServes(self, path, *command):
        """The console serves at `path` the document `hsmctl COMMAND --json`
        prints. The console reads the fleet every 500 ms, so after a change
        (another test's) its answer may lag: it must match within the
        bound. Returns the document."""
        expected = self.fleet.json(*command)
        deadline = time.monotonic() + CHANGE_BOUND_S
        while True:
            served = self.console.get_json(path)
            if served == expected or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.maxDiff = None
        self.assertEqual(served, expected)
        return served

    def test_units_match_fleet_status_json(self):
        self.assertServes("/api/units", "fleet", "status")

    def test_master_keys_match_status_json(self):
        served = self.assertServes("/api/master-keys", "status")
        vps = {u["registers"]["new"]["verification_pattern"] for u in served["units"]}
        self.assertEqual(len(vps), 1)
        self.assertEqual(len(vps.pop()), 64, "the committed NEW key's VP, as status shows it")

    def test_rotation_recovery_audit_match_their_commands(self):
        self.assertServes("/api/rotation", "mk", "rotate", "--status")
        self.assertServes("/api/recovery", "recover")
        audit = self.assertServes("/api/audit", "audit", "show", "--last", "50")
        self.assertEqual(audit["command"], "audit show")
        self.assertGreater(audit["events"], 0)
        # The last events, newest first: the ceremony's, signed by alice.
        seqs = [e["seq"] for e in audit["last_events"]]
        self.assertEqual(seqs[0], audit["events"])
        self.assertEqual(seqs, sorted(seqs, reverse=True))
        self.assertEqual(len(seqs), min(50, audit["events"]))
        self.assertEqual(audit["last_events"][0]["hash"], audit["head"])
        self.assertEqual(audit["last_events"][0]["signers"][0]["name"], "alice")

    def test_no_key_material_in_any_answer(self):
        with open(self.admin) as f:
            # Whole base64 lines of the encrypted key (a short last line
            # could match a hex VP by chance).
            pem_lines = [line.strip() for line in f if len(line.strip()) >= 32
                         and "----" not in line and not line.startswith("#")]
        self.assertGreater(len(pem_lines), 5)
        bodies = [self.console.request("GET", p)[2] for p in
                  ["/", "/api/units", "/api/master-keys", "/api/rotation", "/api/recovery",
                   "/api/audit", "/api/snapshot"]]
        for body in bodies:
            self.assertNotIn("PRIVATE KEY", body)
            self.assertNotIn(self.fleet.env["HSMSIM_PASSWORD"], body)
            for line in pem_lines:
                self.assertNotIn(line, body)

    def test_select_action_is_unit_rm_and_unit_add(self):
        import json as jsonlib

        def post(body, token=True, path="/api/units/select",
                 content_type="application/json"):
            headers = {"Content-Type": content_type}
            return self.console.request("POST", path, headers=headers, token=token, body=body)

        def selected(name):
            doc = self.fleet.json("fleet", "status")
            return next(u for u in doc["units"] if u["unit"] == name)["selected"]

        body = jsonlib.dumps({"units": ["unit2"], "selected": False})
        status, _, _ = post(body, token=False)
        self.assertEqual(status, 401)
        status, _, _ = post(body, token=False, path="/api/units/select?token=" + self.console.token)
        self.assertEqual(status, 401)
        status, _, _ = post(body, content_type="text/plain")
        self.assertEqual(status, 415)
        self.assertTrue(selected("unit2"), "a refused request changed nothing")
        try:
            status, _, answer = post(body)
            self.assertEqual(status, 200, answer)
            self.assertEqual(jsonlib.loads(answer)["command"], "unit rm")
            self.assertFalse(selected("unit2"))
        finally:
            status, _, answer = post(jsonlib.dumps({"units": ["unit2"], "selected": True}))
            self.assertEqual(status, 200, answer)
        self.assertTrue(selected("unit2"))
        status, _, answer = post(jsonlib.dumps({"units": ["unit9"], "selected": False}))
        self.assertEqual(status, 422)
        self.assertEqual(jsonlib.loads(answer)["error"]["reason"], "NO_SUCH_UNIT")

    # ---- live updates -------------------------------------------------------

    def test_change_by_another_hsmctl_reaches_the_event_stream(self):
        events = EventStream(self.console)
        try:
            self.assertEqual(events.status, 200)
            self.assertEqual(events.content_type, "text/event-stream")
            first = events.wait_for(lambda s: True, CHANGE_BOUND_S)
            self.assertIsNotNone(first, "no snapshot on a new stream")
            self.assertIn("units", first)

            def unit3(snap):
                return next(u for u in snap["units"]["units"] if u["unit"] == "unit3")

            self.assertTrue(unit3(first)["selected"])
            self.fleet.run("unit", "rm", "unit3")
            try:
                changed = events.wait_for(lambda s: not unit3(s)["selected"], CHANGE_BOUND_S)
                self.assertIsNotNone(changed, "unit rm unit3 did not reach the stream")
                self.assertGreater(changed["version"], first["version"])
                self.assertEqual([u["unit"] for u in changed["master_keys"]["units"]],
                                 ["unit1", "unit2"])
            finally:
                self.fleet.run("unit", "add", "unit3")
            back = events.wait_for(lambda s: unit3(s)["selected"], CHANGE_BOUND_S)
            self.assertIsNotNone(back, "unit add unit3 did not reach the stream")
        finally:
            events.close()


    def test_audit_event_by_another_hsmctl_reaches_the_stream(self):
        events = EventStream(self.console)
        try:
            first = events.wait_for(lambda s: s["audit"].get("ok"), CHANGE_BOUND_S)
            self.assertIsNotNone(first, "no audit view on a new stream")
            count = first["audit"]["events"]
            # Another administrator installed by another hsmctl (and
            # removed again): one audit event per unit and command.
            bob = self.fleet.path("bob.key")
            self.fleet.run("admin", "keygen", "--name", "bob", "--out", bob, fleet=False)
            self.fleet.run("admin", "add", bob, "--sign", self.admin)
            try:
                changed = events.wait_for(lambda s: s["audit"].get("events", 0) >= count + 3,
                                          CHANGE_BOUND_S)
            finally:
                self.fleet.run("admin", "rm", "bob", "--sign", self.admin)
            self.assertIsNotNone(changed, "the new audit events did not reach the stream")
            newest = changed["audit"]["last_events"][:3]
            self.assertEqual([e["seq"] for e in newest], [count + 3, count + 2, count + 1])
            self.assertEqual(sorted(e["unit"] for e in newest), ["unit1", "unit2", "unit3"])
            for e in newest:
                self.assertEqual(e["command"], "add_admin", e)
                self.assertTrue(e["ok"], e)
                self.assertEqual(e["signers"][0]["name"], "alice")
            removed = events.wait_for(
                lambda s: (s["audit"].get("last_events") or [{}])[0].get("command")
                == "remove_admin",
                CHANGE_BOUND_S)
            self.assertIsNotNone(removed, "admin rm's events did not reach the stream")
        finally:
            events.close()


class ConsoleStartTest(unittest.TestCase):
    """--listen checks and shutdown, each with a console of its own."""

    @classmethod
    def setUpClass(cls):
        cls.fleet = Fleet(ARGS.hsmctl, ARGS.unit, units=1)

    @classmethod
    def tearDownClass(cls):
        cls.fleet.close()

    def test_non_loopback_is_refused_without_allow_remote(self):
        r = self.fleet.run("console", "--listen", "0.0.0.0:0", check=False)
        self.assertEqual(r.returncode, 4, r.stderr)
        self.assertIn("LISTEN_NOT_LOOPBACK", r.stderr)
        self.assertEqual(r.stdout, "")

    def test_bad_listen_address(self):
        for text in ["localhost:80", "127.0.0.1", "127.0.0.1:99999"]:
            r = self.fleet.run("console", "--listen", text, check=False)
            self.assertEqual(r.returncode, 4, r.stderr)
            self.assertIn("BAD_LISTEN_ADDRESS", r.stderr)

    def test_port_in_use(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            port = s.getsockname()[1]
            r = self.fleet.run("console", "--listen", f"127.0.0.1:{port}", check=False)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("CONSOLE_LISTEN_FAILED", r.stderr)

    def test_sigint_and_sigterm_stop_it_cleanly(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            console = Console(self.fleet)
            try:
                events = EventStream(console)  # an open stream does not hold it up
                self.assertIsNotNone(events.wait_for(lambda s: True, CHANGE_BOUND_S))
                self.assertEqual(console.stop(sig), 0)
                self.assertIn("stopped by signal", console.error_output())
                events.close()
            finally:
                console.close()

    def test_fixed_port_and_no_fleet(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        console = Console(self.fleet, "--listen", f"127.0.0.1:{port}")
        try:
            self.assertEqual(console.port, port)
        finally:
            console.close()
        # Without a fleet, the console still serves, and each view says why.
        missing = Fleet.__new__(Fleet)
        missing.hsmctl, missing.dir, missing.env = ARGS.hsmctl, self.fleet.path("nothing"), self.fleet.env
        console = Console(missing)
        try:
            units = console.get_json("/api/units")
            self.assertEqual(units["ok"], False)
            self.assertEqual(units["error"]["reason"], "NO_FLEET")
        finally:
            console.close()


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--hsmctl", required=True)
    parser.add_argument("--unit", required=True)
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0], "-v", *rest])


if __name__ == "__main__":
    main()
