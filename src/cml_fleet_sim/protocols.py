"""AWS wire protocols, server side: decode a request into parameters, encode a result or error.

EC2 speaks `ec2` (a form-encoded query, XML answers with `<item>` lists). CloudWatch speaks
`smithy-rpc-v2-cbor` (today's botocore), `json` (awsJson1_0) and `query` (older SDKs); it is
query-compatible, so its errors also carry `x-amzn-query-error`.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

import cbor2
from starlette.requests import Request
from starlette.responses import Response

EC2_NAMESPACE = "http://ec2.amazonaws.com/doc/2016-11-15/"
CLOUDWATCH_NAMESPACE = "http://monitoring.amazonaws.com/doc/2010-08-01/"
CLOUDWATCH_TARGET = "GraniteServiceVersion20100801"


class AwsApiError(Exception):
    """An error in AWS's own shape: code, message, HTTP status, and who is at fault."""

    def __init__(self, code: str, message: str, status: int = 400, fault: str = "Sender") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.fault = fault


class AwsRequest:
    """One decoded call: service, protocol, operation, parameters and region."""

    def __init__(
        self, service: str, protocol: str, operation: str, params: dict[str, Any], region: str
    ) -> None:
        self.service = service
        self.protocol = protocol
        self.operation = operation
        self.params = params
        self.region = region


def _region_of(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    marker = "Credential="
    if marker in auth:
        scope = auth.split(marker, 1)[1].split(",", 1)[0].split("/")
        if len(scope) >= 3 and scope[2]:
            return scope[2]
    return "us-east-1"


def _unflatten(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """`Filter.1.Value.2=x` → {"Filter": [{"Value": [_, "x"]}]} (query lists, `member` folded)."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = [p for p in key.split(".") if p != "member"]
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _listify(root)


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v) for k, v in node.items()}
    if converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


async def decode(request: Request) -> AwsRequest:
    region = _region_of(request)
    body = await request.body()
    path = request.url.path
    if "/operation/" in path and path.startswith(f"/service/{CLOUDWATCH_TARGET}"):
        params = cbor2.loads(body) if body else {}
        return AwsRequest("cloudwatch", "cbor", path.rsplit("/", 1)[1], params or {}, region)
    target = request.headers.get("x-amz-target", "")
    if target.startswith(CLOUDWATCH_TARGET + "."):
        params = json.loads(body) if body else {}
        return AwsRequest("cloudwatch", "json", target.split(".", 1)[1], params, region)
    pairs = parse_qsl(body.decode(), keep_blank_values=True) if body else list(request.query_params.items())
    params = _unflatten(pairs)
    action = str(params.pop("Action", ""))
    version = str(params.pop("Version", ""))
    service = "cloudwatch" if version == "2010-08-01" else "ec2"
    if not action:
        raise AwsApiError("MissingAction", "The request must contain the parameter Action.")
    return AwsRequest(service, "query" if service == "cloudwatch" else "ec2", action, params, region)


def to_epoch(value: Any) -> float:
    """A timestamp in any of the protocols' forms → seconds since the epoch."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, int | float):
        return float(value)
    text = str(value)
    try:
        return float(text)
    except ValueError:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# -- encoding ------------------------------------------------------------------------------


def _xml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return escape(str(value))


def to_xml(value: Any, list_item: str) -> str:
    """A dict/list tree → XML elements; lists become `<item>` (EC2) or `<member>` (query)."""
    if isinstance(value, Mapping):
        return "".join(f"<{k}>{to_xml(v, list_item)}</{k}>" for k, v in value.items() if v is not None)
    if isinstance(value, list):
        return "".join(f"<{list_item}>{to_xml(v, list_item)}</{list_item}>" for v in value)
    return _xml_value(value)


def request_id() -> str:
    return secrets.token_hex(16)


def ec2_response(operation: str, result: Mapping[str, Any]) -> Response:
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?><{operation}Response xmlns="{EC2_NAMESPACE}">'
        f"<requestId>{request_id()}</requestId>{to_xml(result, 'item')}</{operation}Response>"
    )
    return Response(body, media_type="text/xml")


def ec2_error(error: AwsApiError) -> Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error>'
        f"<Code>{escape(error.code)}</Code><Message>{escape(error.message)}</Message>"
        f"</Error></Errors><RequestID>{request_id()}</RequestID></Response>"
    )
    return Response(body, status_code=error.status, media_type="text/xml")


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def cloudwatch_response(protocol: str, operation: str, result: Mapping[str, Any]) -> Response:
    if protocol == "cbor":
        body = cbor2.dumps(
            {k: v for k, v in result.items() if v is not None}, datetime_as_timestamp=True, timezone=UTC
        )
        return Response(body, media_type="application/cbor", headers={"smithy-protocol": "rpc-v2-cbor"})
    if protocol == "json":
        return Response(json.dumps(_jsonable(result)), media_type="application/x-amz-json-1.0")
    body = (
        f'<{operation}Response xmlns="{CLOUDWATCH_NAMESPACE}"><{operation}Result>{to_xml(result, "member")}'
        f"</{operation}Result><ResponseMetadata><RequestId>{request_id()}</RequestId></ResponseMetadata>"
        f"</{operation}Response>"
    )
    return Response(body, media_type="text/xml")


def cloudwatch_error(protocol: str, error: AwsApiError) -> Response:
    headers = {"x-amzn-query-error": f"{error.code};{error.fault}"}
    if protocol == "cbor":
        body = cbor2.dumps({"__type": f"com.amazonaws.cloudwatch#{error.code}", "message": error.message})
        headers["smithy-protocol"] = "rpc-v2-cbor"
        return Response(body, status_code=error.status, media_type="application/cbor", headers=headers)
    if protocol == "json":
        body = json.dumps({"__type": error.code, "message": error.message})
        return Response(
            body, status_code=error.status, media_type="application/x-amz-json-1.0", headers=headers
        )
    body = (
        f'<ErrorResponse xmlns="{CLOUDWATCH_NAMESPACE}"><Error><Type>{error.fault}</Type>'
        f"<Code>{escape(error.code)}</Code><Message>{escape(error.message)}</Message></Error>"
        f"<RequestId>{request_id()}</RequestId></ErrorResponse>"
    )
    return Response(body, status_code=error.status, media_type="text/xml")
