"""The status page over real HTTP against a real database: what each page shows, that
everything from outside is escaped, the token and its form, the headers of every answer,
that no request changes anything, and the pages while the database is gone."""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlencode

import pytest

from aegis import api
from aegis.core.config import Settings
from aegis.web import auth
from tests.support.postgres import drop_database
from tests.support.rows import execute, sql_rows
from tests.support.seeds import (
    HOSTILE,
    IMG,
    NOW,
    SCRIPT,
    add_container,
    add_event,
    add_run,
    seed_incident,
)
from tests.support.web import beat, serving

TOKEN = "4f0c2b9d8e7a6f5e4d3c2b1a09f8e7d6"
Fetch = Callable[..., tuple[int, dict[str, str], str]]


class Texts(HTMLParser):
    """The text inside the element with a given id, and the elements a page holds."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.by_id: dict[str, list[str]] = {}
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self._open: list[tuple[str, str | None]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.tags.append((tag, found))
        self.handle_data(" ")  # cells and items read apart
        if tag not in ("meta", "link", "input", "br", "rect", "line"):
            self._open.append((tag, found.get("id")))
            if found.get("id"):
                self.by_id.setdefault(str(found["id"]), [])

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self._open.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        for _, element_id in self._open:
            if element_id:
                self.by_id[element_id].append(data)

    def text(self, element_id: str) -> str:
        return " ".join("".join(self.by_id[element_id]).split())


def page_text(html: str, element_id: str) -> str:
    return Texts(html).text(element_id)


def serve(app: api.Aegis, settings: Settings, now: datetime) -> Iterator[str]:
    """The pages of a daemon with ``settings`` on ``app``'s database, at ``now``."""
    with serving(api.Aegis(settings, app.db), now) as base:
        yield base


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any) -> None:
        return None


def fetch(base: str, path: str, *, method: str = "GET", data: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers=headers or {})
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=15) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


@pytest.fixture
def open_site(app: api.Aegis, settings: Settings) -> Iterator[Fetch]:
    """The page of a daemon with no token (listening on loopback)."""
    for base in serve(app, settings, NOW):
        yield functools.partial(fetch, base)


@pytest.fixture
def token_site(app: api.Aegis, settings: Settings) -> Iterator[Fetch]:
    """The page of a daemon with AEGIS_HTTP_TOKEN set."""
    for base in serve(app, dataclasses.replace(settings, http_token=TOKEN), NOW):
        yield functools.partial(fetch, base)


def bearer(**headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}", **headers}


def assert_escaped(html: str) -> None:
    assert "<script" not in html
    assert "<img" not in html
    assert "onerror=alert(1)&gt;" in html or "&lt;script&gt;" in html


def test_the_overview_shows_an_open_incident_first_and_escapes_what_came_from_outside(
        open_site: Fetch, database_url: str) -> None:
    seed_incident(database_url)
    status, headers, html = open_site("/")
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert_escaped(html)
    # the probe output, escaped, exactly where a person reads it
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\n&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" \
        in html
    texts = Texts(html)
    incidents = texts.text("incidents")
    assert incidents.index(SCRIPT) < incidents.index("queue")  # escalated first
    assert f"aegis ack '{SCRIPT}'" in incidents
    assert "an older probe" not in incidents  # the latest output only
    assert "backup" in texts.text("containers")
    assert "calm" not in html
    assert "old-host stale" in texts.text("hosts")
    assert "test-host running" in texts.text("hosts")
    problems = texts.text("problem-runs")
    assert f"boom {SCRIPT}" in problems
    assert "a day ago" not in problems
    assert "2026-11-22 12:03:00 UTC" in texts.text("jobs")
    assert "escalations: 1" in texts.text("actions")
    assert texts.text("rendered") == "2026-11-22 12:00:00 UTC"
    assert "refreshes every 30 s" in html
    assert '<meta http-equiv="refresh" content="30">' in html


def test_times_are_shown_in_aegis_timezone(app: api.Aegis, settings: Settings,
                                          database_url: str) -> None:
    seed_incident(database_url)
    berlin = dataclasses.replace(settings, timezone="Europe/Berlin")
    for base in serve(app, berlin, NOW):
        status, _, html = fetch(base, "/")
        assert status == 200
        texts = Texts(html)
        assert texts.text("rendered") == "2026-11-22 13:00:00 CET"
        assert "2026-11-22 13:03:00 CET" in texts.text("jobs")


