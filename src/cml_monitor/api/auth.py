"""Bearer-token authentication for `/api` (`API_TOKENS` = `role:token,…`).

Tokens are compared with `hmac.compare_digest` against every configured token (no early exit,
so timing does not tell how much of a token was right) and are never logged. A `viewer` may
read; changing anything needs an `admin`.
"""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request, status

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class TokenAuthenticator:
    def __init__(self, token_roles: dict[str, str]) -> None:
        self._tokens = [(token.encode(), role) for token, role in token_roles.items()]

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def role_of(self, presented: str) -> str | None:
        candidate = presented.encode()
        found: str | None = None
        for token, role in self._tokens:
            if hmac.compare_digest(candidate, token):
                found = role
        return found

    def __call__(self, request: Request) -> str | None:
        """FastAPI dependency: the caller's role, or 401/403."""
        if not self.enabled:
            return None
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        role = self.role_of(presented.strip()) if scheme.lower() == "bearer" and presented else None
        if role is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="missing or invalid bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if request.method not in READ_METHODS and role != "admin":
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"role {role!r} may not change anything")
        return role
