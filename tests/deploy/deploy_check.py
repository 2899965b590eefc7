#!/usr/bin/python3
"""Checks the deployment artifacts in deploy/ against the built hsmsim-unit
(docs/deployment.md), as far as one machine without a container engine or a
cluster can:

- the systemd template unit passes `systemd-analyze verify` (with ExecStart
  pointed at the built binary), warnings included;
- every hsmsim-unit command line in the three artifacts uses only flags that
  `hsmsim-unit --help` lists, each with a value where the flag takes one;
- the container's run stage installs the Debian package of every shared
  library the built hsmsim-unit links, and its build stage installs only
  packages that scripts/setup.sh installs too (names known to be right);
- the Kubernetes manifests parse and hang together: the headless Service
  selects the StatefulSet's pods, ports agree with --listen, every mount has
  a volume, every $(VAR) in the arguments is a defined env var;
- the three artifacts serve the same port;
- a unit started with the systemd unit's command line, with a certificate
  from hsmctl fleet issue-cert, joins a TLS fleet (hsmctl fleet add --tls).

usage: deploy_check.py --unit PATH --hsmctl PATH --source DIR"""

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import unittest

import yaml

ARGS = None


def read(path):
    with open(os.path.join(ARGS.source, path), encoding="utf-8") as f:
        return f.read()


def join_continuations(text):
    """Joins lines ending in a backslash, as systemd and Dockerfiles do."""
    return re.sub(r"\\\n\s*", " ", text)


def unit_flags():
    """Maps each --flag of hsmsim-unit to whether it takes a value, from --help."""
    out = subprocess.run([ARGS.unit, "--help"], capture_output=True, text=True,
                         check=True).stdout
    flags = {}
    for line in out.splitlines():
        m = re.match(r"\s+(?:-\w,)?(--[\w-]+)(.*)", line)
        if not m:
            continue
        # CLI11 prints a value's type one space after the flag (TEXT, UINT,
        # INT:...); a switch is followed by padding before its description,
        # or by nothing when the description goes on the next line.
        rest = m.group(2)
        flags[m.group(1)] = bool(re.match(r" [A-Z]", rest))
    return flags


def check_command_line(test, args, where):
    """Asserts that args (without the program) parse as hsmsim-unit flags."""
    flags = unit_flags()
    i = 0
    seen = []
    while i < len(args):
        arg = args[i]
        test.assertTrue(arg.startswith("--"), f"{where}: {arg!r} is not a flag")
        name, eq, value = arg.partition("=")
        test.assertIn(name, flags, f"{where}: hsmsim-unit has no flag {name}")
        if flags[name] and not eq:
            test.assertLess(i + 1, len(args), f"{where}: {name} needs a value")
            value = args[i + 1]
            test.assertFalse(value.startswith("--"), f"{where}: {name} needs a value")
            i += 1
        seen.append((name, value))
        i += 1
    return dict(seen)


def systemd_exec_start():
    text = join_continuations(read("deploy/systemd/hsmsim-unit@.service"))
    m = re.search(r"^ExecStart=(.*)$", text, re.M)
    return shlex.split(m.group(1))


def container_cmd():
    text = join_continuations(read("deploy/container/Containerfile"))
    entry = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M).group(1))
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))
    return entry, cmd


def container_installs(text, stage):
    """The packages `apt-get install` names in stage `stage` (0 = first)."""
    stages = re.split(r"^FROM ", join_continuations(text), flags=re.M)[1:]
    m = re.search(r"apt-get install ([^&]*)", stages[stage])
    return {w for w in m.group(1).split() if not w.startswith("-")}


def kubernetes_docs():
    return list(yaml.safe_load_all(read("deploy/kubernetes/hsmsim-units.yaml")))


def listen_port(flag_values):
    return int(flag_values["--listen"].rsplit(":", 1)[1])


