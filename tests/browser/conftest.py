"""The browser of the status page's tests: one headless chromium for the session (Debian's
chromium and chromium-driver, which tests/ensure_browser.sh installs; tests/support/
browser.py), its cookies and console emptied before each test. Without them the tests
skip with a reason, or fail when AEGIS_REQUIRE_BROWSER=1 (CI sets it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.browser import Browser, chromium, missing
from tests.support.required import skip_or_fail


@pytest.fixture(scope="session")
def browser_session() -> Iterator[Browser]:
    problem = missing()
    if problem is not None:
        skip_or_fail(f"{problem}; tests/ensure_browser.sh installs it", "AEGIS_REQUIRE_BROWSER")
    with chromium() as browser:
        yield browser


@pytest.fixture
def browser(browser_session: Browser) -> Browser:
    browser_session.driver.delete_all_cookies()
    browser_session.console()  # what an earlier test left in the log
    return browser_session
