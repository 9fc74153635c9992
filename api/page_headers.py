"""The chat page's Content-Security-Policy, sent as a header with every HTML page the app serves.

A second line behind the page's escaping: were a document's `<img src=…>` ever to become markup, the
browser would still fetch images, fonts, frames and connections only from the app itself. Gradio builds
its components from templates at run time (`new Function`), so scripts keep 'unsafe-inline' and
'unsafe-eval'; what a document could use to reach another host is closed. FastAPI's own API pages (`/docs`,
`/redoc`) load Swagger UI and ReDoc from a CDN and are left as they are.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; media-src 'self' data: blob:; connect-src 'self'; "
    "frame-src 'none'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'self'"
)
UNGUARDED_PAGES = ("/docs", "/redoc")


class PagePolicy:
    """ASGI middleware: HTML responses (other than the API's docs pages) get the policy and `nosniff`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(UNGUARDED_PAGES):
            await self.app(scope, receive, send)
            return

        async def send_with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                content_type = next((value for name, value in headers if name.lower() == b"content-type"), b"")
                names = {name.lower() for name, _ in headers}
                if content_type.startswith(b"text/html") and b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", CONTENT_SECURITY_POLICY.encode()))
                    if b"x-content-type-options" not in names:
                        headers.append((b"x-content-type-options", b"nosniff"))
                    message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_policy)
