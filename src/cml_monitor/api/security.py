"""Security headers, and what the dashboard needs to know to sign in.

The dashboard is static files with no inline script or style, so its Content-Security-Policy
allows scripts, styles and connections from this origin only (plus the IdP's origin, where the
browser exchanges its authorization code), and no framing at all.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def dashboard_policy(idp_origins: list[str]) -> str:
    extra = " ".join(sorted({o for o in idp_origins if o}))
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self'{' ' + extra if extra else ''}; frame-ancestors 'none'; base-uri 'none'; "
        "object-src 'none'; form-action 'self'"
    )


class SecurityHeadersMiddleware:
    """Adds the headers to every response; the CSP to the dashboard's own pages and files."""

    def __init__(self, app: ASGIApp, *, policy: str) -> None:
        self.app = app
        self.policy = policy.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        dashboard = path == "/" or path.startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                ]
                if dashboard:
                    headers.append((b"content-security-policy", self.policy))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)
