#!/usr/bin/python3
"""hsmctl console in a real browser: Debian's chromium, driven by
chromedriver through python3-selenium (installed by scripts/setup.sh).

A fleet of 3 units after a ceremony (NEW committed), the console, and the
page: the Crypto units and Master keys tabs show every unit and its VPs as
`hsmctl status --json` gives them; a change made by another hsmctl shows in
the open page without a reload. Screenshots go to --screenshots.

Exits 77 (ctest: skipped), saying why, only when chromium, chromedriver or
selenium is missing.

usage: console_browser_test.py --hsmctl PATH --unit PATH --screenshots DIR"""

import argparse
import os
import shutil
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from console_support import Console, Fleet  # noqa: E402

SKIP = 77
ARGS = None
# How long the page may take to show a change: generous, never a latency
# under test (the console reads the fleet every 500 ms and pushes it).
CHANGE_BOUND_S = 60

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def missing_prerequisite():
    """Returns why the browser test cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "python3-selenium is not installed (scripts/setup.sh installs it)"
    for path, package in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")]:
        if not os.access(path, os.X_OK):
            return f"{path} is missing: {package} is not installed (scripts/setup.sh installs it)"
    return None


def start_browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ["--headless=new", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,900", "--no-first-run", "--no-default-browser-check",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-extensions"]:
        options.add_argument(arg)
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # chromium refuses its sandbox as root
    # The driver is Debian's: naming it keeps selenium from looking for one
    # on the network.
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


class ConsoleBrowserTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        os.makedirs(ARGS.screenshots, exist_ok=True)
        cls.fleet = Fleet(ARGS.hsmctl, ARGS.unit, units=3)
        cls.console = None
        cls.browser = None
        try:
            cls.admin = cls.fleet.ceremony()
            cls.console = Console(cls.fleet)
            cls.browser = start_browser()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.browser is not None:
            cls.browser.quit()
        if cls.console is not None:
            cls.console.close()
        cls.fleet.close()

    def wait(self, condition, what):
        from selenium.webdriver.support.ui import WebDriverWait
        return WebDriverWait(self.browser, CHANGE_BOUND_S, poll_frequency=0.2).until(
            condition, message=f"the page did not show {what} within {CHANGE_BOUND_S} s")

    def row(self, table, unit):
        from selenium.webdriver.common.by import By
        return self.browser.find_element(By.CSS_SELECTOR, f"#{table} tr[data-unit='{unit}']")

    def open_tab(self, tab):
        from selenium.webdriver.common.by import By
        self.browser.find_element(By.CSS_SELECTOR, f"#tabs button[data-tab='{tab}']").click()
        self.wait(lambda d: d.find_element(By.ID, f"tab-{tab}").is_displayed(), f"the {tab} tab")

    def screenshot(self, name):
        self.browser.save_screenshot(os.path.join(ARGS.screenshots, name))

    def test_tabs_show_the_fleet_and_follow_changes(self):
        from selenium.webdriver.common.by import By
        b = self.browser
        b.get(self.console.url)
        self.wait(lambda d: d.find_element(By.ID, "connection").text == "live", "the live stream")

        # Crypto units: every unit of fleet.json, with the facts of status.
        status = self.fleet.json("status")
        self.wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#units-table tbody tr")) == 3,
                  "3 units")
        for u in status["units"]:
            row = self.row("units-table", u["unit"])
            self.assertEqual(row.find_element(By.CLASS_NAME, "col-endpoint").text, u["endpoint"])
            self.assertEqual(row.find_element(By.CLASS_NAME, "col-state").text, "running")
            self.assertEqual(row.find_element(By.CLASS_NAME, "col-selected").text, "selected")
            self.assertEqual(row.find_element(By.CLASS_NAME, "col-mode").text, u["mode"])
            self.assertEqual(row.find_element(By.CLASS_NAME, "col-unit-id").text,
                             u["unit_id"][:16])
        self.screenshot("console-crypto-units.png")

        # Master keys: NEW, CURRENT and OLD of every unit, state and VP.
        self.open_tab("master-keys")
        for u in status["units"]:
            row = self.row("master-keys-table", u["unit"])
            for reg in ("new", "current", "old"):
                cell = row.find_element(By.CLASS_NAME, f"reg-{reg}")
                want = u["registers"][reg]
                self.assertEqual(cell.get_attribute("data-state"), want["state"])
                self.assertEqual(cell.get_attribute("data-vp"), want["verification_pattern"])
                shown = want["verification_pattern"][:16] or "-"
                self.assertEqual(cell.find_element(By.CLASS_NAME, "vp").text, shown)
                self.assertNotIn("differs", cell.get_attribute("class"))
        new_vp = status["units"][0]["registers"]["new"]["verification_pattern"]
        self.assertEqual(len(new_vp), 64)
        self.screenshot("console-master-keys.png")

        # Another hsmctl clears NEW on unit3: the open page marks unit3's
        # NEW as differing from the other units', without a reload.
        version = b.find_element(By.TAG_NAME, "body").get_attribute("data-version")
        b.execute_script("window.__notReloaded = true;")
        self.fleet.run("mk", "clrnew", "--unit", "unit3", "--sign", self.admin)

        def unit3_new_cleared(d):
            cell = self.row("master-keys-table", "unit3").find_element(By.CLASS_NAME, "reg-new")
            return cell.get_attribute("data-state") == "EMPTY" and \
                "differs" in cell.get_attribute("class")
        self.wait(unit3_new_cleared, "unit3's NEW cleared and marked as differing")
        self.assertTrue(b.execute_script("return window.__notReloaded === true;"),
                        "the page was reloaded")
        self.assertNotEqual(b.find_element(By.TAG_NAME, "body").get_attribute("data-version"),
                            version)
        for unit in ("unit1", "unit2"):
            cell = self.row("master-keys-table", unit).find_element(By.CLASS_NAME, "reg-new")
            self.assertEqual(cell.get_attribute("data-vp"), new_vp)
        self.screenshot("console-master-keys-differ.png")

        # And unit rm takes unit3 out of the selection on the Crypto units tab.
        self.open_tab("units")
        self.fleet.run("unit", "rm", "unit3")
        self.wait(lambda d: self.row("units-table", "unit3").find_element(
            By.CLASS_NAME, "col-selected").text == "not selected", "unit3 not selected")
        self.assertTrue(b.execute_script("return window.__notReloaded === true;"))

        # The page's Select button puts it back, as hsmctl unit add does.
        self.row("units-table", "unit3").find_element(By.CLASS_NAME, "select-unit").click()
        self.wait(lambda d: self.row("units-table", "unit3").find_element(
            By.CLASS_NAME, "col-selected").text == "selected", "unit3 selected again")
        self.wait(lambda d: d.find_element(By.ID, "action-result").text == "unit add unit3: ok",
                  "the action's result")
        unit3 = next(u for u in self.fleet.json("fleet", "status")["units"]
                     if u["unit"] == "unit3")
        self.assertTrue(unit3["selected"])
        self.fleet.run("unit", "rm", "unit3")

        # Recovery names the situation hsmctl recover names.
        self.open_tab("recovery")
        situation = self.fleet.json("recover")["situation"]
        self.wait(lambda d: d.find_element(By.ID, "recovery-situation").text == situation,
                  f"the situation {situation}")
        self.screenshot("console-recovery.png")


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--hsmctl", required=True)
    parser.add_argument("--unit", required=True)
    parser.add_argument("--screenshots", required=True)
    ARGS, rest = parser.parse_known_args()
    why = missing_prerequisite()
    if why is not None:
        print(f"SKIPPED: {why}")
        sys.exit(SKIP)
    unittest.main(argv=[sys.argv[0], "-v", *rest])


if __name__ == "__main__":
    main()
