"""Bearer authentication for `/api`: static `API_TOKENS` and, with `OIDC_ISSUER`, IdP tokens.

Static tokens are compared with `hmac.compare_digest` against every configured token (no early
exit, so timing does not tell how much of a token was right). A token that looks like a JWT
and is no static token is checked by the OIDC verifier. Tokens are never logged. A `viewer`
may read; changing anything needs an `admin`; a valid IdP token that grants neither role is 403.
A 401 carries `WWW-Authenticate: Bearer` (with `error="invalid_token"` when a token was given).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from fastapi import HTTPException, Request, status

from .oidc import InvalidToken, OidcVerifier, role_for

logger = logging.getLogger(__name__)
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Principal:
    role: str
    subject: str  # the IdP's `sub`, or the role of a static token


def _unauthorized(reason: str, *, token_given: bool) -> HTTPException:
    challenge = 'Bearer realm="cml-monitor"'
    if token_given:
        challenge += f', error="invalid_token", error_description="{reason}"'
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=reason, headers={"WWW-Authenticate": challenge})


class Authenticator:
    def __init__(
        self,
        token_roles: dict[str, str],
        oidc: OidcVerifier | None = None,
        *,
        admin_roles: Sequence[str] = (),
        viewer_roles: Sequence[str] = (),
    ) -> None:
        self._tokens = [(token.encode(), role) for token, role in token_roles.items()]
        self._oidc = oidc
        self._admin_roles = tuple(admin_roles)
        self._viewer_roles = tuple(viewer_roles)

    @property
    def enabled(self) -> bool:
        return bool(self._tokens) or self._oidc is not None

    def role_of(self, presented: str) -> str | None:
        candidate = presented.encode()
        found: str | None = None
        for token, role in self._tokens:
            if hmac.compare_digest(candidate, token):
                found = role
        return found

    async def principal(self, presented: str) -> Principal:
        role = self.role_of(presented)
        if role is not None:
            return Principal(role, role)
        if self._oidc is None or presented.count(".") != 2:
            raise _unauthorized("the bearer token is not valid", token_given=True)
        try:
            identity = await self._oidc.identity(presented)
        except InvalidToken as exc:
            logger.info("Refused an OIDC token: %s", exc)
            raise _unauthorized(str(exc), token_given=True) from None
        role = role_for(identity, self._admin_roles, self._viewer_roles)
        if role is None:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, detail=f"the token of {identity.subject!r} grants no role here"
            )
        return Principal(role, identity.subject)

    async def __call__(self, request: Request) -> Principal | None:
        """FastAPI dependency: who is calling, or 401/403."""
        if not self.enabled:
            return None
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        presented = presented.strip()
        if scheme.lower() != "bearer" or not presented:
            raise _unauthorized("a bearer token is required", token_given=False)
        principal = await self.principal(presented)
        if request.method not in READ_METHODS and principal.role != "admin":
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, detail=f"role {principal.role!r} may not change anything"
            )
        request.state.principal = principal
        return principal
