"""Security headers for every response; the strict Content-Security-Policy for all but the
interactive API docs (Swagger UI's page starts itself with an inline script)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
DOCS_PATHS = ("/docs",)


_EVERYWHERE = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin")]
_STRICT = [*_EVERYWHERE, (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
           (b"x-frame-options", b"DENY")]


class SecurityHeaders:
    """Appends prebuilt header bytes: this runs on every API response, the send path too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = _EVERYWHERE if scope["path"].startswith(DOCS_PATHS) else _STRICT

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)
