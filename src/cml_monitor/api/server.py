"""Run the app under uvicorn with a graceful stop on SIGTERM/SIGINT and exit code 0.

uvicorn re-raises the signal it caught once it has shut down, so a supervised `serve` would
end "killed by SIGTERM". We catch the signals ourselves: uvicorn stops accepting, the lifespan
stops the scheduler (the collection in flight ends or is cancelled cleanly) and closes the
clients and the database, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Generator
from typing import Any

import uvicorn

from .http_limits import HttpLimits, limited_protocol
from .stalled_clients import STALL_SECONDS, stalled_client_protocol


class GracefulServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def build_server(
    app: Any,
    host: str,
    port: int,
    log_level: str = "info",
    limits: HttpLimits | None = None,
    *,
    stall_seconds: float = STALL_SECONDS,
) -> GracefulServer:
    """uvicorn on h11 with read deadlines and a connection cap, aborting connections whose
    client took no data for `stall_seconds`."""
    limits = limits or HttpLimits()
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level.lower(),
        lifespan="on",
        timeout_graceful_shutdown=10,
        log_config=None,
        http=limited_protocol(limits, stalled_client_protocol(stall_seconds)),
        limit_concurrency=limits.max_connections + 1,  # ours refuses beyond the cap; not at it
    )
    return GracefulServer(config)


def run_server(
    app: Any, host: str, port: int, log_level: str = "info", limits: HttpLimits | None = None
) -> int:
    """Serve until SIGTERM/SIGINT; 0 after a clean stop, 1 if the server could not start."""
    server = build_server(app, host, port, log_level, limits)
    asyncio.run(server.serve())
    return 0 if server.started else 1
