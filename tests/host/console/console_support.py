"""Shared pieces of the hsmctl console tests: a fleet of real hsmsim-unit
processes, a running `hsmctl console`, and HTTP requests to it. Standard
library only; every process started here is stopped by close()."""

import atexit
import http.client
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time

PASSWORD = "console-test-password"

# Whatever ends the test (an assertion, ctest's SIGTERM on a timeout, Ctrl-C),
# every fleet and console it started is stopped: close() is registered with
# atexit, and SIGTERM exits through it.
_OPEN = []


def _close_all():
    for thing in reversed(list(_OPEN)):
        try:
            thing.close()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


atexit.register(_close_all)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


class Fleet:
    """A temporary fleet directory with `units` units, brought down by close()."""

    def __init__(self, hsmctl, unit_binary, units, fault_injection=False, tls=False):
        self.hsmctl = hsmctl
        self.unit_binary = unit_binary
        self.tmp = tempfile.TemporaryDirectory(prefix="hsmsim-console-")
        self.dir = os.path.join(self.tmp.name, "fleet")
        self.env = dict(os.environ, HSMSIM_PASSWORD=PASSWORD)
        self.env.pop("HSMSIM_FLEET", None)
        self.closed = False
        _OPEN.append(self)
        try:
            self.run("fleet", "up", "--units", str(units), "--unit-binary", unit_binary,
                     *(["--allow-fault-injection"] if fault_injection else []),
                     *(["--tls"] if tls else []))
        except BaseException:
            self.close()  # units that did start are stopped
            raise

    def path(self, name):
        return os.path.join(self.tmp.name, name)

    def run(self, *args, check=True, fleet=True):
        """Runs hsmctl ARGS --fleet DIR (without --fleet unless `fleet`);
        returns the CompletedProcess."""
        command = [self.hsmctl, *args] + (["--fleet", self.dir] if fleet else [])
        result = subprocess.run(command, env=self.env,
                                stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"hsmctl {' '.join(args)} exited {result.returncode}:\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def json(self, *args):
        """Runs hsmctl ARGS --json and returns its document (whatever the exit code)."""
        return json.loads(self.run(*args, "--json", check=False).stdout)

    def ceremony(self):
        """One administrator (thresholds 1/1) and a NEW master key loaded and
        committed from two key parts on every unit; returns the admin key file."""
        admin = self.path("alice.key")
        self.run("admin", "keygen", "--name", "alice", "--out", admin, fleet=False)
        self.run("admin", "add", admin)
        self.run("thresholds", "set", "--signature", "1", "--revocation", "1", "--sign", admin)
        parts = [self.path(f"part{i}.kp") for i in (1, 2)]
        for i, part in enumerate(parts):
            self.run("keypart", "generate", "--out", part, "--description", f"part {i + 1}",
                     fleet=False)
        self.run("mk", "load", "--parts", ",".join(parts), "--sign", admin)
        self.run("mk", "commit", "--parts", ",".join(parts), "--yes", "--sign", admin)
        return admin

    def close(self):
        if self.closed:
            return
        self.closed = True
        try:
            subprocess.run([self.hsmctl, "fleet", "down", "--fleet", self.dir, "--grace-ms",
                            "3000"], env=self.env, stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=60)
        finally:
            self.tmp.cleanup()
            if self in _OPEN:
                _OPEN.remove(self)


class Console:
    """A running `hsmctl console` on the fleet; close() stops it (SIGTERM)."""

    URL = re.compile(r"^(https?)://127\.0\.0\.1:(\d+)/\?token=([0-9a-f]{64})$")

    def __init__(self, fleet, *extra):
        # stderr goes to a file: a pipe nobody reads while the console runs
        # would fill and block it.
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [fleet.hsmctl, "console", "--fleet", fleet.dir, *extra], env=fleet.env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        _OPEN.append(self)
        # The first line is the URL; a console that fails says why on stderr.
        line = self._first_line(timeout=60)
        match = self.URL.match(line.strip())
        if not match:
            self.close()
            raise AssertionError(f"hsmctl console printed {line!r}, not its URL; stderr: "
                                 f"{self.error_output()}")
        self.url = line.strip()
        self.scheme = match.group(1)
        self.port = int(match.group(2))
        self.token = match.group(3)
        # Over HTTPS the fleet CA is the one trust anchor, and the
        # certificate must name the address (check_hostname, an IP SAN).
        self.ca_file = os.path.join(fleet.dir, "tls", "ca.pem")
        self.tls_context = None
        if self.scheme == "https":
            self.tls_context = ssl.create_default_context(cafile=self.ca_file)

    def connection(self, timeout=30):
        """A new HTTP or HTTPS connection to the console."""
        if self.tls_context is not None:
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout,
                                               context=self.tls_context)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def _first_line(self, timeout):
        box = []
        reader = threading.Thread(target=lambda: box.append(self.proc.stdout.readline()),
                                  daemon=True)
        reader.start()
        reader.join(timeout)
        if not box:
            self.close()
            raise AssertionError(f"hsmctl console printed no URL within {timeout} s; "
                                 f"stderr: {self.error_output()}")
        return box[0]

    def error_output(self):
        """What the console wrote on stderr so far."""
        self.stderr.flush()
        self.stderr.seek(0)
        return self.stderr.read()

    def request(self, method, path, headers=None, token=True, body=None):
        """Returns (status, headers, body) of one request; `token` adds the
        Authorization header."""
        conn = self.connection()
        try:
            h = dict(headers or {})
            if token:
                h["Authorization"] = "Bearer " + self.token
            conn.request(method, path, body=body, headers=h)
            res = conn.getresponse()
            return res.status, dict(res.getheaders()), res.read().decode()
        finally:
            conn.close()

    def post_json(self, path, doc, token=True, content_type="application/json"):
        """POSTs `doc` (a JSON value, or text as is); returns (status, document or text)."""
        body = doc if isinstance(doc, str) else json.dumps(doc)
        status, _, text = self.request("POST", path, headers={"Content-Type": content_type},
                                       token=token, body=body)
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def action(self, name, doc, timeout=120):
        """Runs the signed action NAME (POST /api/actions/NAME) and returns
        GET /api/action once it is done (raises unless it was started)."""
        status, answer = self.post_json("/api/actions/" + name, doc)
        if status != 202:
            raise AssertionError(f"action {name}: HTTP {status}: {answer}")
        return self.wait_action(answer["id"], timeout)

    def wait_action(self, action_id, timeout=120):
        """Returns GET /api/action once action `action_id` is done."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.get_json("/api/action")
            if state["id"] == action_id and not state["running"]:
                return state
            time.sleep(0.1)
        raise AssertionError(f"action {action_id} not done within {timeout} s: {state}")

    def get_json(self, path):
        status, _, body = self.request("GET", path)
        if status != 200:
            raise AssertionError(f"GET {path}: HTTP {status}: {body}")
        return json.loads(body)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Sends `sig` and returns the exit code (raises if it does not exit)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        if self in _OPEN:
            _OPEN.remove(self)


class EventStream:
    """GET /api/events read on a thread; snapshots() returns those received."""

    def __init__(self, console):
        self.conn = console.connection(timeout=120)
        self.conn.request("GET", "/api/events", headers={"Authorization": "Bearer " + console.token})
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.content_type = self.response.getheader("Content-Type")
        self._snapshots = []
        self._lock = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        event, data = None, []
        try:
            for raw in self.response:
                line = raw.decode().rstrip("\n")
                if line == "":
                    if event == "snapshot" and data:
                        with self._lock:
                            self._snapshots.append(json.loads("\n".join(data)))
                            self._lock.notify_all()
                    event, data = None, []
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip(" "))
        except (OSError, ValueError):
            pass

    def wait_for(self, predicate, timeout):
        """Returns the first snapshot received that satisfies `predicate`,
        waiting up to `timeout` seconds; None if none came."""
        deadline = time.monotonic() + timeout
        with self._lock:
            seen = 0
            while True:
                for snap in self._snapshots[seen:]:
                    if predicate(snap):
                        return snap
                seen = len(self._snapshots)
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._lock.wait(left)

    def close(self):
        self.conn.close()
