"""uvicorn's HTTP protocol, aborting a connection whose client has taken no data for too long.

A client that stops reading (a live stream left open by a sleeping laptop, a script that never
reads) fills its socket, then uvicorn's write buffer, and the response waits on it for ever:
the connection, its buffer and whatever the response holds stay for as long as the client keeps
the socket open. Closing is not enough: asyncio's `close()` first flushes what is buffered,
which a client that does not read never lets happen. So once the transport has had writes
paused (its buffer over the high-water mark) for `stall_seconds` without the client taking
enough to resume them, the connection is aborted; the response sees a disconnect and ends.
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger(__name__)

STALL_SECONDS = 30.0


class StalledClientAbortingProtocol(H11Protocol):
    """`H11Protocol` that aborts connections whose writes stayed paused for `stall_seconds`."""

    stall_seconds = STALL_SECONDS
    _stall_timer: asyncio.TimerHandle | None = None

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stall_timer is None:
            self._stall_timer = asyncio.get_running_loop().call_later(self.stall_seconds, self._abort_stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._cancel_stall_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_stall_timer()
        super().connection_lost(exc)

    def _cancel_stall_timer(self) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    def _abort_stalled(self) -> None:
        self._stall_timer = None
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        logger.warning("Disconnected %s: it took no data for %.0f s", client, self.stall_seconds)
        self.transport.abort()


def stalled_client_protocol(stall_seconds: float) -> type[StalledClientAbortingProtocol]:
    """The protocol class uvicorn builds connections with (it takes a class, not an instance)."""
    return type(
        "StalledClientAbortingProtocol",
        (StalledClientAbortingProtocol,),
        {"stall_seconds": stall_seconds},
    )
