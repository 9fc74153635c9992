"""What the HTTP edge checks before a request reaches a route: body size, method and path (who may ask at all is
api/access.py's job, one layer further out).

Why a pure ASGI middleware rather than FastAPI dependencies:
- a body over the cap is refused (413) before it is buffered or parsed;
- the chat page is mounted at `/`, so without this every unknown `/v1/...` path, wrong method or trailing
  slash fell through to Gradio and got its `{"detail": "Not Found"}` instead of the API's error shape.

`UnexpectedErrors` is the outermost layer: a bug becomes a logged 500 in the API's error shape, once.
(Starlette's own handler for `Exception` answers but then re-raises, so the server logged each one twice.)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger("app")

# the API's routes and the methods each accepts; HEAD on the probes lets load balancers use them
ROUTES: dict[str, frozenset[str]] = {
    "/v1/answer": frozenset({"POST"}),
    "/v1/search": frozenset({"POST"}),
    "/v1/ingest": frozenset({"POST"}),
    "/v1/chat/completions": frozenset({"POST"}),
    "/v1/models": frozenset({"GET"}),
    "/healthz": frozenset({"GET", "HEAD"}),
    "/readyz": frozenset({"GET", "HEAD"}),
    "/metrics": frozenset({"GET"}),
    # open to anyone: the cap on its body matters most here
    "/login": frozenset({"GET", "POST"}),
    "/logout": frozenset({"GET", "POST"}),
}
UPLOAD_ROUTE = "/v1/ingest"


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


class ApiGuard:
    """ASGI middleware for `/v1/*`, the probes and `/metrics`; every other path passes through untouched."""

    def __init__(self, app: ASGIApp, *, max_request_bytes: int, max_upload_bytes: int) -> None:
        self.app = app
        self.max_request_bytes, self.max_upload_bytes = max_request_bytes, max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        route = path.rstrip("/") if path != "/" else path
        if route not in ROUTES and not route.lower().startswith("/v1"):
            await self.app(scope, receive, send)
            return
        if route not in ROUTES:
            await send_error(
                send,
                404,
                "not_found",
                f"no endpoint {path}; the API is POST /v1/answer, /v1/search, /v1/ingest, /v1/chat/completions "
                "and GET /v1/models (see /docs)",
            )
            return
        allowed = ROUTES[route]
        if scope["method"] not in allowed:
            methods = ", ".join(sorted(allowed))
            await send_error(
                send, 405, "method_not_allowed", f"{route} accepts {methods}", [(b"allow", methods.encode())]
            )
            return
        limit = self.max_upload_bytes if route == UPLOAD_ROUTE else self.max_request_bytes
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await send_error(send, 413, "payload_too_large", _too_large(route, limit))
            return
        scope = dict(scope, path=route, raw_path=route.encode())  # "/v1/answer/" is "/v1/answer"
        await self.app(scope, _capped(receive, limit, route), send)


class UnexpectedErrors:
    """Turn an exception no handler took into a logged 500 JSON error, unless the response had already begun
    (then the server must close the connection: the error is re-raised for it, and logged by it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except Exception:
            if started:
                raise
            logger.exception("unexpected error in %s %s", scope.get("method"), scope.get("path"))
            await send_error(send, 500, "internal_error", "unexpected server error; see the server log")


def _content_length(scope: Scope) -> int | None:
    value = dict(scope.get("headers") or []).get(b"content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _too_large(route: str, limit: int) -> str:
    setting = "RAG_API_MAX_UPLOAD_MB" if route == UPLOAD_ROUTE else "RAG_API_MAX_REQUEST_MB"
    return f"request body is larger than {limit // (1 << 20)} MB; send less or raise {setting}"


class BodyTooLarge(Exception):
    """A body sent without Content-Length outgrew the cap while it arrived; the app answers 413."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _capped(receive: Receive, limit: int, route: str) -> Receive:
    """A body sent without Content-Length (chunked) is counted as it arrives and refused past the cap."""
    received = 0

    async def wrapped() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge(_too_large(route, limit))
        return message

    return wrapped


async def send_error(
    send: Send, status: int, code: str, message: str, extra_headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """A whole JSON error response, sent from a middleware (before any route ran)."""
    body = json.dumps(error_body(code, message), ensure_ascii=False).encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra_headers or [])})
    await send({"type": "http.response.body", "body": body})
