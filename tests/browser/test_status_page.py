"""The status page in a real browser (Debian's chromium through chromium-driver): a real
daemon's open incident on the overview, markup from outside shown as text and never run
(asserted on the DOM, on the absence of a dialog, and on a console without errors or
Content-Security-Policy violations), the token form, and the screenshot of docs/."""

from __future__ import annotations

import dataclasses
import secrets
import struct
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from aegis import api
from aegis.core.config import Settings
from aegis.web import auth
from tests.browser import screenshot
from tests.support.browser import Browser
from tests.support.containers import IDLE
from tests.support.daemons import Spawner, daemon_env
from tests.support.ports import free_port
from tests.support.rows import sql_rows
from tests.support.seeds import HOSTILE, IMG, NOW, SCRIPT, seed_incident
from tests.support.waiting import wait_for
from tests.support.web import serving

pytestmark = pytest.mark.browser

TOKEN = "c0ffee" * 6
# A health probe that prints markup and fails: what a careless or hostile image may do.
HOSTILE_PROBE = {"test": ["CMD", "/bin/sh", "-c", "echo '<script>alert(1)</script>'; "
                          "echo '\"><img src=x onerror=alert(1)>'; exit 1"],
                 "interval": 500_000_000, "timeout": 2_000_000_000, "retries": 1}
INCIDENT_TIMEOUT_S = 90


def ran_nothing(browser: Browser, allowed: tuple[str, ...] = ()) -> None:
    """No dialog opened, no script or image element made it into the DOM, and the console
    has no error (a CSP violation is one) but the ``allowed`` ones."""
    assert browser.alert() is None
    assert browser.count("script") == 0
    assert browser.count("img") == 0
    errors = [e for e in browser.errors() if not any(a in e for a in allowed)]
    assert errors == []


def test_markup_from_outside_is_shown_as_text_and_runs_nothing(
        browser: Browser, app: api.Aegis, database_url: str) -> None:
    seed_incident(database_url)
    with serving(app, NOW) as url:
        browser.open(url + "/")
        ran_nothing(browser)
        assert browser.texts("#incidents tbody td:first-child") == [SCRIPT, "queue"]
        assert browser.content("#incidents .probe-output") == HOSTILE

        browser.open(url + "/container?" + urlencode({"host": "test-host", "name": SCRIPT}))
        ran_nothing(browser)
        assert browser.content("#container-name") == SCRIPT
        assert browser.content("#probes .probe-output") == HOSTILE
        assert browser.content("#labels tbody tr:nth-child(5) td:nth-child(2)") == IMG
        assert f"aegis ack '{SCRIPT}'" in browser.content("#commands pre")

        browser.open(url + "/jobs")
        ran_nothing(browser)
        assert browser.content("#history tbody td.text") == f"boom {SCRIPT}"

        browser.open(url + "/events?" + urlencode({"since": "2d", "importance": "high"}))
        ran_nothing(browser)
        assert IMG in browser.contents("#events tbody span.text")
        assert any(f'"note": "{SCRIPT}"' in d for d in browser.contents("#events pre.details"))


def test_the_token_form_opens_the_pages_once(
        browser: Browser, app: api.Aegis, settings: Settings, database_url: str) -> None:
    seed_incident(database_url)
    guarded = api.Aegis(dataclasses.replace(settings, http_token=TOKEN), app.db)
    with serving(guarded, NOW) as url:
        browser.open(url + "/events?importance=high")
        assert browser.driver.title == "Token · aegis"
        assert browser.count("#incidents") == 0  # nothing of aegis before the token
        # the only error: the page itself answered 401
        ran_nothing(browser, allowed=("status of 401",))

        browser.submit("#login form", token="not-the-token-at-all")
        assert "not the token aegis was given" in browser.text("#login .problem")
        ran_nothing(browser, allowed=("status of 401",))

        browser.submit("#login form", token=TOKEN)
        assert browser.driver.title == "Events · aegis"
        assert browser.driver.current_url == url + "/events?importance=high"
        ran_nothing(browser)
        cookie = {c["name"]: c for c in browser.cookies()}["aegis_session"]
        assert cookie["httpOnly"] is True
        assert cookie["value"] != TOKEN
        assert "aegis_session" not in browser.driver.execute_script("return document.cookie")

        browser.open(url + "/")  # entered once: every page opens now
        assert browser.driver.title == "Overview · aegis"
        assert SCRIPT in browser.text("#incidents")
        browser.submit("form.logout")
        assert browser.driver.title == "Token · aegis"
        ran_nothing(browser, allowed=("status of 401",))


