"""Live-stream clients that stop reading: dropped, their backlog bounded, the others untouched.

The service runs under the real uvicorn server (`build_server`, as `serve` runs it) on a
loopback port; the never-reading client is a raw socket with a tiny receive buffer that sends
its request and never calls `recv`, so the server's writes really block.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from cml_fleet_sim.serving import free_port
from cml_monitor.api.server import build_server
from cml_monitor.live_events import EventHub

from .conftest import Moto, make_settings
from .helpers import eventually, sse_events

BOUND = 64 * 1024
PAYLOAD = "x" * 16000  # one event of ~16 KB


@pytest.fixture
async def served(moto: Moto, sqlite_url: str) -> AsyncIterator[tuple[str, EventHub, Any]]:
    """The app under uvicorn with a small backlog bound and a short stall time."""
    from cml_monitor.api.app import create_app

    app = create_app(make_settings(sqlite_url, moto.url, worker_monitoring_enabled=False))
    port = free_port()
    server = build_server(app, "127.0.0.1", port, "warning", stall_seconds=1.0)
    serving = asyncio.ensure_future(server.serve())
    await eventually(lambda: server.started, timeout=20)
    hub = EventHub(max_backlog_bytes=BOUND, stall_seconds=3600)  # the byte bound acts first here
    app.state.runtime.live_events = hub
    try:
        yield f"http://127.0.0.1:{port}", hub, server
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 30)


def never_reading_client(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)  # before connect: a tiny window
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /api/events HTTP/1.1\r\nHost: monitor\r\nAccept: text/event-stream\r\n\r\n")
    return sock


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sent, once it closed or reset the connection; fails on a timeout."""
    sock.settimeout(timeout)
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            received += chunk
    return received


async def test_a_client_that_never_reads_is_disconnected_with_a_bounded_backlog_and_readers_get_all(
    served: tuple[str, EventHub, Any],
) -> None:
    base, hub, server = served
    port = int(base.rsplit(":", 1)[1])
    received: list[tuple[str, str]] = []
    progress = asyncio.Event()

    async def read_everything() -> None:
        async with (
            httpx.AsyncClient(timeout=30) as client,
            client.stream("GET", f"{base}/api/events") as stream,
        ):
            buffer = b""
            async for chunk in stream.aiter_bytes():
                buffer += chunk
                complete, _, buffer = buffer.rpartition(b"\r\n\r\n")
                blocks = [b for b in complete.split(b"\r\n\r\n") if b and not b.startswith(b":")]
                for block in blocks:  # events, not the heartbeat comments
                    received.extend(sse_events(block + b"\r\n\r\n"))
                progress.set()

    reader = asyncio.ensure_future(read_everything())
    await eventually(lambda: hub.subscribers == 1)
    stalled = await asyncio.to_thread(never_reading_client, port)
    await eventually(lambda: hub.subscribers == 2)
    published = 0
    largest_backlog = 0

    async def publish_one() -> None:
        nonlocal published, largest_backlog
        published += 1
        hub.publish("metrics", {"n": published, "pad": PAYLOAD})
        largest_backlog = max([largest_backlog, *hub.backlog_bytes])
        # The reader (in this process) keeps up before the next event; the stalled socket does not.
        while sum(kind == "metrics" for kind, _ in received) < published:
            progress.clear()
            await asyncio.wait_for(progress.wait(), 10)

    try:
        while hub.disconnected == 0:
            assert published < 5000, "the never-reading client was never dropped"
            await publish_one()
        assert hub.subscribers == 1  # the reader is still subscribed
        # The server's per-client backlog never held much more than the bound (one event more).
        assert largest_backlog <= BOUND + len(PAYLOAD) + 100
        # The server aborts the connection once it has taken nothing for the stall time (1 s
        # here), before the client reads anything: one connection left, the reader's.
        await eventually(lambda: len(server.server_state.connections) == 1)
        taken = await asyncio.to_thread(read_until_closed, stalled, 15)
        assert taken.startswith(b"HTTP/1.1 200")
        dropped_at = published
        for _ in range(20):  # the reader goes on receiving
            await publish_one()
    finally:
        stalled.close()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    numbers = [json.loads(data)["n"] for kind, data in received if kind == "metrics"]
    assert numbers == list(range(1, published + 1))  # every event, in order, none twice
    assert published == dropped_at + 20
    assert received[0] == ("resync", '{"dropped": 0, "reason": "connected"}')
    assert [kind for kind, _ in received].count("resync") == 1
    assert hub.dropped == 0 and hub.disconnected == 1


async def test_a_client_that_reconnects_gets_a_resync_first(served: tuple[str, EventHub, Any]) -> None:
    base, hub, _ = served
    async with (
        httpx.AsyncClient(timeout=30) as client,
        client.stream("GET", f"{base}/api/events") as stream,
    ):
        first = await stream.aiter_bytes().__anext__()
        hub.publish("metrics", {"n": 1})
    assert sse_events(first)[0] == ("resync", '{"dropped": 0, "reason": "connected"}')


async def test_a_client_with_data_waiting_past_the_stall_time_is_dropped_and_its_stream_ends() -> None:
    now = [0.0]
    hub = EventHub(stall_seconds=30, clock=lambda: now[0])
    reading = hub.subscribe()
    stalled = hub.subscribe()
    first: Any = asyncio.ensure_future(reading.__anext__())
    stuck: Any = asyncio.ensure_future(stalled.__anext__())
    await eventually(lambda: hub.subscribers == 2)
    hub.publish("metrics", {"n": 1})
    assert sse_events(await first) == [("metrics", '{"n": 1}')]
    assert sse_events(await stuck) == [("metrics", '{"n": 1}')]  # taken, then never again
    for n in range(2, 5):  # the reader takes each event; the other has them waiting from t=10
        now[0] = 10.0 * (n - 1)
        hub.publish("metrics", {"n": n})
        assert sse_events(await reading.__anext__()) == [("metrics", f'{{"n": {n}}}')]
    assert hub.subscribers == 2 and hub.backlog_bytes.count(0) == 1
    now[0] = 40.0  # 30 s after its data started waiting
    hub.publish("metrics", {"n": 5})
    assert hub.subscribers == 1 and hub.disconnected == 1
    assert sse_events(await reading.__anext__()) == [("metrics", '{"n": 5}')]
    with pytest.raises(StopAsyncIteration):  # its stream ends: the server closes the response
        await stalled.__anext__()
    await reading.aclose()


async def test_metrics_count_the_event_loops_tasks(served: tuple[str, EventHub, Any]) -> None:
    """What the soak benchmark samples to see a task leak."""
    base, _, _ = served
    async with httpx.AsyncClient(timeout=30) as client:
        text = (await client.get(f"{base}/metrics")).text
    (line,) = [x for x in text.splitlines() if x.startswith("cml_monitor_asyncio_tasks ")]
    assert float(line.split()[1]) >= 2  # at least this request's and uvicorn's serving task
