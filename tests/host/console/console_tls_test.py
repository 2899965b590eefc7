#!/usr/bin/python3
"""hsmctl console on a fleet with TLS (`fleet up --tls`): HTTPS with a
certificate the fleet CA issues for the listen address, the access token
over TLS, a plain HTTP request refused clearly, and the signed actions
reaching TLS units (docs/console.md, "Security model").

usage: console_tls_test.py --hsmctl PATH --unit PATH"""

import argparse
import http.client
import os
import socket
import ssl
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from console_support import PASSWORD, Console, EventStream, Fleet  # noqa: E402

ARGS = None
# How long a change may take to reach the event stream: generous, never a
# latency under test.
CHANGE_BOUND_S = 60


class ConsoleTlsTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.fleet = Fleet(ARGS.hsmctl, ARGS.unit, units=2, tls=True)
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

    def test_url_is_https_and_the_certificate_chains_to_the_fleet_ca(self):
        self.assertEqual(self.console.scheme, "https", self.console.url)
        self.assertIn("over HTTPS", self.console.error_output())
        self.assertIn(f"fleet CA ({self.console.ca_file})", self.console.error_output())
        # The fleet CA as the only trust anchor, the host name checked
        # against the certificate's IP subjectAltName.
        context = ssl.create_default_context(cafile=self.console.ca_file)
        with socket.create_connection(("127.0.0.1", self.console.port), timeout=30) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                cert = tls.getpeercert()
        self.assertIn(("IP Address", "127.0.0.1"), cert["subjectAltName"])
        self.assertIn((("commonName", "hsmctl console"),), cert["subject"])
        issuer_cn = dict(pair[0] for pair in cert["issuer"])["commonName"]
        self.assertEqual(issuer_cn, "hsmsim fleet CA")

    def test_a_client_without_the_fleet_ca_does_not_trust_it(self):
        context = ssl.create_default_context()  # the system's CAs only
        conn = http.client.HTTPSConnection("127.0.0.1", self.console.port, timeout=30,
                                           context=context)
        with self.assertRaises(ssl.SSLCertVerificationError):
            conn.request("GET", "/api/units")
        conn.close()
        # The console is still serving after the failed handshake.
        self.assertEqual(self.console.get_json("/api/units")["ok"], True)

    def test_without_or_with_a_wrong_token_is_401_over_tls(self):
        for method, path in [("GET", "/"), ("GET", "/api/units"), ("GET", "/api/events"),
                             ("POST", "/api/refresh")]:
            status, _, body = self.console.request(method, path, token=False)
            self.assertEqual(status, 401, f"{method} {path}")
            self.assertIn("CONSOLE_UNAUTHORIZED", body)
            self.assertNotIn("unit1", body)
        wrong = ("0" if self.console.token[0] != "0" else "1") + self.console.token[1:]
        status, _, _ = self.console.request(
            "GET", "/api/units", headers={"Authorization": "Bearer " + wrong}, token=False)
        self.assertEqual(status, 401)
        status, _, _ = self.console.request("GET", "/api/units?token=" + self.console.token,
                                            token=False)
        self.assertEqual(status, 401, "the API takes the token in the header only, over TLS too")
        status, _, body = self.console.request("GET", "/?token=" + self.console.token,
                                               token=False)
        self.assertEqual(status, 200)
        self.assertIn("<title>hsmctl console</title>", body)

    def test_plain_http_gets_a_clear_refusal_not_a_hang(self):
        # A bounded timeout: a console that waited for a TLS handshake
        # would make this raise instead of answering.
        conn = http.client.HTTPConnection("127.0.0.1", self.console.port, timeout=30)
        try:
            conn.request("GET", "/?token=" + self.console.token)
            res = conn.getresponse()
            body = res.read().decode()
        finally:
            conn.close()
        self.assertEqual(res.status, 400)
        self.assertIn("HTTPS only", body)
        self.assertIn(f"https://127.0.0.1:{self.console.port}/", body)
        self.assertNotIn(self.console.token, body)
        self.assertNotIn("unit1", body)
        # With a body the console does not read: still the 400 (the console
        # reads and drops the rest before it closes).
        for _ in range(3):
            conn = http.client.HTTPConnection("127.0.0.1", self.console.port, timeout=30)
            try:
                conn.request("POST", "/api/refresh", body=b"x" * (32 * 1024),
                             headers={"Content-Type": "application/json"})
                res = conn.getresponse()
                body = res.read().decode()
            finally:
                conn.close()
            self.assertEqual(res.status, 400)
            self.assertIn("HTTPS only", body)

    def test_views_match_their_commands_over_tls(self):
        units = self.console.get_json("/api/units")
        self.assertEqual(units, self.fleet.json("fleet", "status"))
        self.assertTrue(all(u["tls"] for u in units["units"]), units)
        master_keys = self.console.get_json("/api/master-keys")
        self.assertEqual(master_keys["ok"], True, master_keys)
        self.assertEqual(len(master_keys["units"]), 2)

    def test_event_stream_and_a_signed_action_over_tls(self):
        events = EventStream(self.console)
        try:
            self.assertEqual(events.status, 200)
            self.assertEqual(events.content_type, "text/event-stream")
            self.assertIsNotNone(events.wait_for(lambda s: True, CHANGE_BOUND_S))
            # Set immediate from the page: its hsmctl child talks mutual TLS
            # to the units; the open stream sees CURRENT become the new key.
            new_vp = self.fleet.json("status")["units"][0]["registers"]["new"][
                "verification_pattern"]
            state = self.console.action(
                "mk-setimm", {"signers": [{"file": self.admin, "password": PASSWORD}]})
            self.assertEqual(state["outcome"], "ok", state)

            def promoted(snap):
                units = snap["master_keys"].get("units", [])
                return len(units) == 2 and all(
                    u["registers"]["current"]["verification_pattern"] == new_vp for u in units)
            self.assertIsNotNone(events.wait_for(promoted, CHANGE_BOUND_S),
                                 "set immediate did not reach the stream")
            self.assertNotIn(PASSWORD, self.console.error_output())
        finally:
            events.close()

    def test_unreadable_fleet_ca_key_stops_the_console_with_its_name(self):
        ca_key = os.path.join(self.fleet.dir, "tls", "ca.key")
        moved = ca_key + ".away"
        os.rename(ca_key, moved)
        try:
            result = self.fleet.run("console", check=False)
        finally:
            os.rename(moved, ca_key)
        self.assertEqual(result.returncode, 4, result.stderr)
        self.assertEqual(result.stdout, "", "no URL printed")
        self.assertIn("FILE_UNREADABLE", result.stderr)
        self.assertIn("ca.key", result.stderr)

    def test_damaged_fleet_json_stops_the_console_not_plain_http(self):
        # A fleet.json that cannot be read may name TLS: the console must
        # not fall back to plain HTTP (which would send the token in clear).
        fleet = self.fleet.path("damaged-fleet")
        os.makedirs(fleet)
        with open(os.path.join(fleet, "fleet.json"), "w") as f:
            f.write('{"format_version": 1, "tls": {"ca": "tls/ca.pem"')
        result = self.fleet.run("console", "--fleet", fleet, check=False, fleet=False)
        self.assertEqual(result.returncode, 4, result.stderr)
        self.assertEqual(result.stdout, "", "no URL printed")
        self.assertNotIn("http://", result.stderr)
        self.assertIn("BAD_MANIFEST", result.stderr)


