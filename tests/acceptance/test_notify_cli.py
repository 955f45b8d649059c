"""``aegis notify test`` and ``aegis outbox`` as a subprocess, against a local server that
behaves like Discord; then every output line and database row is searched for the token."""

from __future__ import annotations

import json
import subprocess

from tests.support.cli import run_cli
from tests.support.discord import TOKEN, FakeDiscord
from tests.support.rows import sql_rows


def every_row_as_text(url: str) -> str:
    tables = [r["table_name"] for r in sql_rows(
        url, "SELECT table_name FROM information_schema.tables "
             "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")]
    return "\n".join(str(row) for table in tables
                     for row in sql_rows(url, f'SELECT t::text AS row FROM "{table}" t'))


def output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def test_notify_test_delivers_and_reports_each_destination(aegis_env: dict[str, str],
                                                           fake: FakeDiscord) -> None:
    env = {**aegis_env, "DISCORD_WEBHOOK_URL": fake.webhook_url(),
           "AEGIS_NOTIFY_URLS": fake.json_url("alerts")}
    result = run_cli("notify", "test", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (f"delivered to alerts: discord http://127.0.0.1:{fake.port}"
                                     "/***, apprise #1 json://***")
    assert [p["embeds"][0]["title"] for p in fake.received] == ["aegis test message"]
    assert fake.json_received[0]["title"] == "aegis test message"
    footer = fake.received[0]["embeds"][0]["footer"]["text"]
    assert footer.startswith("aegis on test-host · sent by test-host-")


def test_notify_test_reports_the_exact_reason_and_exit_1(aegis_env: dict[str, str],
                                                         fake: FakeDiscord) -> None:
    env = {**aegis_env, "DISCORD_JOURNAL_WEBHOOK_URL": fake.webhook_url("not-the-token-4242")}
    result = run_cli("notify", "test", "--channel", "journal", env=env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"aegis: not delivered to journal: discord http://127.0.0.1:{fake.port}/***: "
        "HTTP 401: Invalid Webhook Token (code 50027)")
    listed = run_cli("outbox", "--json", env=env)
    assert listed.returncode == 0
    rows = json.loads(listed.stdout)
    assert [(r["channel"], r["status"], r["title"]) for r in rows] == [
        ("journal", "failed", "aegis test message")]
    table = run_cli("outbox", env=env)
    assert table.stdout.splitlines()[0].split()[:3] == ["ID", "CHANNEL", "STATUS"]


def test_notify_test_without_a_channel_says_what_to_set(aegis_env: dict[str, str]) -> None:
    result = run_cli("notify", "test", env=aegis_env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "aegis: not delivered to alerts: no alerts channel is configured: "
        "set DISCORD_WEBHOOK_URL or AEGIS_NOTIFY_URLS")


def test_notify_test_rejects_an_unknown_channel(aegis_env: dict[str, str]) -> None:
    result = run_cli("notify", "test", "--channel", "pager", env=aegis_env)
    assert result.returncode == 2
    assert "pager" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_no_webhook_token_in_any_output_or_database_row(aegis_env: dict[str, str],
                                                        database_url: str,
                                                        fake: FakeDiscord) -> None:
    secret_json = f"json://aegis:{TOKEN}@127.0.0.1:9/json/unreachable"
    env = {**aegis_env, "AEGIS_LOG_LEVEL": "debug",
           "DISCORD_WEBHOOK_URL": fake.webhook_url(),
           "AEGIS_NOTIFY_URLS": secret_json,
           "DISCORD_JOURNAL_WEBHOOK_URL": f"http://127.0.0.1:9/api/webhooks/1/{TOKEN}"}
    fake.script("500")
    results = [run_cli("notify", "test", env=env),
               run_cli("notify", "test", "--channel", "journal", env=env),
               run_cli("run", "--once", env=env),
               run_cli("outbox", "--all", "--json", env=env),
               run_cli("outbox", "--all", env=env),
               run_cli("events", "--json", env=env)]
    assert results[0].returncode == 1  # the 500 and the unreachable Apprise URL
    assert results[1].returncode == 1
    assert "connection failed" in results[1].stderr
    text = "\n".join(output(r) for r in results) + every_row_as_text(database_url)
    assert "outbox" in text  # the search did see the rows
    assert TOKEN not in text
    assert TOKEN[:16] not in text
