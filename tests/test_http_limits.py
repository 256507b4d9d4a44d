"""`serve` drops half-open connections and refuses connections beyond its cap (a real process,
raw sockets on loopback)."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cml_fleet_sim.serving import free_port

from .processes import spawn_cli, stop, wait_until

HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
CAP = 3


def read_all(sock: socket.socket, deadline: float = 15.0) -> bytes:
    """Everything the server sends until it closes the connection (fails after `deadline`)."""
    sock.settimeout(deadline)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def request(port: int, raw: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    if raw:
        sock.sendall(raw)
    return sock


@pytest.fixture
def served(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'limits.db'}",
        "WORKER_MONITORING_ENABLED": "false",
        "CML_MONITOR_PORT": str(port),
        "CML_MONITOR_HTTP_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
        "CML_MONITOR_HTTP_BODY_TIMEOUT": str(BODY_TIMEOUT),
        "CML_MONITOR_HTTP_MAX_CONNECTIONS": str(CAP),
    }
    process = spawn_cli(["serve"], env, tmp_path, quiet=True)

    def healthy() -> bool:
        # The server closes a `connection: close` exchange itself: none of ours is left open.
        try:
            answer = read_all(request(port, b"GET /health HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n"))
        except OSError:
            return False
        return answer.startswith(b"HTTP/1.1 200")

    try:
        wait_until(healthy)
        yield port
    finally:
        stop(process, signal.SIGTERM)


def test_half_open_connections_are_dropped_and_those_beyond_the_cap_refused(served: int) -> None:
    opened = time.monotonic()
    half_open = [request(served, b"GET /health HTTP/1.1\r\nhost: t\r\n") for _ in range(CAP)]  # no blank line
    beyond = request(served, b"")
    assert read_all(beyond).startswith(b"HTTP/1.1 503")  # at once, before it sent anything
    for sock in half_open:
        assert read_all(sock) == b""  # closed without an answer...
    assert time.monotonic() - opened >= HEADER_TIMEOUT * 0.9  # ...once the header deadline passed
    fresh = request(served, b"GET /health HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
    assert read_all(fresh).startswith(b"HTTP/1.1 200")  # the slots are free again


def test_a_body_that_stops_coming_is_dropped_after_the_body_timeout(served: int) -> None:
    started = time.monotonic()
    slow = request(
        served,
        b"POST /api/workers HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
        b"content-length: 200\r\n\r\n{",
    )
    answer = read_all(slow)
    assert not answer.startswith(b"HTTP/1.1 201")  # never registered
    assert time.monotonic() - started >= BODY_TIMEOUT * 0.9
    # A whole request in time still works on a keep-alive connection, and its next request's
    # headers are held to the deadline too.
    alive = request(served, b"GET /health HTTP/1.1\r\nhost: t\r\n\r\n")
    alive.settimeout(10)
    first = b""
    while not first.endswith(b'{"status":"ok"}'):
        first += alive.recv(65536) or b"(closed)"
    assert first.startswith(b"HTTP/1.1 200")
    alive.sendall(b"GET /health HTTP/1.1\r\n")
    assert read_all(alive) == b""
