"""`OidcVerifier`: bearer JWTs from one OpenID Connect issuer, checked as an IdP's tokens must be.

Keys come from the issuer's discovery document and JWKS, cached; an unknown `kid` (the IdP
rotated its keys) triggers one refresh, but never more than one per `refresh_floor` seconds, so
a flood of tokens with made-up key ids cannot hammer the IdP. The algorithm is never taken
from the token alone: it must be an asymmetric one the key allows (no `none`, no HS256 signed
with a public key). `iss`, `aud`, `exp` and `nbf` are checked with a small leeway. When the IdP
is down, keys already cached keep working and tokens signed with unknown keys are refused.

PyJWT does the signature and claim checks (see README, Dependencies).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

logger = logging.getLogger(__name__)

ASYMMETRIC = {
    "RSA": ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
    "EC": ("ES256", "ES384", "ES512"),
    "OKP": ("EdDSA",),
}
EC_CURVES = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}


class InvalidToken(Exception):
    """The token is not one this monitor accepts; the message says why (never the token)."""


@dataclass(frozen=True, slots=True)
class Identity:
    subject: str
    roles: frozenset[str]


def claim_at(claims: dict[str, Any], path: str) -> Any:
    """`realm_access.roles` → claims["realm_access"]["roles"] (None when absent)."""
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def roles_in(value: Any) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list):
        return frozenset(item for item in value if isinstance(item, str))
    return frozenset()


def _algorithms_for(jwk: dict[str, Any]) -> tuple[str, ...]:
    kty = jwk.get("kty", "")
    allowed = ASYMMETRIC.get(kty, ())
    if jwk.get("alg"):
        return (jwk["alg"],) if jwk["alg"] in allowed else ()
    if kty == "EC":
        return (EC_CURVES[jwk["crv"]],) if jwk.get("crv") in EC_CURVES else ()
    return allowed


class OidcVerifier:
    def __init__(
        self,
        issuer: str,
        audience: str,
        *,
        roles_claim: str = "roles",
        http: httpx.AsyncClient | None = None,
        refresh_floor: float = 30.0,
        leeway: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.roles_claim = roles_claim
        self._http = http or httpx.AsyncClient(timeout=5.0)
        self._refresh_floor = refresh_floor
        self._leeway = leeway
        self._monotonic = monotonic
        self._keys: dict[str, tuple[jwt.PyJWK, tuple[str, ...]]] = {}
        self._refreshed_at: float | None = None
        self._lock = asyncio.Lock()
        self.discovery: dict[str, Any] | None = None

    async def close(self) -> None:
        await self._http.aclose()

    async def endpoints(self) -> dict[str, Any] | None:
        """The discovery document (read once if not yet), for the dashboard's sign-in."""
        if self.discovery is None:
            await self._refresh()
        return self.discovery

    async def identity(self, token: str) -> Identity:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("not a JWT") from None
        kid, alg = header.get("kid"), header.get("alg")
        if not isinstance(alg, str) or alg == "none" or alg.startswith("HS"):
            raise InvalidToken(f"algorithm {alg!r} is not accepted")
        key = await self._key(kid if isinstance(kid, str) else None)
        pyjwk, algorithms = key
        if alg not in algorithms:
            raise InvalidToken(f"algorithm {alg} does not match the signing key")
        try:
            claims = jwt.decode(
                token,
                key=pyjwk.key,
                algorithms=[alg],
                audience=self.audience or None,
                issuer=self.issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iss", "sub"], "verify_aud": bool(self.audience)},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("the token is not valid yet") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("the token comes from another issuer") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("the token is for another audience") from None
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"the token was refused: {type(exc).__name__}") from None
        return Identity(str(claims["sub"]), roles_in(claim_at(claims, self.roles_claim)))

    async def _key(self, kid: str | None) -> tuple[jwt.PyJWK, tuple[str, ...]]:
        found = self._pick(kid)
        if found is None:
            await self._refresh()
            found = self._pick(kid)
        if found is None:
            raise InvalidToken("the token was signed with an unknown key")
        return found

    def _pick(self, kid: str | None) -> tuple[jwt.PyJWK, tuple[str, ...]] | None:
        if kid is not None:
            return self._keys.get(kid)
        return next(iter(self._keys.values())) if len(self._keys) == 1 else None

    async def _refresh(self) -> None:
        """Read the discovery document and the JWKS again, at most once per floor."""
        async with self._lock:
            now = self._monotonic()
            if self._refreshed_at is not None and now - self._refreshed_at < self._refresh_floor:
                return
            self._refreshed_at = now
            try:
                keys = await self._fetch_keys()
            except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:  # MalformedProvider too
                logger.error("Could not read the signing keys of %s: %s", self.issuer, exc)
                return
            self._keys = keys
            logger.info("Read %d signing keys from %s", len(keys), self.issuer)

    async def _fetch_keys(self) -> dict[str, tuple[jwt.PyJWK, tuple[str, ...]]]:
        response = await self._http.get(f"{self.issuer}/.well-known/openid-configuration")
        response.raise_for_status()
        discovery = discovery_document(_json(response, "the discovery document"), self.issuer)
        response = await self._http.get(discovery["jwks_uri"])
        response.raise_for_status()
        keys: dict[str, tuple[jwt.PyJWK, tuple[str, ...]]] = {}
        for index, jwk in enumerate(jwk_list(_json(response, "the JWKS"))):
            if jwk.get("use", "sig") != "sig":
                continue
            try:
                algorithms = _algorithms_for(jwk)
                if not algorithms:
                    continue  # symmetric or unknown keys are never used
                keys[str(jwk.get("kid", index))] = (jwt.PyJWK(jwk, algorithms[0]), algorithms)
            except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
                # A key the library cannot read (wrong types, bad numbers) costs that key only.
                logger.warning("Ignored key %s of %s: %s", jwk.get("kid", index), self.issuer, exc)
        self.discovery = discovery
        return keys


