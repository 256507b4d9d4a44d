"""Serve an ASGI app on loopback in a background thread (for the simulator, tests and benches)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn

from .tls import SelfSignedCertificate


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class ThreadedServer:
    """uvicorn in a daemon thread; `start()` returns once the socket accepts connections."""

    def __init__(
        self,
        app: Callable[..., Any],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        lifespan: str = "off",
        tls: SelfSignedCertificate | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.tls = tls  # HTTPS with this certificate, as a CML controller serves
        self._server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=host,
                port=self.port,
                log_level="warning",
                lifespan=lifespan,
                log_config=None,
                access_log=False,
                # A request held open on purpose (a "hung" controller) must not hold the stop.
                timeout_graceful_shutdown=1,
                ssl_certfile=str(tls.certfile) if tls else None,
                ssl_keyfile=str(tls.keyfile) if tls else None,
            )
        )
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def start(self, timeout: float = 10.0) -> ThreadedServer:
        self._thread = threading.Thread(target=self._server.run, name=f"server-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"server on port {self.port} did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
