"""Read deadlines and a connection cap for `serve`, so half-open connections cannot pile up.

uvicorn closes an idle keep-alive connection, but gives a client all the time in the world to
send a request's headers or body: a thousand clients sending one header byte a minute hold a
thousand sockets forever (slowloris). `limited_protocol` is uvicorn's h11 protocol with two
deadlines — the request headers must arrive within `header_timeout` seconds of the connection
(or of the first byte of a keep-alive connection's next request), the body within
`body_timeout` seconds of the headers — and a cap: a connection beyond `max_connections` open
ones is answered 503 and closed at once, before it reads anything. A deadline missed closes the
connection. An answer in progress (a slow client reading a long SSE stream) is not bounded:
only what the client sends is.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger(__name__)

REFUSED = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"


@dataclass(frozen=True, slots=True)
class HttpLimits:
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 1000


def limited_protocol(limits: HttpLimits, base: type[H11Protocol] = H11Protocol) -> type[H11Protocol]:
    """uvicorn's h11 protocol class (or `base`, one derived from it), with `limits` applied
    (pass it as `Config(http=...)`)."""

    class LimitedH11Protocol(base):  # type: ignore[valid-type,misc]
        _deadline: asyncio.TimerHandle | None = None
        _waiting_for: str | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > limits.max_connections:
                logger.warning("Refused a connection: %d are open already", limits.max_connections)
                transport.write(REFUSED)
                transport.close()
                return
            self._expect("headers")

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            state = self.conn.their_state
            if state is h11.IDLE:  # part of a request's headers (a keep-alive connection's next)
                if self._waiting_for != "headers":
                    self._expect("headers")
            elif state is h11.SEND_BODY:
                if self._waiting_for != "body":
                    self._expect("body")
            else:  # the whole request is in (or the connection is ending): nothing to wait for
                self._cancel()

        def _expect(self, what: str) -> None:
            self._cancel()
            timeout = limits.header_timeout if what == "headers" else limits.body_timeout
            self._waiting_for = what
            self._deadline = self.loop.call_later(timeout, self._expired, what, timeout)

        def _cancel(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline, self._waiting_for = None, None

        def _expired(self, what: str, timeout: float) -> None:
            self._deadline, self._waiting_for = None, None
            if not self.transport.is_closing():
                logger.info(
                    "Closed a connection from %s: no complete request %s within %g s",
                    self.client,
                    what,
                    timeout,
                )
                self.transport.close()

    return LimitedH11Protocol
