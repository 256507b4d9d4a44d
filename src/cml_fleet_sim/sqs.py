"""A simulated SQS queue fed the way EventBridge feeds one: EC2 state-change notifications.

Speaks the protocol today's botocore uses for SQS (JSON 1.0, `X-Amz-Target: AmazonSQS.<Op>`):
`ReceiveMessage` (long polling up to `WaitTimeSeconds`, at most `MaxNumberOfMessages`, each
message invisible for the visibility timeout until deleted), `DeleteMessage`,
`DeleteMessageBatch`, `SendMessage`, `GetQueueUrl`, `GetQueueAttributes`. When the fleet
changes an instance's state, the event AWS would send is enqueued with EventBridge's envelope.
Faults: every message twice, messages held back and delivered after the next one
(out of order), one malformed message, the queue refusing access.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

ACCOUNT = "123456789012"
QUEUE_NAME = "cml-monitor-events"


@dataclass
class _Message:
    body: str
    message_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    visible_at: float = 0.0
    receipt: str = ""
    receives: int = 0


@dataclass
class QueueFaults:
    duplicates: bool = False
    out_of_order: bool = False
    access_denied: bool = False


class SimulatedQueue:
    def __init__(self, base_url: str = "", name: str = QUEUE_NAME, visibility_timeout: float = 30.0) -> None:
        self.name = name
        self.base_url = base_url
        self.visibility_timeout = visibility_timeout
        self.faults = QueueFaults()
        self._messages: list[_Message] = []
        self._held: list[str] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._arrived: asyncio.Event | None = None
        self.received = 0
        self.deleted = 0

    @property
    def url(self) -> str:
        return f"{self.base_url}/{ACCOUNT}/{self.name}"

    # -- feeding -----------------------------------------------------------------------------

    def send(self, body: str) -> None:
        """Enqueue a message body, applying the faults (from any thread)."""
        bodies = [body]
        with self._lock:
            if self.faults.out_of_order and not self._held:
                self._held.append(body)  # delivered after the next one
                return
            bodies += self._held
            self._held.clear()
            if self.faults.duplicates:
                bodies = [b for b in bodies for _ in (0, 1)]
            self._messages += [_Message(b) for b in bodies]
        self._wake()

    def state_change(self, instance_id: str, region: str, state: str, at: float) -> None:
        """What EventBridge delivers for "EC2 Instance State-change Notification"."""
        self.send(
            json.dumps(
                {
                    "version": "0",
                    "id": str(uuid.uuid4()),
                    "detail-type": "EC2 Instance State-change Notification",
                    "source": "aws.ec2",
                    "account": ACCOUNT,
                    "time": datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "region": region,
                    "resources": [f"arn:aws:ec2:{region}:{ACCOUNT}:instance/{instance_id}"],
                    "detail": {"instance-id": instance_id, "state": state},
                }
            )
        )

    def malformed(self) -> None:
        self.send('{"version": "0", "detail-type": "EC2 Instance State-change Notif')

    def pending(self) -> int:
        with self._lock:
            return len(self._messages) + len(self._held)

    def _wake(self) -> None:
        loop, arrived = self._loop, self._arrived
        if loop is not None and arrived is not None:
            loop.call_soon_threadsafe(arrived.set)

    # -- the SQS API ---------------------------------------------------------------------------

    async def handle(self, operation: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self.faults.access_denied:
            return 400, {
                "__type": "com.amazonaws.sqs#AccessDenied",
                "message": "Access to the resource is denied.",
            }
        if operation in ("GetQueueUrl",):
            return 200, {"QueueUrl": self.url}
        if operation != "GetQueueUrl" and params.get("QueueUrl", "").rstrip("/").split("/")[-1] != self.name:
            return 400, {
                "__type": "com.amazonaws.sqs#QueueDoesNotExist",
                "message": "The specified queue does not exist.",
            }
        if operation == "ReceiveMessage":
            return 200, await self._receive(params)
        if operation == "DeleteMessage":
            self._delete(params["ReceiptHandle"])
            return 200, {}
        if operation == "DeleteMessageBatch":
            for entry in params.get("Entries", []):
                self._delete(entry["ReceiptHandle"])
            return 200, {"Successful": [{"Id": e["Id"]} for e in params.get("Entries", [])], "Failed": []}
        if operation == "SendMessage":
            self.send(params["MessageBody"])
            return 200, {"MessageId": str(uuid.uuid4()), "MD5OfMessageBody": _md5(params["MessageBody"])}
        if operation == "GetQueueAttributes":
            return 200, {"Attributes": {"ApproximateNumberOfMessages": str(self.pending())}}
        return 400, {
            "__type": "com.amazonaws.sqs#InvalidAction",
            "message": f"{operation} is not supported here",
        }

    async def _receive(self, params: dict[str, Any]) -> dict[str, Any]:
        self._loop = asyncio.get_running_loop()
        if self._arrived is None:
            self._arrived = asyncio.Event()
        limit = max(1, min(10, int(params.get("MaxNumberOfMessages", 1))))
        wait = max(0.0, min(20.0, float(params.get("WaitTimeSeconds", 0))))
        visibility = float(params.get("VisibilityTimeout", self.visibility_timeout))
        deadline = time.monotonic() + wait
        while True:
            taken = self._take(limit, visibility)
            remaining = deadline - time.monotonic()
            if taken or remaining <= 0:
                break
            self._arrived.clear()
            next_visible = self._next_visible_in()
            try:
                async with asyncio.timeout(min(remaining, next_visible)):
                    await self._arrived.wait()
            except TimeoutError:
                pass
        self.received += len(taken)
        return {
            "Messages": [
                {
                    "MessageId": m.message_id,
                    "ReceiptHandle": m.receipt,
                    "Body": m.body,
                    "MD5OfBody": _md5(m.body),
                }
                for m in taken
            ]
        }

    def _take(self, limit: int, visibility: float) -> list[_Message]:
        now = time.monotonic()
        with self._lock:
            taken = [m for m in self._messages if m.visible_at <= now][:limit]
            for message in taken:
                message.visible_at = now + visibility
                message.receipt = secrets.token_urlsafe(24)
                message.receives += 1
        return taken

    def _next_visible_in(self) -> float:
        now = time.monotonic()
        with self._lock:
            later = [m.visible_at - now for m in self._messages if m.visible_at > now]
        return max(0.05, min(later, default=20.0))

    def _delete(self, receipt: str) -> None:
        with self._lock:
            before = len(self._messages)
            self._messages = [m for m in self._messages if m.receipt != receipt]
            self.deleted += before - len(self._messages)


def _md5(body: str) -> str:
    return hashlib.md5(body.encode(), usedforsecurity=False).hexdigest()


async def _disconnected(request: Request) -> None:
    """Return when the client hangs up (the body has been read: only `http.disconnect` is left)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def sqs_response(queue: SimulatedQueue, request: Request, operation: str) -> Response:
    body = await request.body()
    params = json.loads(body) if body else {}
    # A long poll ends when its client hangs up (a consumer cancelled, a process stopped), as
    # SQS's does: it takes no message for nobody, and does not hold the server's stop.
    handling = asyncio.ensure_future(queue.handle(operation, params))
    gone = asyncio.ensure_future(_disconnected(request))
    await asyncio.wait({handling, gone}, return_when=asyncio.FIRST_COMPLETED)
    gone.cancel()
    if not handling.done():
        handling.cancel()
        return Response(status_code=499)  # nobody reads it
    status, answer = handling.result()
    headers = {}
    if status != 200:
        code = answer["__type"].split("#")[-1]
        headers["x-amzn-query-error"] = f"AWS.SimpleQueueService.{code};Sender"
    return Response(
        json.dumps(answer), status_code=status, media_type="application/x-amz-json-1.0", headers=headers
    )
