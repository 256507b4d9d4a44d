"""The local channel between `serve` and its collector child: one Unix socket, no Redis.

`serve` runs the collection in a child process so that parsing AWS answers and reading
hundreds of controllers never holds the API's event loop. Both sides share the database; what
else must cross goes on this channel, as length-prefixed JSON frames:

- child → parent: each region's events (for the SSE hub and the worker gauges), a snapshot of
  the collector's own Prometheus exposition every second, and replies;
- parent → child: calls (readiness, the schedule's view, monitor/unmonitor/collect a worker).

The parent listens (`ChannelServer`), the child connects (`ChannelClient`). Events are
fire-and-forget like the Redis bus: a child that is not connected drops them (the database has
them; the dashboard reloads on reconnect). A call to a child that is not there fails at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import struct
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from cml_monitor.domain import WorkerMetricsCollected
from cml_monitor.monitoring import ObserverPublisher

logger = logging.getLogger(__name__)

_HEADER = struct.Struct("!I")
MAX_FRAME = 512 * 1024 * 1024  # one region of 100,000 workers is well under this


class ChannelClosed(ConnectionError):
    """The other side is not connected (a child restarting, a parent gone)."""


async def _read_frame(reader: asyncio.StreamReader) -> dict[str, Any]:
    (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    if size > MAX_FRAME:
        raise ValueError(f"a frame of {size} bytes is over the limit")
    message = json.loads(await reader.readexactly(size))
    if not isinstance(message, dict):
        raise ValueError("a frame is not a JSON object")
    return message


def _encode(message: dict[str, Any]) -> bytes:
    payload = json.dumps(message, separators=(",", ":"), default=str).encode()
    return _HEADER.pack(len(payload)) + payload


class _Peer:
    """One connection: writes frames, matches replies to calls, hands the rest to `on_message`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_message: Callable[[_Peer, dict[str, Any]], Awaitable[None]],
    ) -> None:
        self.reader, self.writer = reader, writer
        self._on_message = on_message
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self.closed = asyncio.Event()

    async def send(self, message: dict[str, Any]) -> None:
        if self.closed.is_set():
            raise ChannelClosed("the channel is closed")
        self.writer.write(_encode(message))
        await self.writer.drain()

    async def call(self, method: str, timeout: float, **params: Any) -> Any:
        call_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        try:
            await self.send({"t": "call", "id": call_id, "method": method, "params": params})
            async with asyncio.timeout(timeout):
                return await future
        finally:
            self._pending.pop(call_id, None)

    async def run(self) -> None:
        """Read until the other side goes; then fail every call still waiting."""
        try:
            while True:
                message = await _read_frame(self.reader)
                if message.get("t") == "reply":
                    future = self._pending.get(message.get("id", 0))
                    if future is not None and not future.done():
                        if "error" in message:
                            future.set_exception(RuntimeError(str(message["error"])))
                        else:
                            future.set_result(message.get("result"))
                    continue
                await self._on_message(self, message)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.closed.set()
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ChannelClosed("the other side went away"))
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()


def _decode_events(items: Sequence[dict[str, Any]]) -> list[WorkerMetricsCollected]:
    return [WorkerMetricsCollected.from_json(item) for item in items]