def test_a_containers_page_shows_incidents_restarts_probes_labels_and_commands(
        open_site: Fetch, database_url: str) -> None:
    seed_incident(database_url)
    add_event(database_url, NOW - timedelta(minutes=9), "container_bad_label", "medium",
              summary=f"label {IMG}", container=SCRIPT)
    add_event(database_url, NOW - timedelta(minutes=8), "nightly_backup_check", "low",
              container=SCRIPT, probe_output="an operator's own check")
    query = urlencode({"host": "test-host", "name": SCRIPT})
    status, _, html = open_site(f"/container?{query}")
    assert status == 200
    assert_escaped(html)
    texts = Texts(html)
    assert texts.text("container-name") == SCRIPT
    assert f"aegis ack '{SCRIPT}'" in texts.text("commands")
    assert "Last 30 days: 1 restart, 0 failed restarts, 1 escalation" in texts.text(
        "restarts")
    assert " ".join(HOSTILE.split()) in texts.text("probes")
    assert "an older probe" in texts.text("probes")
    assert "nightly_backup_check" in texts.text("probes")  # not one of aegis's own types
    incidents = texts.text("incidents")
    assert incidents.index("container_restarted") < incidents.index("container_escalated")
    assert "Incident 1" in incidents
    assert "open" in incidents
    labels = texts.text("labels")
    assert f"aegis.max-restarts {IMG}" in labels
    assert "(AEGIS_MAX_RESTARTS)" in labels
    assert f"label {IMG}" in texts.text("other-events")

    status, _, html = open_site("/container?" + urlencode({"host": "test-host",
                                                           "name": "nobody"}))
    assert status == 404
    assert "no container 'nobody' on host 'test-host'" in page_text(html, "problem")
    assert open_site("/container")[0] == 400


def test_a_container_in_its_maintenance_window_shows_it_on_both_pages(
        open_site: Fetch, database_url: str) -> None:
    # NOW is 12:00 UTC: the window of 11:00 for two hours is under way
    add_container(database_url, "nightly", state="maintenance", health="unhealthy",
                  labels={"aegis.maintenance-window": "0 11 * * */2h"})
    add_container(database_url, "typo", state="ok", health="unhealthy",
                  labels={"aegis.maintenance-window": "0 11 * * *"})
    texts = Texts(open_site("/")[2])
    assert "nightly test-host maintenance" in " ".join(texts.text("containers").split())
    assert "2026-11-22 11:00:00 UTC to 2026-11-22 13:00:00 UTC" in texts.text("containers")
    page = Texts(open_site("/container?" + urlencode({"host": "test-host",
                                                      "name": "nightly"}))[2])
    assert ("aegis.maintenance-window of nightly: 2026-11-22 11:00:00 UTC to "
            "2026-11-22 13:00:00 UTC") in " ".join(page.text("container").split())
    assert "maintenance window cron 0 11 * * * UTC for 2h" in page.text("labels")
    typo = Texts(open_site("/container?" + urlencode({"host": "test-host",
                                                      "name": "typo"}))[2])
    assert "ignored: aegis.maintenance-window='0 11 * * *' has no /<duration>" in \
        typo.text("labels")


