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
import socket
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from console_support import PASSWORD, Console, Fleet  # noqa: E402

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


class BrowserCase(unittest.TestCase):
    """A fleet of 3 units after a ceremony, the console and a browser; the
    helpers both stories use."""

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
        try:
            if cls.browser is not None:
                cls.browser.quit()
        finally:
            try:
                if cls.console is not None:
                    cls.console.close()
            finally:
                cls.fleet.close()

    def wait(self, condition, what):
        """Waits (generous bound) until `condition(driver)` is true. The page
        rebuilds its tables on every snapshot, so an element found a moment
        ago may be gone: such a read is tried again."""
        from selenium.common.exceptions import (NoSuchElementException,
                                                StaleElementReferenceException)
        from selenium.webdriver.support.ui import WebDriverWait
        return WebDriverWait(
            self.browser, CHANGE_BOUND_S, poll_frequency=0.2,
            ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(
                condition, message=f"the page did not show {what} within {CHANGE_BOUND_S} s")

    # Cell reads one cell of the table `table` in one step (the page may
    # rebuild it at any time): None when there is no such cell, else its
    # text, class, data-state, data-vp and the text of its .vp part.
    CELL_JS = """
        const cell = document.querySelector(
            '#' + arguments[0] + " tr[data-unit='" + arguments[1] + "'] ." + arguments[2]);
        if (!cell) return null;
        const vp = cell.querySelector('.vp');
        return {text: cell.textContent, cls: cell.className,
                state: cell.getAttribute('data-state'), vp: cell.getAttribute('data-vp'),
                vpText: vp ? vp.textContent : null};
    """

    def cell(self, table, unit, cls):
        return self.browser.execute_script(self.CELL_JS, table, unit, cls)

    def text_of(self, element_id):
        return self.browser.execute_script(
            "const e = document.getElementById(arguments[0]); return e ? e.textContent : null;",
            element_id)

    def open_tab(self, tab):
        from selenium.webdriver.common.by import By
        self.browser.find_element(By.CSS_SELECTOR, f"#tabs button[data-tab='{tab}']").click()
        self.wait(lambda d: d.find_element(By.ID, f"tab-{tab}").is_displayed(), f"the {tab} tab")

    def click_select_button(self, unit):
        """Clicks `unit`'s Select / Remove crypto unit button like a user, once."""
        from selenium.webdriver.common.by import By
        clicked = []

        def click(d):
            d.find_element(By.CSS_SELECTOR,
                           f"#units-table tr[data-unit='{unit}'] .select-unit").click()
            clicked.append(True)
            return True
        self.wait(click, f"{unit}'s button")
        self.assertEqual(len(clicked), 1)

    def not_reloaded(self):
        return self.browser.execute_script("return window.__notReloaded === true;")

    def screenshot(self, name):
        self.browser.save_screenshot(os.path.join(ARGS.screenshots, name))



class ConsoleBrowserTest(BrowserCase):

    def test_tabs_show_the_fleet_and_follow_changes(self):
        b = self.browser
        b.get(self.console.url)
        self.wait(lambda d: self.text_of("connection") == "live", "the live stream")
        b.execute_script("window.__notReloaded = true;")

        # Crypto units: every unit of fleet.json, with the facts of status.
        status = self.fleet.json("status")
        for u in status["units"]:
            name = u["unit"]
            want = {"col-endpoint": u["endpoint"], "col-state": "running",
                    "col-selected": "selected", "col-mode": u["mode"],
                    "col-unit-id": u["unit_id"][:16]}
            for cls, text in want.items():
                self.wait(lambda d, n=name, c=cls, t=text: (self.cell("units-table", n, c) or {})
                          .get("text") == t, f"{name}'s {cls} {text}")
        self.screenshot("console-crypto-units.png")

        # Master keys: NEW, CURRENT and OLD of every unit, state and VP.
        self.open_tab("master-keys")
        for u in status["units"]:
            for reg in ("new", "current", "old"):
                want = u["registers"][reg]
                shown = want["verification_pattern"][:16] or "-"

                def matches(d, n=u["unit"], r=reg, w=want, sh=shown):
                    c = self.cell("master-keys-table", n, f"reg-{r}")
                    return c is not None and c["state"] == w["state"] and \
                        c["vp"] == w["verification_pattern"] and c["vpText"] == sh and \
                        "differs" not in c["cls"]
                self.wait(matches, f"{u['unit']}'s {reg} {want['state']} {shown}")
        new_vp = status["units"][0]["registers"]["new"]["verification_pattern"]
        self.assertEqual(len(new_vp), 64)
        self.screenshot("console-master-keys.png")

        # Another hsmctl clears NEW on unit3: the open page marks unit3's
        # NEW as differing from the other units', without a reload.
        self.fleet.run("mk", "clrnew", "--unit", "unit3", "--sign", self.admin)

        def unit3_new_cleared(d):
            c = self.cell("master-keys-table", "unit3", "reg-new")
            return c is not None and c["state"] == "EMPTY" and "differs" in c["cls"]
        self.wait(unit3_new_cleared, "unit3's NEW cleared and marked as differing")
        self.assertTrue(self.not_reloaded(), "the page was reloaded")
        for unit in ("unit1", "unit2"):
            c = self.cell("master-keys-table", unit, "reg-new")
            self.assertEqual(c["vp"], new_vp)
            self.assertNotIn("differs", c["cls"])
        self.screenshot("console-master-keys-differ.png")

        # And unit rm takes unit3 out of the selection on the Crypto units tab.
        self.open_tab("units")
        self.fleet.run("unit", "rm", "unit3")
        self.wait(lambda d: (self.cell("units-table", "unit3", "col-selected") or {})
                  .get("text") == "not selected", "unit3 not selected")
        self.assertTrue(self.not_reloaded())

        # The page's Select button puts it back, as hsmctl unit add does.
        self.click_select_button("unit3")
        self.wait(lambda d: (self.cell("units-table", "unit3", "col-selected") or {})
                  .get("text") == "selected", "unit3 selected again")
        self.wait(lambda d: self.text_of("action-result") == "unit add unit3: ok",
                  "the action's result")
        # A selected unit's button is the vendor console's "Remove crypto
        # units" (hsmctl unit rm).
        self.wait(lambda d: (self.cell("units-table", "unit3", "col-action") or {})
                  .get("text") == "Remove crypto unit", "unit3's Remove crypto unit button")
        unit3 = next(u for u in self.fleet.json("fleet", "status")["units"]
                     if u["unit"] == "unit3")
        self.assertTrue(unit3["selected"])

        # Add crypto unit at an address where no unit listens: hsmctl fleet
        # add's own error under the form, fleet.json unchanged.
        from selenium.webdriver.common.by import By
        with socket.socket() as sock:
            sock.bind(("127.0.0.2", 0))
            port = sock.getsockname()[1]
        before = self.fleet.json("fleet", "status")
        b.find_element(By.ID, "add-unit-name").send_keys("ghost")
        b.find_element(By.ID, "add-unit-endpoint").send_keys(f"127.0.0.2:{port}")
        b.find_element(By.ID, "act-fleet-add").click()
        self.wait(lambda d: "UNIT_UNREACHABLE" in (self.text_of("units-action-status") or ""),
                  "fleet add's UNIT_UNREACHABLE under the form")
        self.assertIn(f"hsmctl fleet add ghost 127.0.0.2:{port}",
                      self.text_of("units-action-status"))
        self.assertEqual(self.fleet.json("fleet", "status"), before)
        self.fleet.run("unit", "rm", "unit3")

        # Recovery names the situation hsmctl recover names.
        self.open_tab("recovery")
        situation = self.fleet.json("recover")["situation"]
        self.wait(lambda d: self.text_of("recovery-situation") == situation,
                  f"the situation {situation}")
        self.assertTrue(self.not_reloaded())
        self.screenshot("console-recovery-after-clrnew.png")


class SeedStoryTest(BrowserCase):
    """The seed page's story clicked through: set immediate, load and commit
    a new master key, Rotate, a unit killed mid-rotation (fault injection),
    the Recovery tab naming the situation, Apply finishing it, every key
    verifying."""

    @classmethod
    def setUpClass(cls):
        os.makedirs(ARGS.screenshots, exist_ok=True)
        cls.fleet = Fleet(ARGS.hsmctl, ARGS.unit, units=3, fault_injection=True)
        cls.console = None
        cls.browser = None
        try:
            cls.admin = cls.fleet.ceremony()
            cls.console = Console(cls.fleet)
            cls.browser = start_browser()
        except BaseException:
            cls.tearDownClass()
            raise

    def type_rows(self, rows_id, add_kind, entries):
        """Types (file, password) entries into the form rows `rows_id`,
        adding rows with its Add button as needed."""
        from selenium.webdriver.common.by import By
        b = self.browser
        for i, (file, password) in enumerate(entries):
            rows = b.find_elements(By.CSS_SELECTOR, f"#{rows_id} .file-row")
            if len(rows) <= i:
                b.find_element(By.CSS_SELECTOR, f".add-row[data-rows='{rows_id}']").click()
                rows = b.find_elements(By.CSS_SELECTOR, f"#{rows_id} .file-row")
            rows[i].find_element(By.CSS_SELECTOR, ".file").clear()
            rows[i].find_element(By.CSS_SELECTOR, ".file").send_keys(file)
            rows[i].find_element(By.CSS_SELECTOR, ".password").send_keys(password)

    def click_action(self, prefix, button_id, parts=()):
        """Signs as alice and clicks the action button; returns the action's
        final state from the page once it is done (id, outcome, text)."""
        from selenium.webdriver.common.by import By
        last = self.console.get_json("/api/action")["id"]
        self.type_rows(f"{prefix}-signers", "signer", [(self.admin, PASSWORD)])
        if parts:
            self.type_rows(f"{prefix}-parts", "part", [(p, PASSWORD) for p in parts])
        self.browser.find_element(By.ID, button_id).click()
        # Passwords are cleared from the page once sent.
        for field in self.browser.find_elements(By.CSS_SELECTOR,
                                                f"#{prefix}-form input[type=password]"):
            self.assertEqual(field.get_attribute("value"), "")
        js = """const box = document.getElementById(arguments[0] + '-action-status');
                const o = box.querySelector('.outcome[data-outcome]');
                return o ? {id: Number(box.getAttribute('data-action-id')),
                            outcome: o.getAttribute('data-outcome'),
                            text: box.textContent} : null;"""

        def done(d):
            state = d.execute_script(js, prefix)
            return state if state and state["id"] > last else None
        state = self.wait(done, f"the end of the action {button_id}")
        if parts:
            for row in self.browser.find_elements(By.CSS_SELECTOR, f"#{prefix}-parts .remove-row"):
                row.click()
        return state

    def wait_situation(self, not_this=None):
        """Waits until the Recovery tab shows the situation hsmctl recover
        names (and, with `not_this`, another one than that); returns it."""
        seen = {}

        def same(d):
            situation = self.fleet.json("recover")["situation"]
            seen["cli"] = situation
            return situation != not_this and self.text_of("recovery-situation") == situation
        self.wait(same, "the situation hsmctl recover names")
        return seen["cli"]

    def test_seed_story(self):
        b = self.browser
        b.get(self.console.url)
        self.wait(lambda d: self.text_of("connection") == "live", "the live stream")
        b.execute_script("window.__notReloaded = true;")
        self.open_tab("master-keys")

        # Set immediate: the ceremony's key becomes CURRENT everywhere.
        state = self.click_action("mk", "act-mk-setimm")
        self.assertEqual(state["outcome"], "ok", state["text"])
        self.fleet.run("keys", "create", "--count", "20000")

        # A new master key from two parts typed into the page: Load, Commit.
        parts = [self.fleet.path(f"next{i}.kp") for i in (1, 2)]
        for part in parts:
            self.fleet.run("keypart", "generate", "--out", part, fleet=False)
        state = self.click_action("mk", "act-mk-load", parts)
        self.assertEqual(state["outcome"], "ok", state["text"])
        state = self.click_action("mk", "act-mk-commit", parts)
        self.assertEqual(state["outcome"], "ok", state["text"])
        target = self.fleet.json("status")["units"][0]["registers"]["new"]["verification_pattern"]
        self.screenshot("console-master-keys-actions.png")

        # Rotate, with unit2 crashing in the middle of its first batch.
        self.fleet.run("fault", "inject", "unit2", "reencrypt-after-blobs", "crash", "100")
        state = self.click_action("mk", "act-mk-rotate")
        self.assertEqual(state["outcome"], "unit did not answer", state["text"])
        self.open_tab("rotation")
        self.wait(lambda d: self.text_of("rewrap-done") ==
                  "KMS CRK rewrap successful, waiting on cryptounit-mk-setimm.",
                  "the rewrap line")
        self.screenshot("console-rotation.png")

        # Recovery names the situation: a unit unreachable; once it is
        # restarted, set immediate on every unit.
        self.open_tab("recovery")
        self.assertEqual(self.wait_situation(), "UNITS_UNREACHABLE")
        self.fleet.run("fleet", "restart", "unit2")
        situation = self.wait_situation(not_this="UNITS_UNREACHABLE")
        self.assertIn(situation, ("SET_IMMEDIATE_ALL", "SET_IMMEDIATE_REST"))
        self.screenshot("console-recovery.png")
        state = self.click_action("recovery", "act-recover-apply")
        self.assertEqual(state["outcome"], "ok", state["text"])
        self.assertEqual(self.wait_situation(), "NOTHING_TO_DO")
        self.assertTrue(self.not_reloaded())

        # Keys and audit: the keys per WKID, all under the new key now, and
        # the chart of the rotation's keys re-encrypted over time.
        self.open_tab("audit")
        self.wait(lambda d: d.execute_script(
            "return document.querySelectorAll('#throughput-chart circle').length") >= 1,
            "the throughput chart")
        self.wait(lambda d: (self.text_of("keys-table") or "").count("20000") == 1,
                  "20000 keys under one WKID")
        self.assertIn("of 20000 keys", self.text_of("throughput-summary"))
        self.screenshot("console-keys.png")

        # Every unit's CURRENT is the new key, and every key verifies.
        for u in self.fleet.json("status")["units"]:
            self.assertEqual(u["registers"]["current"]["verification_pattern"], target)
        self.fleet.run("keys", "verify")


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
