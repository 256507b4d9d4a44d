"""`/docs` with authentication: the OpenAPI document declares how `/api` authenticates, so that
Swagger UI shows "Authorize" and "Try it out" sends the token."""

from __future__ import annotations

from typing import Any

PUBLIC = {"/health", "/ready", "/metrics"}


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]


async def test_with_tokens_every_api_route_references_the_bearer_scheme(api_factory: Any) -> None:
    api = await api_factory(
        token="a-viewer-token-of-24-chars", api_tokens="viewer:a-viewer-token-of-24-chars"
    )
    document = (await api.client.get("/openapi.json")).json()
    schemes = document["components"]["securitySchemes"]
    assert schemes == {
        "bearer": {"type": "http", "scheme": "bearer", "description": schemes["bearer"]["description"]}
    }
    assert "API_TOKENS" in schemes["bearer"]["description"] and "OIDC" in schemes["bearer"]["description"]
    secured = [(p, m, o) for p, m, o in operations(document) if p.startswith("/api/")]
    assert len(secured) > 15
    for path, method, operation in secured:
        assert operation.get("security") == [{"bearer": []}], (method, path)
    for path, method, operation in operations(document):
        if path in PUBLIC:
            assert "security" not in operation, (method, path)
    # What "Try it out" sends once authorized: the same header the API accepts.
    assert (await api.client.get("/api/workers")).status_code == 200


async def test_with_an_oidc_issuer_the_openid_connect_scheme_is_declared_too(api_factory: Any) -> None:
    issuer = "http://127.0.0.1:9/realms/cml"  # never contacted: no token is presented here
    api = await api_factory(oidc_issuer=issuer, oidc_audience="cml-monitor")
    document = (await api.client.get("/openapi.json")).json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"]["scheme"] == "bearer"
    assert schemes["oidc"]["type"] == "openIdConnect"
    assert schemes["oidc"]["openIdConnectUrl"] == f"{issuer}/.well-known/openid-configuration"
    (_, _, operation) = next(o for o in operations(document) if o[0] == "/api/workers" and o[1] == "get")
    assert operation["security"] == [{"bearer": []}, {"oidc": []}]  # either one


async def test_without_authentication_nothing_claims_a_scheme(api_factory: Any) -> None:
    api = await api_factory()
    document = (await api.client.get("/openapi.json")).json()
    assert "securitySchemes" not in document.get("components", {})
    assert all("security" not in operation for _, _, operation in operations(document))
