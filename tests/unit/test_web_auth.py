"""Who may read the status page: the token setting and its refusal, loopback addresses,
the bearer header and the session cookie, and where the form may send a person."""

from __future__ import annotations

import dataclasses

import pytest

from aegis.core import parsing
from aegis.core.config import Settings, load_settings
from aegis.core.errors import ConfigError
from aegis.web import auth

TOKEN = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(("addr", "loopback"), [
    ("127.0.0.1:9465", True), ("127.8.9.10:80", True), ("localhost:9465", True),
    ("LOCALHOST:1", True), ("[::1]:9465", True), ("0.0.0.0:9465", False),
    ("[::]:9465", False), (":9465", False), ("192.168.1.10:9465", False),
    ("aegis.internal:9465", False), ("[fe80::1]:9465", False),
])
def test_loopback_addresses(addr: str, loopback: bool) -> None:
    assert parsing.is_loopback_addr(addr) is loopback


@pytest.mark.parametrize("token", [TOKEN, "a" * 16, "dG9rZW4tdG9rZW4tdG9rZW4=",
                                   "abc.def_ghi~jkl+mno/pqr-stu"])
def test_tokens_that_are_taken(token: str) -> None:
    assert parsing.token(f"  {token} ") == token


@pytest.mark.parametrize(("token", "problem"), [
    ("short", "shorter than 16"), ("a" * 15, "shorter than 16"),
    ("0123456789abcdef 0123", "only letters"), ("0123456789abcdef\"0123", "only letters"),
    ("0123456789abcdef;0123", "only letters"), ("ünïcødé-ünïcødé-ü", "only letters"),
])
def test_tokens_that_are_refused(token: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parsing.token(token)


def test_listening_beyond_loopback_without_a_token_is_refused_naming_the_token() -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings({"AEGIS_HTTP_ADDR": "0.0.0.0:9465"})
    assert refused.value.name == "AEGIS_HTTP_TOKEN"
    assert "0.0.0.0:9465" in str(refused.value)
    assert "openssl rand -hex 32" in str(refused.value)


@pytest.mark.parametrize("env", [
    {"AEGIS_HTTP_ADDR": "0.0.0.0:9465", "AEGIS_HTTP_TOKEN": TOKEN},
    {"AEGIS_HTTP_ADDR": "127.0.0.1:9465"},
    {"AEGIS_HTTP_ADDR": "off"},
    {},  # the default: 127.0.0.1:9465
])
def test_loopback_or_a_token_is_enough(env: dict[str, str]) -> None:
    settings = load_settings(env)
    assert settings.http_token == env.get("AEGIS_HTTP_TOKEN")


def test_the_token_is_masked_and_metrics_public_parses() -> None:
    settings = load_settings({"AEGIS_HTTP_TOKEN": TOKEN, "AEGIS_METRICS_PUBLIC": "yes"})
    assert settings.metrics_public is True
    assert TOKEN not in repr(settings)


def settings_with(token: str | None, metrics_public: bool = False) -> Settings:
    return dataclasses.replace(Settings(), http_token=token, metrics_public=metrics_public)


@pytest.mark.parametrize(("token", "public", "path", "needed"), [
    (TOKEN, False, "/", True), (TOKEN, False, "/events", True),
    (TOKEN, False, "/container", True), (TOKEN, False, "/metrics", True),
    (TOKEN, True, "/metrics", False), (TOKEN, True, "/", True),
    (TOKEN, False, "/healthz", False), (TOKEN, False, "/static/status.css", False),
    (TOKEN, False, "/login", False), (TOKEN, False, "/nothing-here", True),
    (None, False, "/", False), (None, False, "/metrics", False),
])
def test_which_paths_need_the_token(token: str | None, public: bool, path: str,
                                    needed: bool) -> None:
    assert auth.needs_token(settings_with(token, public), path) is needed


@pytest.mark.parametrize(("headers", "allowed"), [
    ({"authorization": f"Bearer {TOKEN}"}, True),
    ({"authorization": f"bearer  {TOKEN} "}, True),
    ({"authorization": f"Bearer {TOKEN}x"}, False),
    ({"authorization": f"Basic {TOKEN}"}, False),
    ({"authorization": TOKEN}, False),
    ({"authorization": "Bearer ünïcødé"}, False),
    ({"cookie": f"{auth.COOKIE}={auth.session_value(TOKEN)}"}, True),
    ({"cookie": f"other=1; {auth.COOKIE}={auth.session_value(TOKEN)}"}, True),
    ({"cookie": f"{auth.COOKIE}={TOKEN}"}, False),  # the cookie is not the token
    ({"cookie": f"{auth.COOKIE}={auth.session_value('another-token-another')}"}, False),
    ({"cookie": 'a="unbalanced'}, False),
    ({}, False),
])
def test_the_token_is_carried_by_a_bearer_header_or_the_session_cookie(
        headers: dict[str, str], allowed: bool) -> None:
    assert auth.authorized(TOKEN, headers) is allowed


def test_the_session_cookie_is_http_only_same_site_and_changes_with_the_token() -> None:
    cookie = auth.session_cookie(TOKEN)
    assert auth.session_value(TOKEN) in cookie
    assert TOKEN not in cookie
    assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= {part.strip() for part in
                                                         cookie.split(";")}
    assert auth.session_value(TOKEN) != auth.session_value(TOKEN[::-1])
    assert "Max-Age=0" in auth.cleared_cookie()


@pytest.mark.parametrize(("target", "kept"), [
    ("/", "/"), ("/events?importance=high", "/events?importance=high"),
    ("/container?host=a&name=b", "/container?host=a&name=b"),
    ("https://evil.example/", "/"), ("//evil.example/x", "/"), ("/\\evil.example", "/"),
    ("javascript:alert(1)", "/"), ("", "/"), ("events", "/"),
])
def test_the_form_sends_a_person_only_to_a_page_of_this_server(target: str, kept: str) -> None:
    assert auth.local_target(target) == kept


@pytest.mark.parametrize(("headers", "same"), [
    ({"host": "127.0.0.1:9465", "origin": "http://127.0.0.1:9465"}, True),
    ({"host": "aegis.lan:9465", "origin": "http://AEGIS.lan:9465"}, True),
    ({"host": "127.0.0.1:9465"}, True),  # curl sends no Origin
    ({"host": "127.0.0.1:9465", "origin": "http://evil.example"}, False),
    ({"host": "127.0.0.1:9465", "origin": "null"}, False),
])
def test_a_form_post_must_come_from_this_server(headers: dict[str, str], same: bool) -> None:
    assert auth.same_origin(headers) is same


def test_the_security_headers() -> None:
    headers = dict(auth.SECURITY_HEADERS)
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-store"
    policy = dict(part.strip().split(" ", 1) for part in auth.CSP.split(";"))
    assert policy["default-src"] == "'none'"
    assert "script-src" not in policy  # default-src 'none': no script at all
    assert "'unsafe-inline'" not in auth.CSP
    assert policy["frame-ancestors"] == "'none'"


def test_the_acknowledge_forms_check_is_the_tokens_and_the_containers_own() -> None:
    check = auth.ack_check("t" * 32, "web-01", "db")
    assert auth.ack_check_matches("t" * 32, "web-01", "db", check)
    assert not auth.ack_check_matches("u" * 32, "web-01", "db", check)  # another token
    assert not auth.ack_check_matches("t" * 32, "web-02", "db", check)  # another host
    assert not auth.ack_check_matches("t" * 32, "web-01", "dbx", check)  # another container
    assert not auth.ack_check_matches("t" * 32, "web-01\0db", "", check)
    assert "t" * 32 not in check


def test_a_post_that_changes_something_comes_from_this_server() -> None:
    host = {"host": "status.example:9465"}
    assert auth.posted_here({**host, "origin": "https://status.example:9465"})
    assert auth.posted_here({**host, "referer": "https://status.example:9465/container?x"})
    assert not auth.posted_here({**host, "origin": "https://evil.example"})
    assert not auth.posted_here({**host, "origin": "null"})
    assert not auth.posted_here({**host, "referer": "https://evil.example/status.example:9465"})
    # a browser's post with the cookie names where it came from; a script's need not
    assert not auth.posted_here({**host, "cookie": "aegis_session=x"})
    assert auth.posted_here({**host, "authorization": "Bearer x"})