def test_the_acknowledge_button_takes_over_an_escalated_container(
        browser: Browser, app: api.Aegis, settings: Settings, database_url: str) -> None:
    seed_incident(database_url)
    guarded = api.Aegis(dataclasses.replace(settings, http_token=TOKEN), app.db)
    page = "/container?" + urlencode({"host": "test-host", "name": SCRIPT})
    with serving(guarded, NOW) as url:
        browser.open(url + page)
        browser.submit("#login form", token=TOKEN)
        assert browser.content("#container-name") == SCRIPT
        assert browser.count("form.ack") == 1
        ran_nothing(browser, allowed=("status of 401",))  # the page before the token

        browser.submit("form.ack")
        assert browser.driver.current_url == url + page
        assert browser.content("#container-name") == SCRIPT
        assert browser.count("form.ack") == 0  # taken over: nothing left to acknowledge
        assert "ack" in browser.text("#container")
        ran_nothing(browser)
    [row] = sql_rows(database_url, "SELECT phase FROM containers WHERE name = %s", SCRIPT)
    assert row["phase"] == "ok"


@pytest.mark.docker
def test_the_overview_of_a_daemon_with_an_open_incident_shows_it(
        browser: Browser, aegis_env: dict[str, str], make_container: Callable[..., Any],
        tmp_path: Path) -> None:
    name = f"aegis-test-page-{secrets.token_hex(4)}"
    port = free_port()
    container = make_container(IDLE, name=name, healthcheck=HOSTILE_PROBE,
                               labels={"aegis.enable": "true"})
    spawn = Spawner()
    try:
        # only this container (labeled scope), no restart (a budget of 0): strike 1, then
        # the escalation one strike interval later
        spawn(daemon_env(aegis_env, AEGIS_JOB_MODULES="", AEGIS_REMEDIATION="on",
                         AEGIS_DOCKER_SCOPE="labeled", AEGIS_MAX_RESTARTS="0",
                         AEGIS_STRIKE_INTERVAL="1s", AEGIS_HTTP_ADDR=f"127.0.0.1:{port}",
                         AEGIS_HTTP_TOKEN=TOKEN, AEGIS_LOG_LEVEL="info"))
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(browser, url), 60, "the daemon's status page")
        browser.submit("#login form", token=TOKEN)

        def escalated() -> bool:
            browser.open(url + "/")
            return any(row.startswith(f"{name} test-host escalated")
                       for row in browser.texts("#incidents tbody tr"))

        wait_for(escalated, INCIDENT_TIMEOUT_S, f"{name} escalated on the overview")
        ran_nothing(browser)
        assert browser.texts("#incidents tbody td:first-child") == [name]
        assert browser.content("#incidents .probe-output").strip() == HOSTILE
        assert browser.text("#hosts .card").startswith("test-host running")

        browser.driver.find_element("link text", name).click()
        assert browser.content("#container-name") == name
        assert browser.content("#probes .probe-output").strip() == HOSTILE
        assert f"aegis ack {name}" in browser.content("#commands pre")
        ran_nothing(browser)
    finally:
        spawn.stop_all()
        container.remove(force=True)


def _answers(browser: Browser, url: str) -> bool:
    try:
        browser.open(url + "/")
    except Exception:  # not listening yet: chromium's error page
        time.sleep(0.5)
        return False
    browser.console()  # its own connection errors while the daemon started
    return bool(browser.driver.title == "Token · aegis")


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


@pytest.mark.usefixtures("browser_session")  # skips (or fails) as the others without one
def test_the_screenshot_of_the_overview_is_written_by_the_tool_docs_use(
        app: api.Aegis, tmp_path: Path) -> None:
    shot = tmp_path / "overview.png"
    screenshot.take(app, shot)
    width, height = png_size(shot)
    assert width == screenshot.WIDTH
    assert height > 1000  # the whole page, charts and tables
    assert png_size(screenshot.DOCS_SHOT)[0] == screenshot.WIDTH


class PolicyTestPage(BaseHTTPRequestHandler):
    """A page with an inline script, served with the status page's headers."""

    def do_GET(self) -> None:
        body = b"<!doctype html><title>t</title><p id=p>text</p><script>alert(1)</script>"
        self.send_response(200)
        for name, value in auth.SECURITY_HEADERS:
            self.send_header(name, value)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


def test_the_policy_blocks_an_inline_script_and_the_console_check_sees_it(
        browser: Browser) -> None:
    """What the checks above rely on: with the status page's headers chromium runs no
    inline script, and says so on the console, where ``ran_nothing`` looks."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), PolicyTestPage)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        browser.open(f"http://127.0.0.1:{server.server_address[1]}/")
        assert browser.alert() is None
        assert browser.text("#p") == "text"
        errors = browser.errors()
        assert any("Content Security Policy" in e for e in errors), errors
    finally:
        server.shutdown()
        server.server_close()
