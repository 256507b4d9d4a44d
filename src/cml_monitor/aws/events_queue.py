"""`EventQueueConsumer`: long-polls the SQS queue EventBridge feeds, hands each event on.

Receive (20 s long poll, up to 10 messages) → parse → apply (the handler) → delete. A message is
deleted only once applied, or once known to be foreign or malformed (logged once per kind of
problem, counted); one whose handler failed stays and comes back after its visibility timeout,
so a crash or a database outage loses nothing. When a receive comes back full, another poller
joins (up to `max_pollers`) and leaves at its first empty receive. The queue being unreachable
or refusing access is logged, shown as `problem` (on `/ready`), retried with backoff; polling
of EC2 is not affected.

`EventQueues` runs one consumer per queue of `WORKER_EVENTS_QUEUE_URL` (a comma list: one queue
per region, since an EventBridge rule only targets a queue in its own region), each with its own
pollers and its own problem, so a region's queue that fails leaves the others read.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from botocore.exceptions import ClientError

from .eventbridge import ForeignMessage, MalformedMessage, ScheduledChange, StateChange, parse
from .pool import AwsError, ClientPool

logger = logging.getLogger(__name__)

WAIT_SECONDS = 20
BATCH = 10
# https://sqs.<region>.amazonaws.com/… and the legacy https://<region>.queue.amazonaws.com/…
_REGION_IN_URL = re.compile(
    r"sqs[.-]([a-z0-9-]+)\.amazonaws\.com|//([a-z]{2}(?:-[a-z]+)+-\d)\.queue\.amazonaws\.com"
)

Handler = Callable[[StateChange | ScheduledChange], Awaitable[str]]


def queue_region(queue_url: str, default: str) -> str:
    """The region of an SQS queue URL (https://sqs.<region>.amazonaws.com/…), else `default`."""
    match = _REGION_IN_URL.search(queue_url)
    return (match.group(1) or match.group(2)) if match else default


class EventQueueConsumer:
    def __init__(
        self,
        queue_url: str,
        handler: Handler,
        *,
        region: str,
        endpoint_url: str | None = None,
        max_pollers: int = 3,
        on_result: Callable[[str, str], None] | None = None,
        backoff_max: float = 60.0,
    ) -> None:
        self.queue_url = queue_url
        self._handler = handler
        self._region = queue_region(queue_url, region)
        # Its own pool: a 20 s long poll must not hold a connection the collection needs.
        self._pool = ClientPool(endpoint_url=endpoint_url, max_attempts=2, read_timeout=WAIT_SECONDS + 10)
        self._max_pollers = max_pollers
        self._on_result = on_result
        self._backoff_max = backoff_max
        self._pollers: set[asyncio.Task[None]] = set()
        self._told: set[tuple[str, str]] = set()  # problems already logged
        self.problem: str | None = None

    async def run(self) -> None:
        """Poll until cancelled."""
        try:
            await self._poll(permanent=True)
        finally:
            for task in list(self._pollers):
                task.cancel()
            await asyncio.gather(*self._pollers, return_exceptions=True)
            await self._pool.close()

    async def _poll(self, *, permanent: bool) -> None:
        delay = 1.0
        while True:
            try:
                messages = await self._receive()
            except (ClientError, AwsError) as exc:
                self._failed(exc)
                if not permanent:
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._backoff_max)
                continue
            if self.problem is not None:
                logger.info("Events queue %s answers again", self.queue_url)
                self.problem = None
            delay = 1.0
            if len(messages) == BATCH and len(self._pollers) + 1 < self._max_pollers:
                task = asyncio.get_running_loop().create_task(self._poll(permanent=False))
                self._pollers.add(task)
                task.add_done_callback(self._pollers.discard)
            if not messages and not permanent:
                return
            await self._process(messages)

    async def _receive(self) -> list[dict[str, Any]]:
        response = await self._pool.call(
            "sqs",
            self._region,
            "receive_message",
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=BATCH,
            WaitTimeSeconds=WAIT_SECONDS,
        )
        return list(response.get("Messages") or [])

    def _failed(self, exc: Exception) -> None:
        code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
        problem = f"{code or type(exc).__name__}: {exc}"
        if problem != self.problem:
            logger.error(
                "Events queue %s cannot be read (%s); retrying with backoff", self.queue_url, problem
            )
        self.problem = problem

    async def _process(self, messages: list[dict[str, Any]]) -> None:
        done: list[dict[str, str]] = []
        for message in messages:
            if await self._one(message):
                done.append({"Id": message["MessageId"], "ReceiptHandle": message["ReceiptHandle"]})
        if done:
            try:
                await self._pool.call(
                    "sqs", self._region, "delete_message_batch", QueueUrl=self.queue_url, Entries=done
                )
            except (ClientError, AwsError) as exc:
                logger.warning(
                    "Could not delete %d handled messages (they will come again): %s", len(done), exc
                )

    async def _one(self, message: dict[str, Any]) -> bool:
        """Whether the message is done with (applied, or never to be applied)."""
        try:
            change = parse(message.get("Body") or "")
        except (ForeignMessage, MalformedMessage) as exc:
            kind = "foreign" if isinstance(exc, ForeignMessage) else "malformed"
            if (kind, str(exc)[:40]) not in self._told:
                self._told.add((kind, str(exc)[:40]))
                logger.warning("Events queue: %s message deleted (%s)", kind, exc)
            self._count("unknown", kind)
            return True
        kind = "state_change" if isinstance(change, StateChange) else "scheduled_change"
        try:
            result = await self._handler(change)
        except Exception as exc:
            logger.error("Could not apply %s (it will come again): %s", kind, exc)
            self._count(kind, "failed")
            return False
        self._count(kind, result)
        return True

    def _count(self, kind: str, result: str) -> None:
        if self._on_result is not None:
            self._on_result(kind, result)


class EventQueues:
    """One `EventQueueConsumer` per queue URL, run together; `problem` names each failing queue."""

    def __init__(self, consumers: list[EventQueueConsumer]) -> None:
        self.consumers = consumers

    @classmethod
    def from_urls(cls, queue_urls: list[str], handler: Handler, **options: Any) -> EventQueues:
        return cls([EventQueueConsumer(url, handler, **options) for url in dict.fromkeys(queue_urls)])

    async def run(self) -> None:
        """Poll every queue until cancelled (each consumer survives its own failures)."""
        await asyncio.gather(*(consumer.run() for consumer in self.consumers))

    @property
    def problem(self) -> str | None:
        problems = [c for c in self.consumers if c.problem is not None]
        if not problems:
            return None
        if len(self.consumers) == 1:
            return problems[0].problem
        return "; ".join(f"{c.queue_url}: {c.problem}" for c in problems)