class SystemdUnitTest(unittest.TestCase):

    def test_verify_passes_without_warnings(self):
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            self.skipTest("systemd-analyze is not installed (package systemd)")
        text = read("deploy/systemd/hsmsim-unit@.service")
        self.assertIn("ExecStart=/usr/local/bin/hsmsim-unit ", text)
        text = text.replace("/usr/local/bin/hsmsim-unit", os.path.abspath(ARGS.unit))
        with tempfile.TemporaryDirectory() as tmp:
            # An instance of the template, as `systemctl start hsmsim-unit@unit0`.
            path = os.path.join(tmp, "hsmsim-unit@unit0.service")
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            run = subprocess.run([analyze, "verify", path], capture_output=True, text=True)
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertEqual(run.stdout + run.stderr, "", "systemd-analyze verify warns")

    def test_command_line_uses_real_flags(self):
        args = systemd_exec_start()
        self.assertEqual(args[0], "/usr/local/bin/hsmsim-unit")
        values = check_command_line(self, args[1:], "hsmsim-unit@.service ExecStart")
        for flag in ("--state-dir", "--tls-cert", "--tls-key", "--tls-ca"):
            self.assertIn(flag, values)

    def test_bad_setup_is_not_restarted(self):
        # Exit 2 (bad flags, a state directory the unit refuses) needs an
        # operator; the unit's --help must still say so.
        text = read("deploy/systemd/hsmsim-unit@.service")
        self.assertRegex(text, r"(?m)^RestartPreventExitStatus=2$")
        help_text = subprocess.run([ARGS.unit, "--help"], capture_output=True,
                                   text=True, check=True).stdout
        self.assertRegex(help_text, r"(?m)^\s+2\s+bad flags")


def free_port():
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RemoteUnitFromTheArtifactTest(unittest.TestCase):
    """The deployment story end to end on one machine: a unit started with
    the systemd unit's own command line (its variables filled in as systemd
    would, listening on 127.0.0.2), its certificate issued by hsmctl fleet
    issue-cert for the id hsmsim-unit --print-unit-id gave, then joined to
    a TLS fleet with hsmctl fleet add --tls and asked for its status."""

    def hsmctl(self, *args):
        run = subprocess.run([ARGS.hsmctl, *args, "--fleet", self.fleet],
                             capture_output=True, text=True, timeout=120)
        self.assertEqual(run.returncode, 0, f"hsmctl {' '.join(args)}: {run.stderr}")
        return run.stdout

    def test_unit_started_as_the_service_joins_a_tls_fleet(self):
        with tempfile.TemporaryDirectory() as tmp:
            self.fleet = os.path.join(tmp, "fleet")
            state = os.path.join(tmp, "state")
            creds = os.path.join(tmp, "credentials")
            self.hsmctl("fleet", "up", "--units", "1", "--tls")
            try:
                os.mkdir(state, 0o700)
                unit_id = subprocess.run([ARGS.unit, "--print-unit-id", "--state-dir", state],
                                         capture_output=True, text=True, check=True).stdout.strip()
                self.hsmctl("fleet", "issue-cert", "remote0", "--unit-id", unit_id, "--out", creds)
                self.assertEqual(os.stat(os.path.join(creds, "unit.key")).st_mode & 0o777, 0o600)
                endpoint = f"127.0.0.2:{free_port()}"
                env = {"HSMSIM_LISTEN": endpoint, "STATE_DIRECTORY": state,
                       "CREDENTIALS_DIRECTORY": creds}
                args = [re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], a)
                        for a in systemd_exec_start()[1:]]
                self.log_path = os.path.join(tmp, "unit.log")
                with open(self.log_path, "w", encoding="utf-8") as log:
                    unit = subprocess.Popen([ARGS.unit, *args], stdout=subprocess.DEVNULL,
                                            stderr=log)
                try:
                    self.join_and_check(endpoint, unit_id, unit)
                finally:
                    unit.terminate()
                    unit.wait(timeout=30)
            finally:
                subprocess.run([ARGS.hsmctl, "fleet", "down", "--fleet", self.fleet],
                               capture_output=True, timeout=120)

    def join_and_check(self, endpoint, unit_id, unit):
        import time
        deadline = time.monotonic() + 30
        while True:
            run = subprocess.run([ARGS.hsmctl, "fleet", "add", "remote0", endpoint, "--tls",
                                  "--fleet", self.fleet, "--json"],
                                 capture_output=True, text=True, timeout=60)
            if run.returncode == 0 or time.monotonic() > deadline or unit.poll() is not None:
                break
            time.sleep(0.2)
        if unit.poll() is not None:
            with open(self.log_path, encoding="utf-8") as log:
                self.fail("the unit exited: " + log.read())
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
        status = json.loads(self.hsmctl("status", "--unit", "remote0", "--json"))
        self.assertEqual(status["units"][0]["unit_id"], unit_id, status)


