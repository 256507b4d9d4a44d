"""`ClientPool`: one long-lived aiobotocore client per (service, region), and the error wrapping.

Clients are created on first use and closed together. Throttling and 5xx answers are retried
by botocore's `standard` retry mode (exponential backoff with full jitter); every HTTP attempt,
retries included, is counted by service and operation. A call that still fails surfaces as
`AwsError` naming the operation and the region, so callers log one line an operator can act on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import DEFAULT_TIMESTAMP_PARSER, ResponseParserError

from .requests import RequestCounter

TRANSPORT_ERRORS = (TimeoutError, BotoCoreError, ResponseParserError, OSError)


def parse_timestamp(value: Any) -> datetime:
    """botocore's timestamp parsing, 25 times cheaper for the forms AWS sends (measured).

    A `GetMetricData` answer of 500 results carries thousands of timestamps; botocore's default
    parser (dateutil) made them most of the cycle's parsing. Epoch numbers (the JSON protocol)
    and ISO 8601 strings (EC2's XML) are read by the standard library; any other form goes to
    botocore's parser. Always timezone-aware (UTC when the text names no offset), as botocore's.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
    result: datetime = DEFAULT_TIMESTAMP_PARSER(value)
    return result


class AwsError(RuntimeError):
    """An AWS call failed after its retries; the message names the operation and the region."""


class ClientPool:
    def __init__(
        self,
        *,
        endpoint_url: str | None = None,
        max_attempts: int = 5,
        retry_mode: str = "standard",
        request_counter: RequestCounter | None = None,
        session: AioSession | None = None,
        max_pool_connections: int = 20,
        read_timeout: float = 30.0,
    ) -> None:
        self._endpoint_url = endpoint_url
        self._session = session or get_session()
        self._session.get_component("response_parser_factory").set_parser_defaults(
            timestamp_parser=parse_timestamp
        )
        self._config = AioConfig(
            retries={"mode": retry_mode, "total_max_attempts": max_attempts},
            max_pool_connections=max_pool_connections,
            connect_timeout=5,
            read_timeout=read_timeout,
            # We build every request ourselves; botocore's validation of a 500-query
            # GetMetricData walked 80,000 shapes per call, the largest cost of a cycle (profiled).
            parameter_validation=False,
        )
        self.requests = request_counter or RequestCounter()
        self._stack = AsyncExitStack()
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        async with self._lock:
            self._clients.clear()
            await self._stack.aclose()
            self._stack = AsyncExitStack()

    async def client(self, service: str, region: str) -> Any:
        key = (service, region)
        client = self._clients.get(key)
        if client is not None:
            return client
        async with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = await self._stack.enter_async_context(
                    self._session.create_client(
                        service, region_name=region, endpoint_url=self._endpoint_url, config=self._config
                    )
                )
                client.meta.events.register("before-send", self.requests.on_before_send)
                self._clients[key] = client
        return client

    async def call(self, service: str, region: str, operation: str, **params: Any) -> Any:
        """One operation; a `ClientError` (AWS said no) is left to the caller to interpret."""
        client = await self.client(service, region)
        try:
            return await getattr(client, operation)(**params)
        except ClientError:
            raise
        except TRANSPORT_ERRORS as exc:
            raise AwsError(f"{service} {operation} in {region} failed: {exc}") from exc

    async def pages(
        self, service: str, region: str, operation: str, **params: Any
    ) -> AsyncIterator[dict[str, Any]]:
        """Every page of a paginated operation (botocore's paginator; each page is counted)."""
        client = await self.client(service, region)
        try:
            async for page in client.get_paginator(operation).paginate(**params):
                yield page
        except (ClientError, *TRANSPORT_ERRORS) as exc:
            raise AwsError(f"{service} {operation} in {region} failed: {exc}") from exc
