import pytest

from aegis.core.redact import MASK, redact, redact_url, redact_urls

TOKEN = "Zq3xV9-abc_DEF.ghi"


@pytest.mark.parametrize(("text", "expected"), [
    ("connect to postgresql://aegis:s3cret@db:5432/aegis failed",
     "connect to postgresql://aegis:***@db:5432/aegis failed"),
    ("postgresql://aegis@db/aegis", "postgresql://aegis@db/aegis"),  # no password: as is
    ("host=db user=aegis password=s3cret dbname=aegis",
     "host=db user=aegis password=*** dbname=aegis"),
    ("password = 'it''s secret' host=db", "password = *** host=db"),
    (r"password='it\'s secret' host=db", "password=*** host=db"),
    ("PASSWORD=s3cret", "PASSWORD=***"),
    (f"POST https://discord.com/api/webhooks/123456/{TOKEN} -> 404",
     "POST https://discord.com/api/webhooks/123456/*** -> 404"),
    (f"https://discordapp.com/api/v10/webhooks/1/{TOKEN}?wait=true",
     "https://discordapp.com/api/v10/webhooks/1/***?wait=true"),
    ("mailto://user:pw@example.com and tgram://bot",
     "mailto://user:***@example.com and tgram://bot"),
    ("nothing secret here", "nothing secret here"),
])
def test_credential_shaped_parts_are_masked(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_known_secret_values_are_masked_wherever_they_appear() -> None:
    assert redact("token abcd1234 leaked twice: abcd1234", ["abcd1234"]) == (
        f"token {MASK} leaked twice: {MASK}")
    # an http(s) secret URL keeps its host, so the operator still sees which endpoint
    hook = f"https://discord.com/api/webhooks/1/{TOKEN}"
    assert redact(f"POST {hook} -> 500", [hook]) == "POST https://discord.com/*** -> 500"
    # other schemes keep only the scheme: Apprise URLs carry tokens where a host would be
    url = "tgram://123456:AAH-token/987"
    assert redact(f"sending to {url} failed", [url]) == "sending to tgram://*** failed"


def test_short_or_empty_secrets_are_ignored_so_text_stays_readable() -> None:
    assert redact("a b c", ["", "a", "abc"]) == "a b c"


def test_the_longest_secret_is_masked_first() -> None:
    out = redact("pw=hunter2hunter2", ["hunter2", "hunter2hunter2"])
    assert "hunter2" not in out


@pytest.mark.parametrize(("url", "expected"), [
    (f"https://discord.com/api/webhooks/1/{TOKEN}", "https://discord.com/***"),
    ("https://user:pw@hc-ping.com/uuid", "https://hc-ping.com/***"),
    ("tgram://bottoken/chat", "tgram://***"),
    ("discord://4711/webhooktoken", "discord://***"),
    ("postgresql://aegis:pw@db:5432/aegis", "postgresql://db:5432/***"),
    ("not a url", MASK),
])
def test_redact_url_keeps_scheme_and_host_only(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_urls_in_an_http_client_error() -> None:
    text = (f"HTTPSConnectionPool(host='discord.com'): url: /api/webhooks/1/{TOKEN} "
            f"https://discord.com/api/webhooks/1/{TOKEN} timed out")
    out = redact_urls(text)
    assert "https://discord.com/*** timed out" in out
    assert out.count(TOKEN) == 1  # only the bare path; pair with redact() for that
    assert TOKEN not in redact(out, [f"https://discord.com/api/webhooks/1/{TOKEN}", TOKEN])


def test_log_lines_are_json_off_a_terminal_and_carry_no_secret() -> None:
    import io
    import json

    import structlog

    from aegis.core.config import load_settings
    from aegis.core.logs import configure_logging, get_logger

    hook = f"https://discord.com/api/webhooks/1/{TOKEN}"
    settings = load_settings({"DISCORD_WEBHOOK_URL": hook, "POSTGRES_PASSWORD": "pw-s3cret",
                              "AEGIS_LOG_LEVEL": "info"})
    stream = io.StringIO()
    configure_logging(settings, stream)
    try:
        log = get_logger()
        log.debug("below_the_level")
        log.warning("notify_failed", url=hook, error=ValueError("password=pw-s3cret rejected"),
                    attempts=2)
    finally:
        structlog.reset_defaults()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["event"] == "notify_failed"
    assert record["level"] == "warning"
    assert record["attempts"] == 2
    assert record["url"] == "https://discord.com/***"
    assert TOKEN not in lines[0]
    assert "pw-s3cret" not in lines[0]
