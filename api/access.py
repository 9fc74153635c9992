"""Who may reach the app at all, checked for every path it serves (the API, the chat page and every route the
page's framework adds) before anything else runs.

Two ASGI layers, outermost first:
- `OriginCheck`: the `Host` a request names must be one the app is served as, and a browser's `Origin` must be
  the page's own or one configured. This stops DNS rebinding (a hostile name resolved to 127.0.0.1 reaches a
  loopback-only app with `Host: evil.example`) and cross-site form posts (to `/v1/ingest`, or the sign-in).
- `Credentials` (inside Starlette's SessionMiddleware, which decodes the signed session cookie): with an API key
  configured, a request needs `Authorization: Bearer <key>` or, outside `/v1/*`, a signed-in session. Only the
  probes and the sign-in page stay open. A browser asking for a page is sent to the sign-in page; anything
  else gets 401 in the API's error shape.

A pure ASGI middleware rather than FastAPI dependencies: the chat page is a mounted app whose routes no
dependency of ours reaches, and the key is checked before a body is read.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from api.guard import ASGIApp, Receive, Scope, Send, send_error

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::"})
PROBES = frozenset({"/healthz", "/readyz"})
OPEN_PATHS = PROBES | {"/login", "/logout"}
SIGN_IN_PATH = "/login"
SESSION_USER = "user"  # the session cookie's one field: who signed in
KEY_USER = "(key)"  # the user of a sign-in with the API key itself (no user name can contain parentheses)


@dataclass(frozen=True)
class OriginPolicy:
    """Host names the app may be reached by, and origins besides a page's own that may call it."""

    hosts: frozenset[str]
    origins: frozenset[str]
    anything: bool = False  # `*` configured: no check

    @classmethod
    def build(cls, bind_host: str, allowed_origins: Iterable[str]) -> OriginPolicy:
        configured = list(allowed_origins)
        origins = frozenset(origin for origin in configured if origin != "*")
        hosts = set(LOOPBACK_NAMES)
        if bind_host.strip().lower() not in WILDCARD_BINDS:
            hosts.add(_hostname(bind_host))
        hosts.update(_hostname(urlsplit(origin).netloc) for origin in origins)
        return cls(hosts=frozenset(hosts), origins=origins, anything="*" in configured)

    def refusal(self, host: str | None, origin: str | None) -> str | None:
        """Why a request with these headers is refused, or None when it may pass."""
        if self.anything:
            return None
        if host is not None and _hostname(host) not in self.hosts:
            return (
                f"this app is not served as {host!r}; add the address clients use to RAG_ALLOWED_ORIGINS "
                "(e.g. https://qa.example.org)"
            )
        if origin is None:
            return None
        origin = origin.strip().lower()
        if origin in self.origins or (host is not None and urlsplit(origin).netloc == host.strip().lower()):
            return None
        return f"requests from pages at {origin!r} are not accepted; add that origin to RAG_ALLOWED_ORIGINS"


def _hostname(netloc: str) -> str:
    """`Example.org:8000` → `example.org`; `[::1]:8000` → `::1`."""
    try:
        return (urlsplit("//" + netloc.strip()).hostname or "").lower()
    except ValueError:  # a malformed port or bracket: no name we serve
        return ""


class OriginCheck:
    def __init__(self, app: ASGIApp, *, policy: OriginPolicy) -> None:
        self.app, self.policy = app, policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # probes come from load balancers and orchestrators, by whatever address they use; they reveal nothing
        if scope["type"] in ("http", "websocket") and _route(scope) not in PROBES:
            headers = _headers(scope)
            refusal = self.policy.refusal(headers.get("host"), headers.get("origin"))
            if refusal is not None:
                await _refuse(scope, send, 403, "forbidden_origin", refusal)
                return
        await self.app(scope, receive, send)


class Credentials:
    """Bearer key or signed-in session, when a key is configured (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, api_key: bytes | None, users: Iterable[str] = ()) -> None:
        self.app, self.api_key = app, api_key
        self.users = frozenset(users) | {KEY_USER}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.api_key is None or scope["type"] not in ("http", "websocket") or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "http" and _wants_page(scope):
            await _redirect(send, f"{SIGN_IN_PATH}?next={quote(_target(scope), safe='')}")
            return
        where = "the API key (Authorization: Bearer <key>)"
        if not _route(scope).startswith("/v1"):
            where += f" or sign in at {SIGN_IN_PATH}"
        await _refuse(scope, send, 401, "unauthorized", f"missing or wrong credentials; send {where}")

    def _allowed(self, scope: Scope) -> bool:
        route = _route(scope)
        if route in OPEN_PATHS or self._has_key(scope):
            return True
        # the API takes the key only: a session cookie rides along on any request a browser makes
        return not route.startswith("/v1") and (scope.get("session") or {}).get(SESSION_USER) in self.users

    def _has_key(self, scope: Scope) -> bool:
        assert self.api_key is not None
        header = dict(scope.get("headers") or []).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        # bytes, not str: compare_digest refuses non-ASCII strings, and a header is whatever the client sent
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.api_key)


def session_secret(api_key: bytes) -> str:
    """The key that signs session cookies, derived from the API key: a new API key ends every session."""
    return hmac.new(api_key, b"policy-news-rag chat session", "sha256").hexdigest()


def _route(scope: Scope) -> str:
    path = str(scope.get("path") or "/")
    return path.rstrip("/") or "/"


def _headers(scope: Scope) -> dict[str, str]:
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers") or []}


def _wants_page(scope: Scope) -> bool:
    accept = _headers(scope).get("accept", "")
    return scope.get("method") in ("GET", "HEAD") and "text/html" in accept


def _target(scope: Scope) -> str:
    query = scope.get("query_string", b"").decode("latin-1")
    return str(scope.get("path") or "/") + (f"?{query}" if query else "")


async def _redirect(send: Send, location: str) -> None:
    headers = [(b"location", location.encode("latin-1")), (b"content-length", b"0"), (b"cache-control", b"no-store")]
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


async def _refuse(scope: Scope, send: Send, status: int, code: str, message: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": code})
        return
    extra = [(b"www-authenticate", b"Bearer")] if status == 401 else []
    await send_error(send, status, code, message, extra)
