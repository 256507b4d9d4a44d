"""OIDC bearer tokens against a loopback IdP the test starts (its own RSA and EC keys)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest

from .helpers import VALID
from .idp import LoopbackIdp


@pytest.fixture
def idp() -> Iterator[LoopbackIdp]:
    provider = LoopbackIdp().start()
    yield provider
    provider.stop()


async def oidc_api(api_factory: Any, idp: LoopbackIdp, **overrides: Any) -> Any:
    overrides.setdefault("oidc_jwks_refresh_floor", 0)
    return await api_factory(
        oidc_issuer=idp.issuer,
        oidc_audience=idp.audience,
        oidc_roles_claim="realm_access.roles",
        api_tokens="admin:static-admin-token",
        **overrides,
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_roles_from_the_idp_and_static_tokens_side_by_side(api_factory: Any, idp: LoopbackIdp) -> None:
    api = await oidc_api(api_factory, idp)
    client = api.client
    created = await client.post("/api/workers", json=VALID, headers=bearer(idp.token()))
    assert created.status_code == 201
    ec_admin = idp.token(kid="ec-1")
    assert (await client.get("/api/workers", headers=bearer(ec_admin))).status_code == 200
    viewer = idp.token(roles=["cml-monitor-viewer"])
    assert (await client.get("/api/workers", headers=bearer(viewer))).status_code == 200
    other = {**VALID, "aws_instance_id": "i-0123456789abcdef1"}
    assert (await client.post("/api/workers", json=other, headers=bearer(viewer))).status_code == 403
    nobody = idp.token(roles=["someone-else"])
    assert (await client.get("/api/workers", headers=bearer(nobody))).status_code == 403
    static = await client.post("/api/workers", json=other, headers=bearer("static-admin-token"))
    assert static.status_code == 201


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["realm_access"] = {"roles": ["cml-monitor-admin", "root"]}
    return f"{header}.{_b64(claims)}.{signature}"


def _alg_none(idp: LoopbackIdp) -> str:
    claims = jwt.decode(idp.token(), options={"verify_signature": False})
    return f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': 'rsa-1'})}.{_b64(claims)}."


def _hs256_with_the_public_key(idp: LoopbackIdp) -> str:
    """The classic confusion: HMAC keyed with the RSA public key the JWKS publishes."""
    from cryptography.hazmat.primitives import serialization

    public = (
        idp.keys["rsa-1"][0]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    claims = jwt.decode(idp.token(), options={"verify_signature": False})
    header = _b64({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"})
    body = f"{header}.{_b64(claims)}"
    import hashlib
    import hmac

    signature = base64.urlsafe_b64encode(hmac.new(public, body.encode(), hashlib.sha256).digest()).rstrip(
        b"="
    )
    return f"{body}.{signature.decode()}"


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda idp: idp.token(exp=int(time.time()) - 120), id="expired"),
        pytest.param(lambda idp: idp.token(nbf=int(time.time()) + 600), id="not-yet-valid"),
        pytest.param(lambda idp: idp.token(iss="https://evil.invalid"), id="wrong-issuer"),
        pytest.param(lambda idp: idp.token(aud="another-app"), id="wrong-audience"),
        pytest.param(lambda idp: _tampered(idp.token(roles=["cml-monitor-viewer"])), id="tampered"),
        pytest.param(_alg_none, id="alg-none"),
        pytest.param(_hs256_with_the_public_key, id="hs256-with-public-key"),
        pytest.param(
            lambda idp: jwt.encode(
                {"sub": "x"}, idp.keys["ec-1"][0], algorithm="ES256", headers={"kid": "nope"}
            ),
            id="unknown-kid",
        ),
    ],
)
async def test_bad_tokens_are_401_with_a_bearer_challenge(
    api_factory: Any, idp: LoopbackIdp, make: Any
) -> None:
    api = await oidc_api(api_factory, idp)
    response = await api.client.get("/api/workers", headers=bearer(make(idp)))
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith(
        'Bearer realm="cml-monitor", error="invalid_token"'
    )


async def test_rotation_is_picked_up_with_one_refresh_and_a_down_idp_keeps_cached_keys(
    api_factory: Any, idp: LoopbackIdp
) -> None:
    api = await oidc_api(api_factory, idp)
    client = api.client
    assert (await client.get("/api/workers", headers=bearer(idp.token()))).status_code == 200
    fetched = idp.jwks_requests
    new_kid = idp.rotate()
    assert (await client.get("/api/workers", headers=bearer(idp.token(kid=new_kid)))).status_code == 200
    assert idp.jwks_requests == fetched + 1  # exactly one refresh for the new key
    idp.down = True
    newer = idp.rotate()
    assert (await client.get("/api/workers", headers=bearer(idp.token(kid=newer)))).status_code == 401
    assert (await client.get("/api/workers", headers=bearer(idp.token(kid=new_kid)))).status_code == 200


async def test_a_flood_of_unknown_key_ids_refreshes_the_jwks_at_most_once_per_floor(
    api_factory: Any, idp: LoopbackIdp
) -> None:
    api = await oidc_api(api_factory, idp, oidc_jwks_refresh_floor=3600)
    client = api.client
    assert (await client.get("/api/workers", headers=bearer(idp.token()))).status_code == 200
    fetched = idp.jwks_requests
    for n in range(20):
        forged = jwt.encode(
            {"sub": "x"}, idp.keys["rsa-1"][0], algorithm="RS256", headers={"kid": f"made-up-{n}"}
        )
        assert (await client.get("/api/workers", headers=bearer(forged))).status_code == 401
    assert idp.jwks_requests <= fetched + 1


def _discovery(idp: LoopbackIdp, **changes: Any) -> bytes:
    document: dict[str, Any] = {"issuer": idp.issuer, "jwks_uri": f"{idp.issuer}/jwks", **changes}
    return json.dumps({k: v for k, v in document.items() if v is not None}).encode()


@pytest.mark.parametrize(
    ("discovery", "jwks", "cause"),
    [
        pytest.param(lambda idp: b'["a", "list"]', None, "is a JSON list", id="discovery-list"),
        pytest.param(lambda idp: b"<html>maintenance</html>", None, "is not JSON", id="discovery-not-json"),
        pytest.param(lambda idp: b"\xff\xfe", None, "is not JSON", id="discovery-not-utf8"),
        pytest.param(lambda idp: _discovery(idp, jwks_uri=None), None, "jwks_uri is None", id="no-jwks-uri"),
        pytest.param(lambda idp: _discovery(idp, jwks_uri=42), None, "jwks_uri is 42", id="jwks-uri-number"),
        pytest.param(lambda idp: _discovery(idp, issuer=["x"]), None, "names issuer", id="issuer-list"),
        pytest.param(
            lambda idp: _discovery(idp, token_endpoint={"a": 1}), None, "token_endpoint", id="endpoint-object"
        ),
        pytest.param(None, b'[{"kty": "RSA"}]', "not an object with a list of keys", id="jwks-list"),
        pytest.param(None, b'{"keys": "abc"}', "not an object with a list of keys", id="keys-string"),
        pytest.param(None, b'{"keys": [1, 2]}', "not an object with a list of keys", id="key-number"),
        pytest.param(None, b"not json", "the JWKS is not JSON", id="jwks-not-json"),
        pytest.param(None, b'{"keys": [{"kty": ["RSA"], "kid": "rsa-1"}]}', "Ignored key", id="kty-list"),
        pytest.param(
            None, b'{"keys": [{"kty": "EC", "crv": [1], "kid": "rsa-1"}]}', "Ignored key", id="crv-list"
        ),
        pytest.param(
            None,
            b'{"keys": [{"kty": "RSA", "kid": "rsa-1", "n": 5, "e": "AQAB"}]}',
            "Ignored key",
            id="bad-n",
        ),
    ],
)
async def test_a_malformed_discovery_document_or_jwks_refuses_the_token_with_401_and_logs_why(
    api_factory: Any,
    idp: LoopbackIdp,
    caplog: pytest.LogCaptureFixture,
    discovery: Any,
    jwks: Any,
    cause: str,
) -> None:
    idp.discovery_body = discovery(idp) if discovery is not None else None
    idp.jwks_body = jwks
    api = await oidc_api(api_factory, idp)
    with caplog.at_level("INFO", logger="cml_monitor.api.oidc"):
        response = await api.client.get("/api/workers", headers=bearer(idp.token()))
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith('Bearer realm="cml-monitor"')
    logged = [r.getMessage() for r in caplog.records if r.name == "cml_monitor.api.oidc"]
    assert any(cause in line for line in logged), logged
    # The IdP mended: the next token is accepted (the floor is 0 in these tests).
    idp.discovery_body = idp.jwks_body = None
    assert (await api.client.get("/api/workers", headers=bearer(idp.token()))).status_code == 200
