"""Who may read the status page and /metrics, and the headers every answer carries.

With ``AEGIS_HTTP_TOKEN`` set (aegis refuses to listen beyond loopback without one), the
pages and /metrics (unless ``AEGIS_METRICS_PUBLIC=true``) answer only a request that
carries the token: as ``Authorization: Bearer TOKEN``, or as the session cookie the
page's form sets once the token is entered. The cookie holds an HMAC of the token, not the
token: it opens the pages of this token only, and a new token closes every session.
``/healthz`` and the stylesheet are always open. Nothing here reads a clock or the
database.

The one form that changes something, acknowledging an escalated container (``POST
/ack``), exists only with a token, and a post of it is taken only when it carries the
token (the cookie or the header), a check field derived from the token and the container
(``ack_check``: a page of another site cannot know it) and, from a browser, an Origin
or Referer naming this server. The cookie is ``SameSite=Strict`` besides: another site's
page cannot even make the browser send it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from http.cookies import CookieError, SimpleCookie
from urllib.parse import urlsplit

from aegis.core.config import Settings

COOKIE = "aegis_session"
COOKIE_MAX_AGE_S = 30 * 86400
_SESSION_KEY = b"aegis status page session"
_ACK_KEY = b"aegis acknowledge form"
OPEN_PATHS = frozenset({"/healthz", "/login", "/logout", "/static/status.css",
                        "/static/favicon.svg", "/favicon.ico"})
# No script at all; styles only from the page's own stylesheet; forms only to itself;
# never inside a frame. Inline SVG needs none of these.
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = (
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("Cache-Control", "no-store"),
    ("Referrer-Policy", "same-origin"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
)


def needs_token(settings: Settings, path: str) -> bool:
    """Whether ``path`` answers only with the token (there is one to ask for)."""
    if settings.http_token is None or path in OPEN_PATHS:
        return False
    return not (path == "/metrics" and settings.metrics_public)


def session_value(token: str) -> str:
    """The session cookie's value for ``token``."""
    return hmac.new(token.encode(), _SESSION_KEY, hashlib.sha256).hexdigest()


def token_matches(token: str, given: str) -> bool:
    """``given`` is ``token`` (compared in constant time)."""
    return hmac.compare_digest(token.encode(), given.encode("utf-8", "surrogateescape"))


def authorized(token: str, headers: Mapping[str, str]) -> bool:
    """The request carries ``token``: a bearer header or the session cookie (``headers``
    by lower-case name)."""
    scheme, _, given = headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and token_matches(token, given.strip()):
        return True
    cookies: SimpleCookie = SimpleCookie()
    try:
        cookies.load(headers.get("cookie", ""))
    except CookieError:
        return False
    morsel = cookies.get(COOKIE)
    return morsel is not None and hmac.compare_digest(
        session_value(token).encode(), morsel.value.encode("utf-8", "surrogateescape"))


def session_cookie(token: str) -> str:
    """Set-Cookie for a person who entered the token: kept for 30 days, sent to this
    server only, never to a script."""
    return (f"{COOKIE}={session_value(token)}; Path=/; Max-Age={COOKIE_MAX_AGE_S}; "
            "HttpOnly; SameSite=Strict")


def cleared_cookie() -> str:
    return f"{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"


def local_target(target: str) -> str:
    """Where to go after the form: a path of this server, never another site."""
    parts = urlsplit(target)
    if (not target.startswith("/") or target.startswith("//") or "\\" in target
            or parts.scheme or parts.netloc):
        return "/"
    return target


def same_origin(headers: Mapping[str, str]) -> bool:
    """A form post from a page of this server (or from a client that sends no Origin,
    such as curl): a page elsewhere cannot post a token into this one."""
    origin = headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc.lower() == headers.get("host", "").lower()


def ack_check(token: str, host: str, name: str) -> str:
    """The check field of the form that acknowledges ``name`` of ``host``: an HMAC of the
    token, so only a page served to a holder of the token carries it."""
    message = b"\0".join((_ACK_KEY, host.encode("utf-8", "surrogateescape"),
                          name.encode("utf-8", "surrogateescape")))
    return hmac.new(token.encode(), message, hashlib.sha256).hexdigest()


def ack_check_matches(token: str, host: str, name: str, given: str) -> bool:
    return hmac.compare_digest(ack_check(token, host, name).encode(),
                               given.encode("utf-8", "surrogateescape"))


def posted_here(headers: Mapping[str, str]) -> bool:
    """A form that changes something came from a page of this server: its Origin (else
    its Referer) names this server, or the request carries neither and no cookie (a
    script with the bearer header, which no other site's page can send)."""
    source = headers.get("origin") or headers.get("referer")
    if source is None:
        return "cookie" not in headers
    return urlsplit(source).netloc.lower() == headers.get("host", "").lower()