class ChannelServer:
    """The parent's end: the event bus of the API side, and the way to call the collector.

    Its `observe` (events collected in this process, rare: none once the child collects) goes
    straight to the local sinks, so it stands where a `RedisEventBus` would.
    """

    def __init__(self, path: str, sinks: ObserverPublisher | None = None) -> None:
        """`sinks` gets every batch received, through the same isolated, timed fan-out as the
        monitoring loop's observers (set later by the runtime that takes this as its bus)."""
        self.path = path
        self.sinks = sinks or ObserverPublisher()
        self.on_snapshot: Callable[[str, dict[str, Any]], None] | None = None
        self._server: asyncio.AbstractServer | None = None
        self._peer: _Peer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._connected = asyncio.Event()
        self.problem: str | None = "the collector is not connected yet"

    @property
    def connected(self) -> bool:
        return self._peer is not None and not self._peer.closed.is_set()

    async def wait_connected(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self._connected.wait()
        except TimeoutError:
            return False
        return True

    async def observe(self, events: Sequence[WorkerMetricsCollected]) -> None:
        await self._deliver(events)

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self._server = await asyncio.start_unix_server(self._accept, path=self.path, limit=2**20)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    async def call(self, method: str, timeout: float = 5.0, **params: Any) -> Any:
        peer = self._peer
        if peer is None or peer.closed.is_set():
            raise ChannelClosed("the collector is not connected")
        return await peer.call(method, timeout, **params)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = _Peer(reader, writer, self._on_message)
        if self._peer is not None:  # a new child replaces one that is going
            self._peer.writer.close()
        self._peer, self.problem = peer, None
        self._connected.set()
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await peer.run()
        finally:
            if task is not None:
                self._tasks.discard(task)
            if self._peer is peer:
                self._peer, self.problem = None, "the collector is not connected"
                self._connected.clear()

    async def _on_message(self, _peer: _Peer, message: dict[str, Any]) -> None:
        kind = message.get("t")
        if kind == "events":
            try:
                events = _decode_events(message["events"])
            except (ValueError, KeyError, TypeError) as exc:
                logger.warning("Ignored malformed events from the collector: %s", exc)
                return
            await self._deliver(events)
        elif kind in ("metrics", "state") and self.on_snapshot is not None:
            self.on_snapshot(kind, message)

    async def _deliver(self, events: Sequence[WorkerMetricsCollected]) -> None:
        await self.sinks.publish(events)


class ChannelClient:
    """The child's end: the monitoring loop's event observer, and the server of the parent's calls.

    `handler(method, params)` answers the parent's calls. The client reconnects with a short
    backoff; `on_parent_gone` is called when the parent process is no longer there, so a child
    is never left collecting on its own.
    """

    def __init__(
        self,
        path: str,
        handler: Callable[[str, dict[str, Any]], Awaitable[Any]] | None = None,
        *,
        on_parent_gone: Callable[[], None] | None = None,
    ) -> None:
        self.path = path
        self.handler = handler
        self.on_parent_gone = on_parent_gone
        self._peer: _Peer | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._parent = os.getppid()
        self._answering: set[asyncio.Task[None]] = set()
        self.problem: str | None = "not connected yet"

    async def observe(self, events: Sequence[WorkerMetricsCollected]) -> None:
        """Observer of the monitoring loop: the region's events go to the API side."""
        if events:
            await self.send({"t": "events", "events": [event.to_bus_json() for event in events]})

    async def send(self, message: dict[str, Any]) -> None:
        peer = self._peer
        if peer is None or peer.closed.is_set():
            return  # fire-and-forget, like pub/sub: the database has the data
        try:
            await peer.send(message)
        except (ConnectionError, ChannelClosed):
            pass

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._connect_loop(), name="local-channel")
        try:
            async with asyncio.timeout(5.0):
                await self._connected.wait()
        except TimeoutError:
            logger.error("Not connected to the API process yet (%s); retrying", self.problem)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._peer is not None:
            self._peer.writer.close()

    async def _connect_loop(self) -> None:
        delay = 0.1
        while True:
            if os.getppid() != self._parent:
                logger.error("The API process is gone; stopping the collector")
                if self.on_parent_gone is not None:
                    self.on_parent_gone()
                return
            try:
                reader, writer = await asyncio.open_unix_connection(self.path, limit=2**20)
            except OSError as exc:
                self.problem = f"unavailable: {type(exc).__name__}"
            else:
                peer = _Peer(reader, writer, self._on_message)
                self._peer, self.problem, delay = peer, None, 0.1
                self._connected.set()
                await peer.run()
                self._peer, self.problem = None, "disconnected"
                self._connected.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _on_message(self, peer: _Peer, message: dict[str, Any]) -> None:
        if message.get("t") != "call":
            return
        task = asyncio.get_running_loop().create_task(self._answer(peer, message))
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    async def _answer(self, peer: _Peer, message: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"t": "reply", "id": message.get("id")}
        try:
            if self.handler is None:
                raise RuntimeError("the collector is starting")
            reply["result"] = await self.handler(str(message.get("method")), message.get("params") or {})
        except Exception as exc:
            reply["error"] = f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(ConnectionError, ChannelClosed):
            await peer.send(reply)
