"""One living message per incident, with real ``aegis run`` daemons supervising a private
engine and posting to the local Discord-like server: the message is created at the
restart (AEGIS_ALERT_FROM=restart) and edited in place through struck -> restarted ->
escalated -> recovered, though the daemon is killed with -9 between the post and the
first edit and again between two edits; a message deleted by a person (404 on edit) is
posted afresh, once, and edited from then on."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.support.containers import NEVER_HEALTHY, OK_FILE
from tests.support.daemons import Spawner, daemon_running, kill_9, supervising_env
from tests.support.discord import FakeDiscord
from tests.support.engines import PrivateEngine
from tests.support.rows import sql_rows as rows
from tests.support.waiting import wait_for

pytestmark = pytest.mark.docker

STRIKE_INTERVAL_S = 6  # time enough to kill a daemon between the restart and strike 3


def living_env(aegis_env: dict[str, str], engine: PrivateEngine, fake: FakeDiscord
           ) -> dict[str, str]:
    return supervising_env(aegis_env, DOCKER_HOST=engine.url,
                           AEGIS_STRIKE_INTERVAL=f"{STRIKE_INTERVAL_S}s",
                           AEGIS_STABLE_PERIOD="3s", AEGIS_ALERT_FROM="restart",
                           DISCORD_WEBHOOK_URL=fake.webhook_url())


def titles_of(fake: FakeDiscord) -> list[str]:
    """The title of every post, then of every edit, the server accepted."""
    return [body["embeds"][0]["title"] for body in fake.received] + [
        body["embeds"][0]["title"] for _, body in fake.edits]


def heal(engine: PrivateEngine, name: str) -> None:
    client = engine.client()
    try:
        client.containers.get(name).exec_run(["touch", "/ok"])
    finally:
        client.close()


def recorded(url: str, state: str) -> Callable[[], bool]:
    """Whether the sender recorded the delivery of the message's step ``state``: a daemon
    killed between posting and recording leaves a 60 s lease on the row."""
    return lambda: bool(rows(url, "SELECT 1 FROM outbox WHERE state = %s AND status = "
                                  "'delivered'", state))


def edited_to(fake: FakeDiscord, state: str) -> bool:
    return any(body["embeds"][0]["title"] == f"sick {state} on test-host"
               for _, body in fake.edits)


def test_one_message_lives_through_the_incident_and_two_kills(
        engine: PrivateEngine, aegis_env: dict[str, str], spawn: Spawner,
        fake: FakeDiscord) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    engine.run(NEVER_HEALTHY, name="sick", healthcheck=OK_FILE, labels={"aegis.enable": "true"})
    env = living_env(aegis_env, engine, fake)
    first = spawn(env)
    wait_for(daemon_running(url), what="the first daemon")
    wait_for(lambda: fake.received, timeout_s=60, what="the message, at the restart")
    wait_for(recorded(url, "restarted"), what="the post recorded")  # else its lease holds
    kill_9(first)  # between the post and the first edit
    assert rows(url, "SELECT phase FROM containers WHERE name = 'sick'") == [
        {"phase": "restarting"}], "strike 3 came before the kill"
    created = fake.received[0]["embeds"][0]
    assert created["title"] == "sick restarted on test-host"
    assert [line.split(" ", 1)[1].split(":")[0] for line in created["description"].splitlines()
            if line[:2].isdigit()] == ["struck", "restarted"]

    second = spawn(env)
    wait_for(lambda: edited_to(fake, "escalated"), timeout_s=60, what="the escalation edit")
    wait_for(recorded(url, "escalated"), what="the edit recorded")
    kill_9(second)  # between two edits
    heal(engine, "sick")
    spawn(env)
    wait_for(lambda: edited_to(fake, "recovered"), timeout_s=60, what="the recovery edit")

    assert len(fake.received) == 1, "a second message was posted"
    message_id = next(iter(fake.messages))
    assert {mid for mid, _ in fake.edits} == {message_id}
    assert titles_of(fake) == [
        "sick restarted on test-host", "sick escalated on test-host",
        "sick recovered on test-host"]
    final = fake.messages[message_id]["embeds"][0]
    lines = final["description"].splitlines()
    assert lines[0].startswith("**Resolved** after ")
    assert lines[0].endswith(" 1 restart.")
    assert [line.split(" ", 1)[1].split(":")[0] for line in lines if line[:2].isdigit()] == [
        "struck", "restarted", "escalated", "recovered"]
    assert final["color"] == 0x2ECC71
    assert {f["name"]: f["value"] for f in final["fields"]}["restarts"] == "1"
    assert rows(url, "SELECT message_id FROM outbox_messages") == [{"message_id": message_id}]
    assert fake.rejected == []


def test_a_deleted_message_is_posted_afresh_once(
        engine: PrivateEngine, aegis_env: dict[str, str], spawn: Spawner,
        fake: FakeDiscord) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    engine.run(NEVER_HEALTHY, name="sick", healthcheck=OK_FILE, labels={"aegis.enable": "true"})
    spawn(living_env(aegis_env, engine, fake))
    wait_for(daemon_running(url), what="the daemon")
    wait_for(lambda: fake.received, timeout_s=60, what="the message, at the restart")
    deleted = next(iter(fake.messages))
    fake.delete_message(deleted)  # a person deletes it in the channel
    wait_for(lambda: len(fake.received) == 2, timeout_s=60,
             what="the escalation, posted afresh")
    heal(engine, "sick")
    wait_for(lambda: edited_to(fake, "recovered"), timeout_s=60, what="the recovery edit")

    assert len(fake.received) == 2
    assert fake.answers.count(404) == 1
    fresh = next(iter(fake.messages))
    assert fresh != deleted
    assert {mid for mid, _ in fake.edits} == {fresh}
    assert fake.received[1]["embeds"][0]["title"] == "sick escalated on test-host"
    assert fake.messages[fresh]["embeds"][0]["title"] == "sick recovered on test-host"
    assert rows(url, "SELECT message_id FROM outbox_messages") == [{"message_id": fresh}]
    assert {r["status"] for r in rows(url, "SELECT status FROM outbox")} == {"delivered"}