class ContainerfileTest(unittest.TestCase):

    def test_command_line_uses_real_flags(self):
        entry, cmd = container_cmd()
        self.assertEqual(entry, ["/usr/local/bin/hsmsim-unit"])
        values = check_command_line(self, cmd, "Containerfile CMD")
        expose = re.search(r"^EXPOSE (\d+)$", read("deploy/container/Containerfile"), re.M)
        self.assertEqual(listen_port(values), int(expose.group(1)))

    def test_run_stage_installs_every_linked_library(self):
        if shutil.which("dpkg") is None:
            self.skipTest("dpkg is not installed (not a Debian system)")
        runtime = container_installs(read("deploy/container/Containerfile"), 1)
        ldd = subprocess.run(["ldd", ARGS.unit], capture_output=True, text=True, check=True)
        needed = set()
        for line in ldd.stdout.splitlines():
            m = re.search(r"=> (/\S+)", line)
            if not m:
                continue
            lib = m.group(1)
            owner = None
            for candidate in (os.path.realpath(lib), "/usr" + lib, lib):
                run = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
                if run.returncode == 0:
                    owner = run.stdout.split(":")[0]
                    break
            self.assertIsNotNone(owner, f"no Debian package owns {lib}")
            needed.add(owner)
        # libc6 and libgcc-s1 are in every Debian image (Essential: yes); the
        # sanitizers' runtimes are there only in a sanitizer build of the
        # suite, never in the image's Release build.
        needed = {p for p in needed if not re.match(r"lib(asan|ubsan|tsan|lsan)\d+$", p)}
        missing = needed - runtime - {"libc6", "libgcc-s1"}
        self.assertEqual(missing, set(), "the run stage lacks these packages")

    # The Debian -dev package of each library the non-test CMake files ask
    # for (find_package or pkg_check_modules). A name missing here fails the
    # test, so a new dependency is mapped, and the build stage checked, too.
    CMAKE_PACKAGES = {
        "Threads": None, "Git": None, "PkgConfig": "pkg-config",
        "OpenSSL": "libssl-dev", "Protobuf": "libprotobuf-dev", "absl": "libabsl-dev",
        "Boost": "libboost1.81-dev", "CLI11": "libcli11-dev", "spdlog": "libspdlog-dev",
        "nlohmann_json": "nlohmann-json3-dev", "SQLite3": "libsqlite3-dev",
        "libpq": "libpq-dev", "p11-kit-1": "libp11-kit-dev",
    }

    def test_build_stage_installs_what_cmake_requires(self):
        build = container_installs(read("deploy/container/Containerfile"), 0)
        wanted = set()
        for root, dirs, files in os.walk(ARGS.source):
            dirs[:] = [d for d in dirs if d not in ("tests", "bench", "fuzz", ".git")
                       and not d.startswith("build")]
            if "CMakeLists.txt" not in files:
                continue
            with open(os.path.join(root, "CMakeLists.txt"), encoding="utf-8") as f:
                text = f.read()
            names = re.findall(r"find_package\((\w+)", text)
            names += re.findall(r"pkg_check_modules\(\w+[^)]*?IMPORTED_TARGET\s+([\w.-]+)", text)
            for name in names:
                self.assertIn(name, self.CMAKE_PACKAGES,
                              f"{root}/CMakeLists.txt needs {name}: map it to its Debian package")
                if self.CMAKE_PACKAGES[name]:
                    wanted.add(self.CMAKE_PACKAGES[name])
        self.assertEqual(wanted - build, set(), "the build stage lacks these packages")

    def test_build_stage_packages_are_setup_packages(self):
        build = container_installs(read("deploy/container/Containerfile"), 0)
        setup = set(re.findall(r"[a-z0-9][a-z0-9.+-]+",
                               re.search(r"packages=\((.*?)\n\)", read("scripts/setup.sh"),
                                         re.S).group(1)))
        unknown = build - setup - {"git", "ca-certificates"}
        self.assertEqual(unknown, set(), "build stage packages setup.sh does not install")


