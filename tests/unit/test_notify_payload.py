"""Discord payloads stay within the documented limits, ping nobody, and name the sender;
webhook answers are classified as delivered, retry or permanent."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from aegis.core.redact import redact
from aegis.notify.apprise import AppriseTarget, plain_text
from aegis.notify.channels import escalation_targets
from aegis.notify.discord import (
    DESCRIPTION_MAX,
    NO_MENTIONS,
    TITLE_MAX,
    DiscordTarget,
    classify_discord,
    clip,
    discord_payload,
    is_webhook_url,
    utf16_len,
)
from aegis.notify.messages import Message, escape_markdown, render
from aegis.notify.targets import url_secrets
from aegis.storage.events import Importance
from aegis.storage.outbox import Channel, OutboxRow, OutboxStatus
from tests.support.discord import TOKEN, mentions_would_ping, validate_discord_payload

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def alert_row(i: int = 1, title: str = "web escalated", body: str = "unhealthy",
        importance: str = "high", host: str = "node-1", **fields: str) -> OutboxRow:
    return OutboxRow(id=i, channel=Channel.ALERTS, dedup_key=f"k{i}", host=host, title=title,
                     body=body, importance=Importance(importance), fields=fields,
                     status=OutboxStatus.PENDING, attempts=0, next_attempt_at=NOW,
                     created_at=NOW)


def message(title: str = "t", description: str = "d",
            fields: tuple[tuple[str, str], ...] = ()) -> Message:
    return Message(title=title, description=description, importance=Importance.CRITICAL,
                   fields=fields, footer="aegis on node-1 · sent by node-1-42", timestamp=NOW)


def test_clip_cuts_with_an_ellipsis_and_counts_like_discord() -> None:
    assert clip("short", 10) == "short"
    assert clip("x" * 300, TITLE_MAX) == "x" * 255 + "…"
    emoji = "🔥" * 200  # two UTF-16 units each
    assert utf16_len(clip(emoji, 256)) <= 256
    assert clip(emoji, 256).endswith("…")


@pytest.mark.parametrize("size", [0, 1, 100, 5000, 50_000])
def test_any_size_of_input_fits_the_limits(size: int) -> None:
    rng = random.Random(size)
    text = "".join(rng.choice("ab @é🔥\n") for _ in range(size))
    fields = tuple((text[:300] or "n", text or "v") for _ in range(min(60, size + 1)))
    payload = discord_payload(message(title=text, description=text * 2, fields=fields))
    assert validate_discord_payload(payload) == []
    embed = payload["embeds"][0]
    if size >= DESCRIPTION_MAX:
        assert embed["description"].endswith("…")


def test_mentions_are_disabled_and_empty_field_values_are_filled() -> None:
    payload = discord_payload(message(title="@everyone", description="@here <@&1>",
                                      fields=(("container", "@everyone"), ("empty", " "))))
    assert payload["allowed_mentions"] == NO_MENTIONS
    assert not mentions_would_ping(payload)
    assert payload["embeds"][0]["fields"][1]["value"] == "-"
    assert validate_discord_payload(payload) == []
    assert "content" not in payload or not payload["content"]


def test_too_many_fields_end_with_a_note_of_how_many_were_left_out() -> None:
    fields = tuple((f"f{i}", "v") for i in range(40))
    embed = discord_payload(message(fields=fields))["embeds"][0]
    assert len(embed["fields"]) == 25
    assert embed["fields"][-1]["value"] == "16 more field(s) not shown"


def test_a_single_row_names_host_and_sender_and_colours_by_importance() -> None:
    built = render([alert_row(strike="3", container="web")], instance="node-1-4242")
    payload = discord_payload(built)
    embed = payload["embeds"][0]
    assert embed["title"] == "web escalated"
    assert embed["footer"]["text"] == "aegis on node-1 · sent by node-1-4242"
    assert {f["name"]: f["value"] for f in embed["fields"]} == {
        "host": "node-1", "strike": "3", "container": "web"}
    assert embed["color"] == 0xE67E22


def test_a_host_field_naming_the_row_host_is_shown_once() -> None:
    same = replace(alert_row(host="node-1"), fields={"host": "node-1", "container": "web"})
    assert render([same], instance="i").fields == (("host", "node-1"), ("container", "web"))
    other = replace(alert_row(host="node-1"), fields={"host": "node-2"})
    assert render([other], instance="i").fields == (("host", "node-1"), ("host", "node-2"))


def test_a_group_lists_each_alert_once_with_a_count_for_identical_ones() -> None:
    rows = [alert_row(1, "db down", importance="critical"), alert_row(2, "web escalated"),
            alert_row(3, "db down", importance="critical", host="node-2")]
    rows.append(alert_row(4, "db down", importance="critical"))
    built = render(rows, instance="node-1-1")
    assert built.title == "4 alerts from node-1, node-2"
    assert built.importance == "critical"
    lines = built.description.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("- **db down** x2 (critical, node-1,")
    assert "aegis on node-1, node-2" in built.footer


def test_summarised_repeats_are_mentioned() -> None:
    built = render([alert_row(9)], instance="i", repeats={9: (4, NOW)})
    assert ("repeated", "4 more time(s) since 2026-03-01 12:00 UTC, not posted separately") \
        in built.fields


def test_plain_text_for_apprise_carries_fields_and_footer() -> None:
    text = plain_text(render([alert_row(container="web")], instance="node-1-7"))
    assert text.splitlines() == ["unhealthy", "host: node-1", "container: web",
                                 "aegis on node-1 · sent by node-1-7"]


@pytest.mark.parametrize(("text", "escaped"), [
    ("web__api__1", r"web\_\_api\_\_1"),
    ("shop_web.1-a", r"shop\_web.1-a"),
    ("@everyone <@123> <@&9>", r"@everyone \<@123\> \<@&9\>"),
    ("**bold** ~~gone~~ ||spoiler|| `code`", r"\*\*bold\*\* \~\~gone\~\~ \|\|spoiler\|\| \`code\`"),
    ("[click](http://evil.example)", r"\[click\](http://evil.example)"),
    ("# big\n- item\n  3. third\n> quote\nnot 2. a list - nor this",
     "\\# big\n\\- item\n  3\\. third\n\\> quote\nnot 2. a list - nor this"),
    ("a \\ backslash", r"a \\ backslash"),
    ("plain words, 10.0.0.1:80", "plain words, 10.0.0.1:80"),
])
def test_escape_markdown(text: str, escaped: str) -> None:
    assert escape_markdown(text) == escaped


def test_names_in_titles_fields_and_group_lines_are_escaped_and_the_body_kept() -> None:
    name = "web__api__1"
    single = render([alert_row(title=f"{name} escalated", body="`aegis ack web__api__1`",
                         container=name)], instance="node-1-1")
    embed = discord_payload(single)["embeds"][0]
    assert embed["title"] == r"web\_\_api\_\_1 escalated"
    assert {"name": "container", "value": r"web\_\_api\_\_1", "inline": True} \
        in embed["fields"]
    assert embed["description"] == "`aegis ack web__api__1`"  # markdown of aegis's own
    assert embed["footer"]["text"] == "aegis on node-1 · sent by node-1-1"  # not rendered
    assert plain_text(single).splitlines()[2] == r"container: web\_\_api\_\_1"
    group = render([alert_row(1, f"{name} escalated", body="**probe** said <@1>"),
                    alert_row(2, "db down")], instance="node-1-1")
    assert group.description.splitlines()[0].startswith(
        r"- **web\_\_api\_\_1 escalated** (high, node-1, 12:00:00 UTC) — \*\*probe\*\* said "
        r"\<@1\>")


def test_escaping_never_pushes_a_part_over_its_limit() -> None:
    payload = discord_payload(message(title="_" * 300, fields=(("_" * 300, "*" * 1100),)))
    assert validate_discord_payload(payload) == []
    assert payload["embeds"][0]["title"].endswith("…")


# A webhook's answer (status, headers, body) and its outcome (result, reason, retry_after_s).
Answer = tuple[int, dict[str, str], str]
Expected = tuple[str, str, float | None]


@pytest.mark.parametrize(("answer", "expected"), [
    ((204, {}, ""), ("delivered", "", None)),
    ((200, {}, '{"id": "1"}'), ("delivered", "", None)),
    ((429, {}, '{"message": "You are being rate limited.", "retry_after": 1.5, "global": false}'),
     ("retry", "HTTP 429 rate limited, retry after 1.5s", 1.5)),
    ((429, {"Retry-After": "7"}, ""), ("retry", "HTTP 429 rate limited, retry after 7s", 7.0)),
    ((429, {}, '{"retry_after": 3, "global": true}'),
     ("retry", "HTTP 429 global rate limited, retry after 3s", 3.0)),
    ((500, {}, "Internal Server Error"), ("retry", "HTTP 500: Internal Server Error", None)),
    ((502, {}, ""), ("retry", "HTTP 502: no body", None)),
    ((400, {}, '{"message": "Invalid Form Body", "code": 50035}'),
     ("failed", "HTTP 400: Invalid Form Body (code 50035)", None)),
    ((401, {}, '{"message": "Invalid Webhook Token", "code": 50027}'),
     ("failed", "HTTP 401: Invalid Webhook Token (code 50027)", None)),
    ((404, {}, '{"message": "Unknown Webhook", "code": 10015}'),
     ("failed", "HTTP 404: Unknown Webhook (code 10015)", None)),
    # an edit of a message a person deleted: posted afresh by the sender, never failed
    ((404, {}, '{"message": "Unknown Message", "code": 10008}'),
     ("gone", "HTTP 404: Unknown Message (code 10008)", None)),
])
def test_classify_discord_answers(answer: Answer, expected: Expected) -> None:
    outcome = classify_discord(*answer)
    assert (outcome.result, outcome.reason, outcome.retry_after_s) == expected


def test_an_empty_rate_limit_bucket_pauses_the_target() -> None:
    outcome = classify_discord(204, {"X-RateLimit-Remaining": "0",
                                     "X-RateLimit-Reset-After": "1.25"}, "")
    assert outcome.delivered
    assert outcome.pause_s == 1.25
    assert classify_discord(204, {"X-RateLimit-Remaining": "3",
                                  "X-RateLimit-Reset-After": "1.25"}, "").pause_s is None


def test_labels_and_error_redaction_never_show_the_token() -> None:
    url = f"https://discord.com/api/webhooks/112233445566778899/{TOKEN}"
    assert DiscordTarget(url).label == "discord https://discord.com/***"
    assert AppriseTarget(f"tgram://{TOKEN}/12345", 2).label == "apprise #2 tgram://***"
    error = (f"HTTPSConnectionPool(host='discord.com', port=443): Max retries exceeded "
             f"with url: /api/webhooks/112233445566778899/{TOKEN}?wait=true")
    cleaned = redact(error, url_secrets(url))
    assert TOKEN not in cleaned
    assert "112233445566778899" not in cleaned
    assert DiscordTarget(url).id == DiscordTarget(url).id != DiscordTarget(url + "x").id


def test_an_escalation_url_of_a_discord_webhook_posts_as_discord_and_any_other_via_apprise(
        ) -> None:
    targets = escalation_targets((
        "https://discord.com/api/webhooks/123456/t0k3n", "http://127.0.0.1:9/api/webhooks/1/x",
        "https://discord.com/api/v10/webhooks/123456/t0k3n", "ntfy://ntfy.sh/oncall",
        "https://hooks.slack.com/services/T0/B0/x"))
    assert [type(t).__name__ for t in targets] == [
        "DiscordTarget", "DiscordTarget", "DiscordTarget", "AppriseTarget", "AppriseTarget"]
    assert is_webhook_url("https://discord.com/api/webhooks/123456/t0k3n/")
    assert not is_webhook_url("discord://123456/t0k3n")
    assert not is_webhook_url("https://discord.com/api/webhooks/notanid/t0k3n")
