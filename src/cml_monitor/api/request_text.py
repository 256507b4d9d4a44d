"""Refuse a request whose path or query parameters carry a control character, with a 422.

Bodies are checked field by field by their models; query parameters and path segments reach
the route as plain strings and, from there, the database, where PostgreSQL refuses a NUL (which
used to come back as a 503, "the database is unavailable"). Checked here once, for every route
present and future, before anything reads them: the 422 names the parameter and the character.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from cml_monitor.domain.text import control_character

_REASON = "contains the control character {}; only tab and line breaks are allowed"


def text_problem(scope: dict[str, Any]) -> dict[str, Any] | None:
    """FastAPI's 422 detail for the first query parameter or path with a control character."""
    found = control_character(scope.get("path", ""))
    if found is not None:
        return {"loc": ["path"], "msg": _REASON.format(found), "type": "value_error"}
    query: bytes = scope.get("query_string", b"")
    if not query or (b"%" not in query and all(byte >= 0x20 for byte in query)):
        return None  # a control character travels percent-encoded (or raw, which is checked too)
    # Decoded as Starlette decodes the query parameters the routes receive.
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        found = control_character(name) or control_character(value)
        if found is not None:
            return {"loc": ["query", name], "msg": _REASON.format(found), "type": "value_error"}
    return None


class RequestTextMiddleware:
    """Pure ASGI: a 422 before routing when the path or a query parameter holds a control character."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        problem = text_problem(scope) if scope["type"] == "http" else None
        if problem is None:
            await self.app(scope, receive, send)
            return
        # The parameter's name may itself hold the character: JSON escapes it.
        body = json.dumps({"detail": [problem]}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 422, "headers": headers})
        await send({"type": "http.response.body", "body": body})
