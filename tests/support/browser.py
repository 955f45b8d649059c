"""Debian's chromium, driven through chromium-driver with selenium: the browser of the
status page's tests and of its screenshot. Nothing is downloaded: both binaries come from
apt (tests/ensure_browser.sh installs them), and selenium is handed their paths, so its
own driver manager never runs."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.wait import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PAGE_TIMEOUT_S = 30
# Headless, in a container or as root, and quiet: without the background-networking
# flags chromium tries to reach the network on its own.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--force-device-scale-factor=1")


def missing() -> str | None:
    """What is missing to drive a browser here, or None."""
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not binary.exists():
            return f"{binary} is missing (apt-get install chromium chromium-driver)"
    return None


class Browser:
    """One chromium session: pages, the DOM, dialogs and the console."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    def open(self, url: str) -> None:
        self.driver.get(url)

    def text(self, css: str) -> str:
        """The text of the first element ``css`` selects, as a person sees it."""
        return str(self.driver.find_element(By.CSS_SELECTOR, css).text)

    def texts(self, css: str) -> list[str]:
        return [str(e.text) for e in self.driver.find_elements(By.CSS_SELECTOR, css)]

    def content(self, css: str) -> str:
        """The textContent of the first element ``css`` selects (as written, untrimmed)."""
        element = self.driver.find_element(By.CSS_SELECTOR, css)
        return str(self.driver.execute_script("return arguments[0].textContent", element))

    def contents(self, css: str) -> list[str]:
        """The textContent of every element ``css`` selects."""
        return [str(self.driver.execute_script("return arguments[0].textContent", e))
                for e in self.driver.find_elements(By.CSS_SELECTOR, css)]

    def count(self, css: str) -> int:
        return len(self.driver.find_elements(By.CSS_SELECTOR, css))

    def alert(self) -> str | None:
        """The text of an open dialog (alert, confirm, prompt), or None."""
        try:
            return str(self.driver.switch_to.alert.text)
        except NoAlertPresentException:
            return None

    def console(self) -> list[dict[str, Any]]:
        """What the page logged to the console since the last call (errors, CSP
        violations, failed loads), each with ``level`` and ``message``."""
        return list(self.driver.get_log("browser"))

    def errors(self) -> list[str]:
        return [entry["message"] for entry in self.console() if entry["level"] == "SEVERE"]

    def submit(self, form_css: str, **fields: str) -> None:
        """Fill in and send a form, and wait for the page it leads to."""
        form = self.driver.find_element(By.CSS_SELECTOR, form_css)
        for name, value in fields.items():
            field = form.find_element(By.NAME, name)
            field.clear()
            field.send_keys(value)
        page = self.driver.find_element(By.TAG_NAME, "html")
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        WebDriverWait(self.driver, PAGE_TIMEOUT_S).until(staleness_of(page))
        WebDriverWait(self.driver, PAGE_TIMEOUT_S).until(
            lambda driver: driver.execute_script("return document.readyState") == "complete")

    def cookies(self) -> list[dict[str, Any]]:
        return list(self.driver.get_cookies())

    def screenshot(self, path: Path, width: int) -> None:
        """The whole page at ``width`` pixels wide, as a PNG."""
        height = int(self.driver.execute_script(
            "return document.documentElement.scrollHeight"))
        self.driver.set_window_size(width, height)
        self.driver.get_screenshot_as_file(str(path))


@contextmanager
def chromium(width: int = 1280, height: int = 1000) -> Iterator[Browser]:
    """A fresh headless chromium (its own profile, removed afterwards)."""
    profile = tempfile.mkdtemp(prefix="aegis-chromium-")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--window-size={width},{height}", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=str(CHROMEDRIVER), log_output=os.devnull)
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield Browser(driver)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