def test_incidents_show_their_class_their_folded_dependants_and_autoheal_labels(
        open_site: Fetch, database_url: str) -> None:
    """What the incidents branch adds to a row: the triage class, a dependant folded into
    its parent's incident, a Swarm task observed, and docker-autoheal's labels."""
    add_container(database_url, "vpn", state="escalated", phase="escalated", strikes=3,
                  incident=2, incident_class="oom", health="unhealthy",
                  strike_at=NOW - timedelta(minutes=4), affected=["vpn-client"],
                  labels={"autoheal": "true", "autoheal.stop.timeout": "20"})
    add_container(database_url, "vpn-client", state="striking", phase="striking", strikes=1,
                  incident=1, incident_class="unhealthy", folded_into="vpn",
                  health="unhealthy", strike_at=NOW - timedelta(minutes=3),
                  last_reason="waits for vpn, whose incident it depends on")
    add_container(database_url, "web.1.task", state="striking", phase="striking", strikes=1,
                  incident=1, incident_class="unhealthy", supervision="orchestrated",
                  health="unhealthy", strike_at=NOW - timedelta(minutes=2))
    add_event(database_url, NOW - timedelta(minutes=30), "container_escalated", "critical",
              container="vpn", incident=1, **{"class": "broken_probe"})
    add_event(database_url, NOW - timedelta(minutes=20), "container_recovered", "medium",
              container="vpn", incident=1, **{"class": "broken_probe"})
    add_event(database_url, NOW - timedelta(minutes=5), "container_unhealthy", "medium",
              container="vpn", incident=2, **{"class": "unhealthy"})
    add_event(database_url, NOW - timedelta(minutes=4), "container_escalated", "critical",
              container="vpn", incident=2, **{"class": "oom"})

    status, _, html = open_site("/")
    assert status == 200
    incidents = page_text(html, "incidents")
    assert "Class: killed for lack of memory" in incidents
    assert "Also affected: vpn-client" in incidents
    assert "Folded into vpn's incident." in incidents
    assert incidents.count("Class:") == 1  # a plain unhealthy one needs no word on it
    assert "aegis ack vpn" in incidents
    assert "aegis ack vpn-client" not in incidents  # nothing to take over: vpn's is

    status, _, html = open_site("/container?" + urlencode({"host": "test-host",
                                                           "name": "vpn"}))
    assert status == 200
    texts = Texts(html)
    facts = texts.text("container")
    assert "class killed for lack of memory oom" in facts
    assert "also affected vpn-client" in facts
    timelines = texts.text("incidents")
    assert timelines.index("Incident 2 · killed for lack of memory") \
        < timelines.index("Incident 1 · the health check command is broken")
    labels = texts.text("labels")
    assert "aegis.enable not set supervised even without a health check or outside the " \
        "scope (by autoheal)" in labels
    assert "aegis.stop-timeout not set 20s to stop before a kill (by " \
        "autoheal.stop.timeout)" in labels
    assert "autoheal true docker-autoheal's, read as aegis.enable" in labels

    status, _, html = open_site("/container?" + urlencode({"host": "test-host",
                                                           "name": "vpn-client"}))
    facts = page_text(html, "container")
    assert "class unhealthy folded into vpn's incident: it waits for that one" in facts
    status, _, html = open_site("/container?" + urlencode({"host": "test-host",
                                                           "name": "web.1.task"}))
    assert "supervision orchestrated" in page_text(html, "container")


def test_a_containers_page_shows_its_latest_incidents_last_log_lines_escaped(
        open_site: Fetch, database_url: str) -> None:
    """The lines the escalation read, not the restart's; why none could be read; and a
    row written before aegis read logs."""
    at = (NOW - timedelta(minutes=3)).isoformat()
    log = [{"at": at, "step": "restarted", "text": "r", "log_tail": ["before the restart"]},
           {"at": at, "step": "escalated", "text": "e", "log_tail": ["boom-7f3a", IMG, SCRIPT]}]
    add_container(database_url, "web", state="escalated", phase="escalated", strikes=3,
                  incident=2, incident_log=json.dumps(log))
    add_container(database_url, "quiet", state="escalated", phase="escalated", strikes=3,
                  incident=1, incident_log=json.dumps([
                      {"at": at, "step": "escalated", "text": "e",
                       "log_tail_unavailable": "log driver none: the engine keeps no logs to "
                                               "read"}]))
    add_container(database_url, "older", state="escalated", phase="escalated", strikes=3,
                  incident=1, incident_log=json.dumps([
                      {"at": at, "step": "escalated", "text": "e", "probe": "p"}]))

    status, _, html = open_site("/container?" + urlencode({"host": "test-host", "name": "web"}))
    assert status == 200
    assert_escaped(html)
    shown = page_text(html, "log-tail")
    assert "incident 2" in shown
    assert "at its escalated step" in shown
    assert f"boom-7f3a {' '.join(IMG.split())} {SCRIPT}" in shown
    assert "before the restart" not in shown

    status, _, html = open_site("/container?" + urlencode({"host": "test-host",
                                                           "name": "quiet"}))
    assert "log driver none: the engine keeps no logs to read" in page_text(html, "log-tail")
    status, _, html = open_site("/container?" + urlencode({"host": "test-host",
                                                           "name": "older"}))
    assert status == 200
    assert "None read" in page_text(html, "log-tail")


