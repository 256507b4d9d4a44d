"""Throttling and 5xx answers are retried with backoff, and every attempt is counted."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cml_fleet_sim.serving import ThreadedServer
from cml_monitor.aws import AwsEc2Client, AwsError

from .conftest import REGION, Moto

THROTTLED = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>RequestLimitExceeded</Code>'
    "<Message>Request limit exceeded.</Message></Error></Errors><RequestID>r-1</RequestID></Response>"
)

INTERNAL = THROTTLED.replace("RequestLimitExceeded", "InternalError").replace("Request limit exceeded.", "x")


class FlakyProxy:
    """Answers the first `failures` requests with an error, then forwards to moto."""

    def __init__(self, upstream: str, failures: int, status: int, body: str) -> None:
        self.upstream = upstream
        self.failures = failures
        self.status = status
        self.body = body
        self.seen = 0
        self.app = Starlette(routes=[Route("/{path:path}", self.handle, methods=["GET", "POST"])])

    async def handle(self, request: Request) -> Response:
        self.seen += 1
        if self.seen <= self.failures:
            return Response(self.body, status_code=self.status, media_type="text/xml")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with httpx.AsyncClient() as client:
            upstream = await client.request(
                request.method,
                f"{self.upstream}{request.url.path}",
                content=await request.body(),
                headers=headers,
            )
        return Response(upstream.content, status_code=upstream.status_code, headers=dict(upstream.headers))


@pytest.fixture
def proxy(moto: Moto, request: pytest.FixtureRequest) -> Iterator[FlakyProxy]:
    failures, status, body = request.param
    flaky = FlakyProxy(moto.url, failures, status, body)
    server = ThreadedServer(flaky.app).start()
    flaky.url = server.url  # type: ignore[attr-defined]
    yield flaky
    server.stop()


@pytest.mark.parametrize("proxy", [(2, 503, THROTTLED), (2, 500, INTERNAL)], indirect=True)
async def test_throttling_and_5xx_are_retried_and_counted(moto: Moto, proxy: FlakyProxy) -> None:
    (instance,) = moto.run_instances(1)
    client = AwsEc2Client(endpoint_url=proxy.url, max_attempts=4)  # type: ignore[attr-defined]
    try:
        statuses = await client.describe_instance_statuses(REGION, [instance])
    finally:
        await client.close()
    assert statuses[instance].instance_state == "running"
    assert client.requests.snapshot() == {("ec2", "DescribeInstanceStatus"): 3}
    assert proxy.seen == 3


@pytest.mark.parametrize("proxy", [(10, 503, THROTTLED)], indirect=True)
async def test_exhausted_retries_raise_our_error(moto: Moto, proxy: FlakyProxy) -> None:
    (instance,) = moto.run_instances(1)
    client = AwsEc2Client(endpoint_url=proxy.url, max_attempts=2)  # type: ignore[attr-defined]
    try:
        with pytest.raises(AwsError, match="RequestLimitExceeded"):
            await client.describe_instance_statuses(REGION, [instance])
    finally:
        await client.close()
    assert client.requests.total() == 2
