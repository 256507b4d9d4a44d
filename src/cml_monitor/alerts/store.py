"""`AlertStore` and `OutboxStore`: what the alert engine and the dispatcher need of persistence.

Declared here, by the parts that use it, and implemented by `storage` without importing this
package: the dependency points from storage to the domain, never back up to the alerting rules.
Every method raises what the database raises (the callers survive it and retry at their next
run); none swallows a failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from cml_monitor.domain import Alert, AlertKind, OutboxMessage, Silence, WorkerRef


class AlertStore(Protocol):
    async def active_for_workers(self, worker_ids: Sequence[str]) -> dict[tuple[str, str], Alert]:
        """The open (pending or firing) alerts of these workers, keyed by (worker id, kind value).

        At most one open alert per worker and kind exists; resolved alerts are not returned.
        """
        ...

    async def active_for_regions(self, kind: AlertKind) -> dict[str, Alert]:
        """The open (pending or firing) fleet-level alerts of this kind, keyed by region."""
        ...

    async def apply(
        self,
        inserted: Sequence[Alert],
        updated: Sequence[Alert],
        deleted: Sequence[str],
        outbox: Sequence[OutboxMessage],
    ) -> None:
        """Write alert changes and the messages they cause in one transaction: all or nothing.

        `deleted` are alert ids (pending alerts that never fired); each message is stored
        pending, due at its `next_attempt_at` (at once when None). Returns nothing; after it
        returns, everything is durable.
        """
        ...

    async def firing(self) -> list[tuple[str | None, str | None, str]]:
        """Every firing alert as (worker id, worker name, kind): the Prometheus gauges' labels.
        A fleet-level alert has neither worker id nor name."""
        ...

    async def stale_workers(self, cutoff: datetime) -> list[tuple[WorkerRef, datetime | None]]:
        """Workers not terminated whose last successful collection (or, never collected, their
        registration) is older than `cutoff`, each with that last collection (None: never
        collected); in no particular order."""
        ...

    async def list_silences(self, *, active_at: datetime | None = None) -> list[Silence]:
        """Silences, newest first; only those in force at `active_at` when it is given."""
        ...


class OutboxStore(Protocol):
    async def claim_due(self, now: datetime, lease_until: datetime, limit: int = 100) -> list[dict[str, Any]]:
        """Lease up to `limit` pending messages due by `now` until `lease_until`, and return their rows.

        Guarantees per-receiver order: a message is claimed only when no older message for the
        same worker and receiver is still pending. A message leased by another dispatcher is
        not claimed again until its lease runs out (a dispatcher killed mid-send is retried).
        """
        ...

    async def claim_queued(
        self, channel: str, target: str, now: datetime, lease_until: datetime, *, exclude: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """Lease every other pending, unleased message for this receiver, due or not, and return
        their rows (at most 500): for receivers that take a group in one message (Slack).
        `exclude` are ids already in the group."""
        ...

    async def finish(self, notification_id: str, **values: Any) -> None:
        """Record the outcome of one delivery (state, attempts, next attempt, error) and free its lease."""
        ...

    async def next_due_at(self) -> datetime | None:
        """When the earliest pending message is due; None when nothing is pending."""
        ...