def test_the_events_page_filters_as_aegis_events_does_and_pages_with_a_cursor(
        open_site: Fetch, database_url: str) -> None:
    for n in range(120):
        add_event(database_url, NOW - timedelta(minutes=n), "container_restarted"
                  if n % 3 == 0 else "health_check", "high" if n % 4 == 0 else "low",
                  summary=f"event {n}", container="web" if n % 2 == 0 else "db")
    add_event(database_url, NOW - timedelta(days=2), "container_restarted", "high",
              summary="two days ago", container="web")

    def summaries(path: str) -> tuple[list[int], str | None]:
        status, _, html = open_site(path)
        assert status == 200, html
        found = [int(n) for n in re.findall(r"event (\d+)", page_text(html, "events"))]
        link = re.search(r'class="next" href="([^"]+)"', html)
        return found, link.group(1).replace("&amp;", "&") if link else None

    first, link = summaries("/events")
    assert first == list(range(50))  # newest first, one page
    seen = list(first)
    while link:
        more, link = summaries(link)
        seen += more
    assert seen == list(range(120))  # every event once, in order, across three pages

    filters = {"type": "container_restarted", "importance": "high", "container": "web"}
    found, _ = summaries("/events?" + urlencode(filters))
    assert found == [n for n in range(120) if n % 3 == 0 and n % 4 == 0 and n % 2 == 0]
    assert "two days ago" not in open_site("/events?" + urlencode(filters))[2]
    assert "two days ago" in open_site("/events?" + urlencode({**filters, "since": "3d"}))[2]

    for query, problem in (("since=yesterday-ish", "since:"),
                           ("since=999999999d", "since: '999999999d' reaches back before"),
                           ("importance=urgent", "importance: 'urgent' is not one of"),
                           ("before=garbage", "before: not a page cursor")):
        status, _, html = open_site(f"/events?{query}")
        assert status == 400
        assert problem in page_text(html, "problem")


def test_the_jobs_page_shows_trigger_duration_lateness_and_host_page_by_page(
        open_site: Fetch, database_url: str) -> None:
    execute(database_url, "INSERT INTO jobs (id, trigger) VALUES ('backup', 'at 02:00'), "
            "('report', 'every 1h')")
    add_run(database_url, "backup", NOW - timedelta(hours=10), late_s=2.5, took_s=90,
            host="db-host")
    add_run(database_url, "backup", NOW - timedelta(hours=9), trigger="manual", late_s=7)
    for n in range(60):
        add_run(database_url, "report", NOW - timedelta(hours=n), late_s=0.02)
    status, _, html = open_site("/jobs?job=backup")
    assert status == 200
    rows = re.findall(r"<tr>\s*<td><time[^>]*>([^<]+)</time></td>(.*?)</tr>",
                      html.split('id="history"')[1], re.S)
    cells = [[c.strip() for c in re.sub(r"<[^>]+>", "|", row[1]).split("|") if c.strip()]
             for row in rows]
    assert cells == [["backup", "manual", "ok", "1.0 s", "-", "test-host"],
                     ["backup", "schedule", "ok", "90.0 s", "2.5 s", "db-host"]]
    assert "backup #" in html  # the lateness chart has the scheduled run's column

    _, _, html = open_site("/jobs?job=report")
    assert html.count("<td>report</td>") == 50
    link = re.search(r'class="next" href="([^"]+)"', html)
    assert link is not None
    _, _, html = open_site(link.group(1).replace("&amp;", "&"))
    assert html.count("<td>report</td>") == 10
    assert 'class="next"' not in html


def test_every_answer_carries_the_security_headers(open_site: Fetch) -> None:
    for method, path in (("GET", "/"), ("GET", "/jobs"), ("GET", "/events"),
                         ("GET", "/container?host=x&name=y"), ("GET", "/healthz"),
                         ("GET", "/metrics"), ("GET", "/static/status.css"),
                         ("GET", "/nothing-here"), ("POST", "/"), ("DELETE", "/events"),
                         ("HEAD", "/")):
        status, headers, _ = open_site(path, method=method)
        assert headers["Content-Security-Policy"] == auth.CSP, (method, path)
        assert headers["X-Content-Type-Options"] == "nosniff", (method, path)
        assert headers["Cache-Control"] == "no-store", (method, path)
        assert status != 500, (method, path)