class RemoteUnit:
    """An hsmsim-unit started by the test on 127.0.0.2 (another "host"),
    with a certificate the fleet CA issued for its unit id (hsmctl fleet
    issue-cert); close() stops it (fleet down does not: it has no pid in
    fleet.json)."""

    def __init__(self, fleet, name):
        state = fleet.path(name + "-state")
        printed = subprocess.run([fleet.unit_binary, "--state-dir", state, "--print-unit-id"],
                                 capture_output=True, text=True, timeout=60, check=True)
        self.unit_id = printed.stdout.split()[0]
        certs = fleet.path(name + "-tls")
        fleet.run("fleet", "issue-cert", name, "--unit-id", self.unit_id, "--out", certs)
        port_file = fleet.path(name + ".port")
        self.log = open(fleet.path(name + ".log"), "w")
        self.proc = subprocess.Popen(
            [fleet.unit_binary, "--listen", "127.0.0.2:0", "--port-file", port_file,
             "--state-dir", state, "--tls-cert", os.path.join(certs, "unit.crt"),
             "--tls-key", os.path.join(certs, "unit.key"),
             "--tls-ca", os.path.join(certs, "fleet-ca.crt")],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        self.endpoint = None
        while self.endpoint is None and time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with open(port_file) as f:
                    text = f.read()
                if text.endswith("\n"):
                    self.endpoint = "127.0.0.2:" + text.strip()
            except FileNotFoundError:
                pass
            time.sleep(0.05)
        if self.endpoint is None:
            self.close()
            raise AssertionError(f"the unit on 127.0.0.2 did not start: see {self.log.name}")

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class ConsoleFleetAddTest(unittest.TestCase):
    """Add crypto unit (POST /api/actions/fleet-add: hsmctl fleet add), on a
    TLS fleet over HTTPS."""

    @classmethod
    def setUpClass(cls):
        cls.fleet = Fleet(ARGS.hsmctl, ARGS.unit, units=1, tls=True)
        try:
            cls.console = Console(cls.fleet)
        except BaseException:
            cls.fleet.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.console.close()
        cls.fleet.close()

    def fleet_json(self):
        with open(os.path.join(self.fleet.dir, "fleet.json")) as f:
            return f.read()

    def test_add_a_remote_unit_and_see_it_in_the_fleet_view(self):
        remote = RemoteUnit(self.fleet, "remote1")
        try:
            events = EventStream(self.console)
            try:
                state = self.console.action(
                    "fleet-add", {"name": "remote1", "endpoint": remote.endpoint, "tls": True})
                self.assertEqual(state["outcome"], "ok", state)
                self.assertEqual(state["action"], "fleet add")
                self.assertEqual(state["command"],
                                 f"hsmctl fleet add remote1 {remote.endpoint} --tls")
                self.assertEqual(state["result"]["units"][0]["unit_id"], remote.unit_id, state)

                def listed(snap):
                    units = snap["units"].get("units", [])
                    return any(u["unit"] == "remote1" and u["endpoint"] == remote.endpoint
                               and u["ok"] for u in units)
                self.assertIsNotNone(events.wait_for(listed, CHANGE_BOUND_S),
                                     "remote1 did not reach the fleet view")
            finally:
                events.close()
            self.assertEqual(self.console.get_json("/api/units"),
                             self.fleet.json("fleet", "status"))

            # The same name again: fleet add's own refusal, fleet.json unchanged.
            before = self.fleet_json()
            state = self.console.action(
                "fleet-add", {"name": "remote1", "endpoint": remote.endpoint, "tls": True})
            self.assertEqual(state["outcome"], "bad input", state)
            self.assertEqual(state["result"]["error"]["reason"], "UNIT_NAME_TAKEN", state)
            self.assertEqual(self.fleet_json(), before)
            # The same unit under another name: its pinned id is refused.
            state = self.console.action(
                "fleet-add", {"name": "remote9", "endpoint": remote.endpoint, "tls": True})
            self.assertNotEqual(state["outcome"], "ok", state)
            self.assertEqual(state["result"]["error"]["reason"], "UNIT_ID_MISMATCH", state)
            self.assertEqual(self.fleet_json(), before)
        finally:
            remote.close()

    def test_unreachable_address_is_the_clis_error(self):
        # A port nothing listens on (bound, then closed).
        with socket.socket() as s:
            s.bind(("127.0.0.2", 0))
            port = s.getsockname()[1]
        before = self.fleet_json()
        state = self.console.action("fleet-add",
                                    {"name": "ghost", "endpoint": f"127.0.0.2:{port}"})
        cli = self.fleet.json("fleet", "add", "ghost", f"127.0.0.2:{port}")
        self.assertEqual(state["outcome"], "unit did not answer", state)
        self.assertEqual(state["exit_code"], 3)
        self.assertEqual(state["result"]["error"]["reason"], cli["error"]["reason"])
        self.assertEqual(cli["error"]["reason"], "UNIT_UNREACHABLE")
        self.assertEqual(self.fleet_json(), before)

    def test_bad_bodies_are_refused_before_anything_runs(self):
        for body, why in [({"name": "--fleet", "endpoint": "127.0.0.2:1"}, "name"),
                          ({"name": "r1", "endpoint": "127.0.0.2:1 --tls"}, "endpoint"),
                          ({"name": "r1"}, "endpoint"),
                          ({"name": "r1", "endpoint": "127.0.0.2:1", "tls": "yes"}, "tls"),
                          ({"name": "r1", "endpoint": "127.0.0.2:1",
                            "signers": [{"file": "a.key", "password": "x"}]}, "signers")]:
            last = self.console.get_json("/api/action")["id"]
            status, answer = self.console.post_json("/api/actions/fleet-add", body)
            self.assertEqual(status, 400, (body, answer))
            self.assertIn(why, answer["message"])
            self.assertEqual(self.console.get_json("/api/action")["id"], last, "nothing started")
        status, _ = self.console.post_json("/api/actions/fleet-add",
                                           {"name": "r1", "endpoint": "127.0.0.2:1"}, token=False)
        self.assertEqual(status, 401)


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--hsmctl", required=True)
    parser.add_argument("--unit", required=True)
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0], "-v", *rest])


if __name__ == "__main__":
    main()
