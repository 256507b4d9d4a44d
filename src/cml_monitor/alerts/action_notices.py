"""`ActionNotices`: a `worker.action` notification for every automatic or manual action.

An action is not an alert: it has no state to evaluate, only a message to send. It goes through
the same outbox as alerts (one row per channel that takes more than alerts), so its delivery is
retried and survives a restart like theirs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cml_monitor.clock import Clock
from cml_monitor.domain import Worker
from cml_monitor.domain.actions import Action

from .outbox import Channel, action_payload, outbox_messages
from .store import AlertStore


class ActionNotices:
    def __init__(
        self, store: AlertStore, channels: Sequence[Channel], *, clock: Clock, on_outbox: Callable[[], None]
    ) -> None:
        self._store = store
        self._channels = list(channels)
        self._clock = clock
        self._on_outbox = on_outbox

    async def __call__(self, action: Action, worker: Worker) -> None:
        """Queue the notice of `action` on `worker` for every channel; nothing when none takes it."""
        now = self._clock()
        payload = action_payload(action.to_json(), worker.ref, now)
        messages = outbox_messages(payload, self._channels, alert_id=None, worker_id=worker.id, now=now)
        if messages:
            await self._store.apply([], [], [], messages)
            self._on_outbox()