class KubernetesTest(unittest.TestCase):

    def setUp(self):
        docs = kubernetes_docs()
        self.by_kind = {d["kind"]: d for d in docs}
        self.assertEqual(set(self.by_kind), {"Namespace", "Service", "StatefulSet"})
        self.sts = self.by_kind["StatefulSet"]
        self.pod = self.sts["spec"]["template"]["spec"]
        self.container = self.pod["containers"][0]

    def test_headless_service_selects_the_units(self):
        svc = self.by_kind["Service"]
        self.assertEqual(svc["spec"]["clusterIP"], "None")
        self.assertEqual(self.sts["spec"]["serviceName"], svc["metadata"]["name"])
        labels = self.sts["spec"]["template"]["metadata"]["labels"]
        for key, value in svc["spec"]["selector"].items():
            self.assertEqual(labels.get(key), value)
        for key, value in self.sts["spec"]["selector"]["matchLabels"].items():
            self.assertEqual(labels.get(key), value)
        namespace = self.by_kind["Namespace"]["metadata"]["name"]
        self.assertEqual(svc["metadata"]["namespace"], namespace)
        self.assertEqual(self.sts["metadata"]["namespace"], namespace)

    def test_arguments_and_ports_agree(self):
        values = check_command_line(self, self.container["args"], "StatefulSet args")
        port = listen_port(values)
        self.assertEqual(self.container["ports"][0]["containerPort"], port)
        svc_port = self.by_kind["Service"]["spec"]["ports"][0]
        self.assertEqual(svc_port["port"], port)
        self.assertEqual(svc_port["targetPort"], self.container["ports"][0]["name"])
        env = {e["name"] for e in self.container.get("env", [])}
        for arg in self.container["args"]:
            for var in re.findall(r"\$\((\w+)\)", arg):
                self.assertIn(var, env, f"$({var}) in args is not an env var")
        # The state directory must not be the volume's root: fsGroup makes
        # that group-writable, which hsmsim-unit refuses.
        mounts = {m["name"]: m["mountPath"] for m in self.container["volumeMounts"]}
        self.assertTrue(values["--state-dir"].startswith(mounts["state"] + "/"))

    def test_every_mount_has_a_volume(self):
        volumes = {v["name"] for v in self.pod.get("volumes", [])}
        volumes |= {c["metadata"]["name"] for c in self.sts["spec"].get("volumeClaimTemplates", [])}
        for mount in self.container["volumeMounts"]:
            self.assertIn(mount["name"], volumes)

    def test_init_container_prints_the_unit_id_of_the_same_state(self):
        init = self.pod["initContainers"][0]
        self.assertEqual(init["image"], self.container["image"])
        values = check_command_line(self, init["args"], "StatefulSet initContainer args")
        self.assertIn("--print-unit-id", values)
        unit = check_command_line(self, self.container["args"], "StatefulSet args")
        self.assertEqual(values["--state-dir"], unit["--state-dir"])

    def test_runs_unprivileged(self):
        self.assertTrue(self.pod["securityContext"]["runAsNonRoot"])
        csc = self.container["securityContext"]
        self.assertFalse(csc["allowPrivilegeEscalation"])
        self.assertEqual(csc["capabilities"]["drop"], ["ALL"])


class SamePortTest(unittest.TestCase):

    def test_the_three_artifacts_serve_one_port(self):
        unit = read("deploy/systemd/hsmsim-unit@.service")
        systemd_port = int(re.search(r"HSMSIM_LISTEN=[^:\s]+:(\d+)", unit).group(1))
        _, cmd = container_cmd()
        container_port = listen_port(check_command_line(self, cmd, "Containerfile CMD"))
        sts = {d["kind"]: d for d in kubernetes_docs()}["StatefulSet"]
        k8s_args = sts["spec"]["template"]["spec"]["containers"][0]["args"]
        k8s_port = listen_port(check_command_line(self, k8s_args, "StatefulSet args"))
        self.assertEqual({systemd_port, container_port, k8s_port}, {7700})


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--unit", required=True, help="the built hsmsim-unit")
    parser.add_argument("--hsmctl", required=True, help="the built hsmctl")
    parser.add_argument("--source", required=True, help="the source tree")
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
