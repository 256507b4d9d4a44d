"""A loopback OpenID Connect provider for the tests: its own RSA and EC keys, discovery, JWKS,
and an authorization-code endpoint with PKCE that signs the user in without asking."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from typing import Any
from urllib.parse import parse_qs, urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from cml_fleet_sim.serving import ThreadedServer


def _public_jwk(key: Any, kid: str, alg: str) -> dict[str, Any]:
    data = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(key.public_key()))
    return {**data, "kid": kid, "alg": alg, "use": "sig"}


class LoopbackIdp:
    def __init__(self, audience: str = "cml-monitor") -> None:
        self.audience = audience
        self.keys: dict[str, tuple[Any, str]] = {
            "rsa-1": (rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"),
            "ec-1": (ec.generate_private_key(ec.SECP256R1()), "ES256"),
        }
        self.published = ["rsa-1", "ec-1"]
        self.jwks_requests = 0
        self.down = False
        # A broken IdP: when set, served as is instead of the discovery document / the JWKS.
        self.discovery_body: bytes | None = None
        self.jwks_body: bytes | None = None
        self.codes: dict[str, dict[str, Any]] = {}
        self.user_roles = ["cml-monitor-admin"]
        self.server = ThreadedServer(
            Starlette(
                routes=[
                    Route("/.well-known/openid-configuration", self._discovery),
                    Route("/jwks", self._jwks),
                    Route("/authorize", self._authorize),
                    Route("/token", self._token, methods=["POST", "OPTIONS"]),
                ]
            )
        )

    @property
    def issuer(self) -> str:
        return self.server.url

    def start(self) -> LoopbackIdp:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def rotate(self) -> str:
        kid = f"rsa-{len(self.keys) + 1}"
        self.keys[kid] = (rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256")
        self.published.append(kid)
        return kid

    def token(self, *, kid: str = "rsa-1", roles: list[str] | None = None, **claims: Any) -> str:
        now = int(time.time())
        payload = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": "alice",
            "iat": now,
            "exp": now + 300,
            "realm_access": {"roles": roles if roles is not None else ["cml-monitor-admin"]},
            **claims,
        }
        key, alg = self.keys[kid]
        return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})

    async def _discovery(self, request: Request) -> Response:
        if self.down:
            return Response(status_code=503)
        if self.discovery_body is not None:
            return Response(self.discovery_body, media_type="application/json")
        return JSONResponse(
            {
                "issuer": self.issuer,
                "jwks_uri": f"{self.issuer}/jwks",
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "code_challenge_methods_supported": ["S256"],
            }
        )

    async def _jwks(self, request: Request) -> Response:
        self.jwks_requests += 1
        if self.down:
            return Response(status_code=503)
        if self.jwks_body is not None:
            return Response(self.jwks_body, media_type="application/json")
        keys = [_public_jwk(self.keys[kid][0], kid, self.keys[kid][1]) for kid in self.published]
        return JSONResponse({"keys": keys})

    async def _authorize(self, request: Request) -> Response:
        params = request.query_params
        assert params["response_type"] == "code" and params["code_challenge_method"] == "S256"
        code = secrets.token_urlsafe(16)
        self.codes[code] = {"challenge": params["code_challenge"], "redirect_uri": params["redirect_uri"]}
        query = urlencode({"code": code, "state": params["state"]})
        return RedirectResponse(f"{params['redirect_uri']}?{query}", status_code=302)

    async def _token(self, request: Request) -> Response:
        cors = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Headers": "Content-Type"}
        if request.method == "OPTIONS":
            return Response(headers=cors)
        form = {key: values[0] for key, values in parse_qs((await request.body()).decode()).items()}
        grant = self.codes.pop(str(form.get("code")), None)
        verifier = str(form.get("code_verifier", ""))
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if grant is None or digest != grant["challenge"] or form.get("redirect_uri") != grant["redirect_uri"]:
            return JSONResponse({"error": "invalid_grant"}, status_code=400, headers=cors)
        token = self.token(roles=self.user_roles)
        return JSONResponse({"access_token": token, "token_type": "Bearer", "expires_in": 300}, headers=cors)
