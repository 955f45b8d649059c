"""Removing secrets from text: DSN passwords, webhook tokens, credentials in URLs."""

import re
from collections.abc import Iterable

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")
_WEBHOOK_PATH = re.compile(
    r"(?P<prefix>https?://[^/\s]+/api(?:/v\d+)?/webhooks/\d+/)(?P<token>[A-Za-z0-9_.-]+)"
)
_PASSWORD_KV = re.compile(r"(?P<key>password\s*=\s*)(?P<value>'(?:[^'\\]|\\.|'')*'|\S+)", re.I)
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")

MASK = "***"
_PUBLIC_HOST_SCHEMES = {"http://", "https://", "postgres://", "postgresql://"}


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with known secret values and credential-shaped parts masked."""
    for secret in sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, redact_url(secret) if "://" in secret else MASK)
    text = _WEBHOOK_PATH.sub(lambda m: m.group("prefix") + MASK, text)
    text = _URL_CREDENTIALS.sub(_mask_userinfo, text)
    return _PASSWORD_KV.sub(lambda m: m.group("key") + MASK, text)


def redact_url(url: str) -> str:
    """A URL reduced to its scheme and host: ``https://discord.com/***``."""
    match = re.match(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?:[^/@\s]*@)?(?P<host>[^/?#\s]*)",
                     url)
    if not match:
        return MASK
    if match.group("scheme").lower() not in _PUBLIC_HOST_SCHEMES:
        # Apprise-style URLs (tgram://TOKEN/CHAT, discord://ID/TOKEN) carry secrets as "host"
        return f"{match.group('scheme')}{MASK}"
    return f"{match.group('scheme')}{match.group('host')}/{MASK}"


def redact_urls(text: str) -> str:
    """Every URL in ``text`` reduced to its host part (for error messages from HTTP clients)."""
    return _URL.sub(lambda m: redact_url(m.group(0)), text)


def _mask_userinfo(match: re.Match[str]) -> str:
    user, sep, _password = match.group("userinfo").partition(":")
    return f"{match.group('scheme')}{user}{':' + MASK if sep else ''}@"
