"""CML 2.9's OpenAPI document (`tests/data/cml_v2.9_openapi.json`) as response schemas to check against.

The document is the one kept in bvandewe/CML-Cloud-Manager (`notes/cml_v2.9_openapi.json`), an
export of a CML 2.9 controller's `/api/v0/openapi.json`. A response schema is checked with the
components beside it, so its `#/components/schemas/...` references resolve.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema.exceptions import ValidationError
from openapi_schema_validator import OAS31Validator

SPEC_PATH = Path(__file__).parent / "data" / "cml_v2.9_openapi.json"


@cache
def spec() -> dict[str, Any]:
    return json.loads(SPEC_PATH.read_text())


def response_schema(method: str, path: str, status: int) -> dict[str, Any]:
    """The schema of the answer to `method path` with `status` (the `default` one when unlisted)."""
    operation = spec()["paths"][path][method.lower()]
    responses = operation["responses"]
    response = responses.get(str(status)) or responses["default"]
    return {**response["content"]["application/json"]["schema"], "components": spec()["components"]}


def schema_of(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}", "components": spec()["components"]}


def problems(schema: dict[str, Any], body: Any) -> list[str]:
    """Every way `body` breaks `schema` (dates checked as RFC 3339 date-times), empty when valid."""
    validator = OAS31Validator(schema, format_checker=OAS31Validator.FORMAT_CHECKER)
    errors: list[ValidationError] = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:200]}" for e in errors]