class MalformedProvider(ValueError):
    """The IdP's discovery document or JWKS is not the JSON OpenID Connect defines."""


def _json(response: httpx.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError as exc:  # not JSON, or not UTF-8
        raise MalformedProvider(f"{what} is not JSON ({exc})") from None


def discovery_document(body: Any, issuer: str) -> dict[str, Any]:
    """The discovery document, refused unless it is an object naming our issuer and a JWKS URL.

    Whatever the IdP answers (a list, a number, wrong types), the result is a refusal with a
    reason, never an exception that would turn a token check into a 500.
    """
    if not isinstance(body, dict):
        raise MalformedProvider(f"the discovery document is a JSON {type(body).__name__}, not an object")
    named = body.get("issuer")
    if not isinstance(named, str) or named.rstrip("/") != issuer:
        raise MalformedProvider(f"the discovery document names issuer {named!r}")
    jwks_uri = body.get("jwks_uri")
    if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
        raise MalformedProvider(f"the discovery document's jwks_uri is {jwks_uri!r}, not a URL")
    for name in ("authorization_endpoint", "token_endpoint"):  # read by the dashboard's sign-in
        if not isinstance(body.get(name), str | None):
            raise MalformedProvider(f"the discovery document's {name} is {body.get(name)!r}, not a URL")
    return body


def jwk_list(body: Any) -> list[dict[str, Any]]:
    """The JWKS's keys, refused unless `keys` is a list of objects."""
    keys = body.get("keys") if isinstance(body, dict) else None
    if not isinstance(keys, list) or not all(isinstance(k, dict) for k in keys):
        raise MalformedProvider(f"the JWKS is not an object with a list of keys: {str(body)[:80]!r}")
    return keys


def role_for(identity: Identity, admin_roles: Sequence[str], viewer_roles: Sequence[str]) -> str | None:
    if identity.roles & set(admin_roles):
        return "admin"
    if identity.roles & set(viewer_roles):
        return "viewer"
    return None
