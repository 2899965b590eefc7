"""The p11-kit module file hsmsim.module (pkcs11/CMakeLists.txt installs it in
p11-kit's module config directory): with it in place, `p11-kit list-modules`
lists the module and its fleet's token, and `p11tool --list-tokens` (gnutls-bin)
finds the token.

The file under test is the one CMake generated for installation; its `module:`
line names the installed library, so the test uses a copy naming the library
just built. Nothing is written outside a temporary directory: p11-kit reads
user module configs ($HOME/.config/pkcs11/modules) except as root, where the
copy is bind-mounted over the system config directory in a private mount
namespace (unshare --mount) instead.

usage: p11kit_module_file_test.py --hsmctl PATH --unit PATH --module PATH
           --module-file PATH --configs-dir DIR --libdir DIR
Exits 77 (skipped, with the reason) without p11-kit, or as root without
unshare's mount namespaces."""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "host", "console"))
from console_support import Fleet  # noqa: E402

PARSER = argparse.ArgumentParser()
for flag in ("--hsmctl", "--unit", "--module", "--module-file", "--configs-dir", "--libdir"):
    PARSER.add_argument(flag, required=True)
ARGS, REST = PARSER.parse_known_args()

if shutil.which("p11-kit") is None:
    print("SKIPPED: p11-kit is not installed (Debian p11-kit)")
    sys.exit(77)

PIN = "123456"


class P11KitModuleFileTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.fleet = Fleet(ARGS.hsmctl, ARGS.unit, units=1)
        try:
            admin = cls.fleet.ceremony()
            cls.fleet.run("mk", "setimm", "--sign", admin)
            pin_file = cls.fleet.path("pin")
            with open(pin_file, "w") as f:
                f.write(PIN + "\n")
            cls.fleet.run("pkcs11", "set-pin", "--pin-file", pin_file)
        except BaseException:
            cls.fleet.close()
            raise
        cls.tmp = tempfile.TemporaryDirectory(prefix="hsmsim-p11kit-")
        cls.modules = os.path.join(cls.tmp.name, ".config", "pkcs11", "modules")
        os.makedirs(cls.modules)
        with open(ARGS.module_file) as f:
            cls.installed = f.read()
        built = cls.installed.replace(
            os.path.join(ARGS.libdir, "libhsmsim-pkcs11.so"), os.path.abspath(ARGS.module))
        with open(os.path.join(cls.modules, "hsmsim.module"), "w") as f:
            f.write(built)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()
        cls.fleet.close()

    def run_tool(self, *argv):
        """Runs a p11-kit client with only our module file configured."""
        env = dict(os.environ, HSMSIM_FLEET=self.fleet.dir, HOME=self.tmp.name,
                   XDG_CONFIG_HOME=os.path.join(self.tmp.name, ".config"))
        if os.getuid() != 0:
            return subprocess.run(list(argv), env=env, capture_output=True, text=True,
                                  timeout=120)
        if shutil.which("unshare") is None:
            self.skipTest("running as root, where p11-kit ignores user configs, without unshare")
        # Root: the copy replaces the system config directory in a private
        # mount namespace (only this command sees it).
        script = 'mount --bind "$0" "$1" && shift && exec "$@"'
        result = subprocess.run(["unshare", "--mount", "sh", "-c", script, self.modules,
                                 ARGS.configs_dir, *argv], env=env, capture_output=True,
                                text=True, timeout=120)
        if result.returncode != 0 and "mount" in result.stderr and "hsmsim" not in result.stdout:
            self.skipTest(f"no private mount namespace here: {result.stderr.strip()}")
        return result

    def test_installed_file_names_the_installed_library(self):
        lines = [line.strip() for line in self.installed.splitlines()
                 if line.strip() and not line.startswith("#")]
        self.assertIn(f"module: {os.path.join(ARGS.libdir, 'libhsmsim-pkcs11.so')}", lines)
        self.assertIn("critical: no", lines)

    def test_p11_kit_lists_the_module_and_its_token(self):
        result = self.run_tool("p11-kit", "list-modules")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("hsmsim: " + os.path.abspath(ARGS.module), result.stdout)
        section = result.stdout[result.stdout.index("hsmsim: "):]
        self.assertIn("library-description: hsmsim PKCS#11 module", section)
        self.assertIn("token: ", section)
        self.assertIn("manufacturer: hsmsim", section)

    def test_p11tool_finds_the_token(self):
        if shutil.which("p11tool") is None:
            self.skipTest("p11tool (gnutls-bin) is not installed")
        result = self.run_tool("p11tool", "--list-tokens")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("Manufacturer: hsmsim", result.stdout)
        self.assertIn("manufacturer=hsmsim", result.stdout)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0]] + REST, verbosity=2)
