"""`AlertStore`: what the alert engine and the dispatcher need of persistence.

Declared here, by the parts that use it, and implemented by `storage` without importing this
package: the dependency points from storage to the domain, never back up to the alerting rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from cml_monitor.domain import Alert, AlertKind, Silence


class AlertStore(Protocol):
    async def active_for_workers(self, worker_ids: Sequence[str]) -> dict[tuple[str, str], Alert]: ...

    async def active_for_regions(self, kind: AlertKind) -> dict[str, Alert]:
        """Open (pending or firing) fleet-level alerts of this kind, by region."""
        ...

    async def apply(
        self,
        inserted: Sequence[Alert],
        updated: Sequence[Alert],
        deleted: Sequence[str],
        outbox: Sequence[dict[str, Any]],
    ) -> None: ...

    async def count_firing(self) -> int: ...

    async def firing(self) -> list[tuple[str | None, str | None, str]]: ...

    async def stale_worker_events(self, cutoff: datetime) -> list[dict[str, Any]]: ...

    async def list_silences(self, *, active_at: datetime | None = None) -> list[Silence]: ...


class OutboxStore(Protocol):
    async def claim_due(
        self, now: datetime, lease_until: datetime, limit: int = 100
    ) -> list[dict[str, Any]]: ...

    async def claim_queued(
        self, channel: str, target: str, now: datetime, lease_until: datetime, *, exclude: Sequence[str] = ()
    ) -> list[dict[str, Any]]: ...

    async def finish(self, notification_id: str, **values: Any) -> None: ...

    async def next_due_at(self) -> datetime | None: ...