def snapshot(url: str) -> dict[str, list[dict[str, Any]]]:
    tables = [r["tablename"] for r in sql_rows(
        url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    return {table: sql_rows(url, f"SELECT * FROM {table} ORDER BY 1") for table in tables}


def test_no_request_changes_anything_in_aegis(token_site: Fetch, database_url: str) -> None:
    seed_incident(database_url)
    before = snapshot(database_url)
    form = urlencode({"token": TOKEN, "next": "/"}).encode()
    for path in ("/", "/container?host=test-host&name=queue", "/jobs", "/events",
                 "/metrics", "/healthz", "/login", "/logout"):
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            status, headers, _ = token_site(path, method=method, data=form,
                                            headers=bearer())
            if method == "POST" and path in ("/login", "/logout"):
                assert status == 303  # the cookie of the form, nothing else
            else:
                assert status == 405, (method, path)
                assert headers["Allow"] == "GET, HEAD"
        assert token_site(path, headers=bearer())[0] in (200, 404, 503)  # no beat, no GET
    assert snapshot(database_url) == before


def test_the_acknowledge_form_takes_a_post_with_the_token_its_check_and_this_origin(
        token_site: Fetch, database_url: str) -> None:
    seed_incident(database_url)
    base = token_site.args[0]  # type: ignore[attr-defined]
    here = {"Origin": base}
    page = "/container?" + urlencode({"host": "test-host", "name": SCRIPT})
    check = auth.ack_check(TOKEN, "test-host", SCRIPT)
    html = token_site(page, headers=bearer())[2]
    assert 'action="/ack"' in html
    assert f'name="check" value="{check}"' in html
    assert 'action="/ack"' not in token_site("/container?host=test-host&name=queue",
                                             headers=bearer())[2]  # not escalated
    form = urlencode({"host": "test-host", "name": SCRIPT, "check": check}).encode()
    cookie = {"Cookie": f"{auth.COOKIE}={auth.session_value(TOKEN)}"}
    before = snapshot(database_url)

    assert token_site("/ack", method="POST", data=form, headers=here)[0] == 401
    assert token_site("/ack", method="POST", data=form,
                      headers=bearer(Origin="http://evil.example"))[0] == 403
    assert token_site("/ack", method="POST", data=form,
                      headers={**cookie, "Referer": "http://evil.example/x"})[0] == 403
    assert token_site("/ack", method="POST", data=form, headers=cookie)[0] == 403
    forged = urlencode({"host": "test-host", "name": SCRIPT, "check": "0" * 64}).encode()
    assert token_site("/ack", method="POST", data=forged, headers=bearer(**here))[0] == 403
    other = urlencode({"host": "test-host", "name": "queue", "check": check}).encode()
    assert token_site("/ack", method="POST", data=other, headers=bearer(**here))[0] == 403
    assert token_site("/ack", headers=bearer())[0] == 404  # a GET changes nothing
    assert snapshot(database_url) == before

    status, headers, _ = token_site("/ack", method="POST", data=form,
                                    headers={**cookie, **here})
    assert status == 303
    assert headers["Location"] == page
    row = sql_rows(database_url, "SELECT phase, last_action FROM containers WHERE name = %s",
                   SCRIPT)[0]
    assert row == {"phase": "ok", "last_action": "ack"}
    [event] = sql_rows(database_url, "SELECT host, source, details FROM episodic_memory "
                                     "WHERE event_type = 'container_acknowledged'")
    assert (event["host"], event["source"], event["details"]["by"]) == (
        "test-host", "web", "the status page")
    assert 'action="/ack"' not in token_site(page, headers=bearer())[2]  # done


def test_without_a_token_the_page_has_no_acknowledge_form(
        open_site: Fetch, database_url: str) -> None:
    seed_incident(database_url)
    page = "/container?" + urlencode({"host": "test-host", "name": SCRIPT})
    assert 'action="/ack"' not in open_site(page)[2]
    form = urlencode({"host": "test-host", "name": SCRIPT, "check": "x"}).encode()
    assert open_site("/ack", method="POST", data=form)[0] == 405
    assert sql_rows(database_url, "SELECT phase FROM containers WHERE name = %s",
                    SCRIPT) == [{"phase": "escalated"}]


def test_with_a_token_a_request_without_it_gets_401_and_healthz_stays_open(
        app: api.Aegis, settings: Settings, token_site: Fetch) -> None:
    beat(settings, NOW)
    status, headers, html = token_site("/")
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Bearer realm="aegis"'
    assert 'name="token"' in html
    assert "test-host" not in html
    status, _, text = token_site("/metrics")
    assert (status, text) == (401, "token required: Authorization: Bearer TOKEN\n")
    assert token_site("/events", headers={"Authorization": f"Bearer {TOKEN}0"})[0] == 401
    assert token_site("/healthz")[0] == 200
    assert token_site("/", headers=bearer())[0] == 200
    assert token_site("/metrics", headers=bearer())[0] == 200
    assert token_site("/static/status.css")[0] == 200

    public = dataclasses.replace(settings, http_token=TOKEN, metrics_public=True)
    for base in serve(app, public, NOW):
        assert fetch(base, "/metrics")[0] == 200
        assert fetch(base, "/")[0] == 401


def test_the_token_form_sets_a_session_cookie_that_opens_the_pages(token_site: Fetch) -> None:
    wrong = urlencode({"token": "not-the-token-at-all", "next": "/jobs"}).encode()
    status, headers, html = token_site("/login", method="POST", data=wrong)
    assert status == 401
    assert "Set-Cookie" not in headers
    assert "not the token aegis was given" in html

    form = urlencode({"token": TOKEN, "next": "/jobs?job=backup"}).encode()
    status, headers, _ = token_site("/login", method="POST", data=form)
    assert (status, headers["Location"]) == (303, "/jobs?job=backup")
    cookie = headers["Set-Cookie"].split(";")[0]
    assert TOKEN not in cookie
    assert token_site("/jobs", headers={"Cookie": cookie})[0] == 200

    elsewhere = urlencode({"token": TOKEN, "next": "https://evil.example/"}).encode()
    assert token_site("/login", method="POST", data=elsewhere)[1]["Location"] == "/"
    foreign = token_site("/login", method="POST", data=form,
                         headers={"Origin": "http://evil.example"})
    assert foreign[0] == 403
    assert "Set-Cookie" not in foreign[1]
    status, headers, _ = token_site("/logout", method="POST")
    assert status == 303
    assert "Max-Age=0" in headers["Set-Cookie"]
    assert token_site("/login", method="POST", data=b"x" * 5000)[0] == 413
    long_wrong = urlencode({"token": "x" * 3000}).encode()
    assert token_site("/login", method="POST", data=long_wrong)[0] == 401
    assert token_site("/login", method="POST", data=b"a=1&" * 100)[0] == 400


def test_without_a_token_the_pages_answer_only_by_a_loopback_name(open_site: Fetch) -> None:
    assert open_site("/", headers={"Host": "evil.example"})[0] == 421
    assert open_site("/events", headers={"Host": "evil.example:9465"})[0] == 421
    assert open_site("/", headers={"Host": "localhost:9465"})[0] == 200
    assert open_site("/", headers={"Host": "[::1]:9465"})[0] == 200
    assert open_site("/healthz", headers={"Host": "evil.example"})[0] == 503  # no beat


def test_the_pages_answer_503_while_the_database_is_gone(
        open_site: Fetch, settings: Settings, database_url: str, pg_admin_url: str) -> None:
    beat(settings, NOW)
    assert open_site("/")[0] == 200
    drop_database(pg_admin_url, database_url)
    for path in ("/", "/jobs", "/events", "/container?host=a&name=b"):
        status, _, html = open_site(path)
        assert status == 503
        assert "The database does not answer" in page_text(html, "problem")
        assert '<meta http-equiv="refresh" content="30">' in html
    assert open_site("/healthz")[0] == 200


def raw(base: str, request: bytes) -> bytes:
    """What the server answers to ``request`` written as is on a socket."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


def test_a_request_aegis_cannot_read_gets_one_line_and_the_same_headers(
        app: api.Aegis, settings: Settings) -> None:
    for base in serve(app, settings, NOW):
        for request, status in ((b"BREW / HTTP/1.1\r\nHost: localhost\r\n\r\n", b"501"),
                                (b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 101 + b"\r\n",
                                 b"431"),
                                (b"GET /" + b"x" * 70000 + b" HTTP/1.1\r\n\r\n", b"414")):
            head, _, body = raw(base, request).partition(b"\r\n\r\n")
            assert head.split(b" ")[1] == status, head
            assert f"Content-Security-Policy: {auth.CSP}".encode() in head
            assert b"Cache-Control: no-store" in head
            assert body.startswith(status)
            assert b"<" not in body  # one line of text, not the library's HTML page
        head, _, body = raw(base, b"HEAD / HTTP/1.1\r\nHost: localhost\r\n"
                                  b"Connection: close\r\n\r\n").partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 200")
        assert int(re.search(rb"Content-Length: (\d+)", head).group(1)) > 1000  # type: ignore[union-attr]
        assert body == b""
