"""`CMLWorkerRepository`: the registry of workers and their metric history.

One code path for SQLite and PostgreSQL. Reads of many workers and the writes of a whole
collection cycle are set-based (a few statements in one transaction), because a cycle touches
every worker of the fleet at once.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Boolean, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from cml_monitor.domain import MetricSample, Worker, WorkerStatus

from .database import StorageError
from .rows import RejectListener, reason, refused, write_each
from .tables import UTCDateTime, alerts, worker_metrics, workers

logger = logging.getLogger(__name__)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# SQLite allows 32,766 bound parameters per statement; stay far below it.
_IN_CHUNK = 900
# What a collection cycle owns: it never writes back name, URL or thresholds, so an API edit
# made while a cycle runs is not undone by it.
_COLLECTED_FIELDS = (
    "status",
    "ec2_instance_state",
    "ec2_system_status_check",
    "ec2_instance_status_check",
    "cpu_utilization",
    "memory_utilization",
    "active_labs_count",
    "last_activity_at",
    "last_collected_at",
    "status_changed_at",
    "cml",
    "ec2_scheduled_events",
    "idle",
    "impaired_samples",
    "metrics_source",
    "updated_at",
)


class DuplicateWorkerError(StorageError):
    """The EC2 instance is already registered as another worker."""


def _to_worker(row: Any) -> Worker:
    return Worker.from_record(row._mapping)


def _chunks(items: Sequence[str], size: int = _IN_CHUNK) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class CMLWorkerRepository:
    """Workers and metric history, over an async SQLAlchemy engine."""

    def __init__(self, engine: AsyncEngine, *, on_rejected: RejectListener | None = None) -> None:
        self._engine = engine
        self._on_rejected = on_rejected  # told the table of each row the database refused

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    async def get_by_id_async(self, worker_id: str) -> Worker | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(workers).where(workers.c.id == worker_id))).first()
        return _to_worker(row) if row else None

    async def get_by_instance_id_async(self, aws_instance_id: str) -> Worker | None:
        query = select(workers).where(workers.c.aws_instance_id == aws_instance_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _to_worker(row) if row else None

    async def get_many_async(self, worker_ids: Sequence[str]) -> dict[str, Worker]:
        found: dict[str, Worker] = {}
        async with self._engine.connect() as conn:
            for chunk in _chunks(list(dict.fromkeys(worker_ids))):
                result = await conn.execute(select(workers).where(workers.c.id.in_(chunk)))
                for row in result:
                    found[row.id] = _to_worker(row)
        return found

    async def list_async(
        self,
        *,
        status: WorkerStatus | str | None = None,
        aws_region: str | None = None,
        q: str | None = None,
        alerting: bool | None = None,
        problem: bool | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[Worker], int]:
        """A page of workers (oldest first, then by id, so pages are stable) and the total.

        `q` matches name, instance id or region (contains, any case); `alerting` keeps the
        workers with (or without) a firing alert; `problem` those that need a look (see
        `Worker.has_problem`), decided here in Python because it reads the controller's JSON.
        """
        conditions: list[Any] = []
        if status is not None:
            conditions.append(workers.c.status == str(status))
        if aws_region is not None:
            conditions.append(workers.c.aws_region == aws_region)
        if q:
            pattern = "%" + q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            conditions.append(
                or_(
                    *(
                        func.lower(column).like(pattern, escape="\\")
                        for column in (workers.c.name, workers.c.aws_instance_id, workers.c.aws_region)
                    )
                )
            )
        firing = select(alerts.c.worker_id).where(alerts.c.state == "firing")
        if alerting is not None:
            conditions.append(workers.c.id.in_(firing) if alerting else workers.c.id.not_in(firing))
        ordered = select(workers).where(*conditions).order_by(workers.c.created_at, workers.c.id)
        if problem is not None:
            async with self._engine.connect() as conn:
                alerting_ids = {row.worker_id for row in await conn.execute(firing)}
                rows = (await conn.execute(ordered)).all()
            matching = [w for w in map(_to_worker, rows) if w.has_problem(w.id in alerting_ids) is problem]
            return matching[offset : offset + limit], len(matching)
        count = select(func.count()).select_from(workers).where(*conditions)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(ordered.limit(limit).offset(offset))).all()
            total = (await conn.execute(count)).scalar_one()
        return [_to_worker(row) for row in rows], int(total)

    async def regions_async(self) -> set[str]:
        """The regions that have a registered worker."""
        async with self._engine.connect() as conn:
            return {row.aws_region for row in await conn.execute(select(workers.c.aws_region).distinct())}

    async def get_by_instance_ids_async(self, instance_ids: Sequence[str]) -> dict[str, Worker]:
        """The registered workers among these instances, by instance id."""
        found: dict[str, Worker] = {}
        async with self._engine.connect() as conn:
            for chunk in _chunks(list(dict.fromkeys(instance_ids))):
                query = select(workers).where(workers.c.aws_instance_id.in_(chunk))
                for row in await conn.execute(query):
                    found[row.aws_instance_id] = _to_worker(row)
        return found

    async def list_forgettable_async(self, terminated_before: datetime) -> list[Worker]:
        """Discovered workers terminated before this instant: discovery removes them."""
        query = select(workers).where(
            workers.c.discovered_at.is_not(None),
            workers.c.status == WorkerStatus.TERMINATED.value,
            func.coalesce(workers.c.status_changed_at, workers.c.updated_at) <= terminated_before,
        )
        async with self._engine.connect() as conn:
            return [_to_worker(row) for row in await conn.execute(query)]

    async def list_monitorable_async(self, aws_region: str | None = None) -> list[tuple[str, str]]:
        """(id, region) of every worker that is not terminated, optionally in one region."""
        query = select(workers.c.id, workers.c.aws_region).where(
            workers.c.status != WorkerStatus.TERMINATED.value
        )
        if aws_region is not None:
            query = query.where(workers.c.aws_region == aws_region)
        async with self._engine.connect() as conn:
            return [(row.id, row.aws_region) for row in await conn.execute(query)]

    async def add_async(self, worker: Worker) -> Worker:
        try:
            async with self._engine.begin() as conn:
                await conn.execute(insert(workers).values(**worker.to_record()))
        except IntegrityError as exc:
            raise DuplicateWorkerError(f"instance {worker.aws_instance_id} is already registered") from exc
        return worker

    async def update_async(self, worker: Worker) -> None:
        record = worker.to_record()
        record.pop("id")
        async with self._engine.begin() as conn:
            await conn.execute(update(workers).where(workers.c.id == worker.id).values(**record))

    async def remove_async(self, worker_id: str) -> bool:
        """Delete the worker and its history in one transaction; False if it was not there."""
        async with self._engine.begin() as conn:
            await conn.execute(delete(worker_metrics).where(worker_metrics.c.worker_id == worker_id))
            result = await conn.execute(delete(workers).where(workers.c.id == worker_id))
        return bool(result.rowcount)

    async def save_collection_async(
        self,
        updated: Sequence[Worker],
        samples: Sequence[MetricSample],
        seen: Mapping[str, str] | None = None,
        collected_before: Mapping[str, datetime | None] | None = None,
    ) -> set[str]:
        """Write a whole collection cycle (worker rows and history) in one transaction.

        Returns the ids actually written. The UPDATE is an executemany keyed by id and fenced
        by time: a worker deleted while the cycle ran is not written back, and neither is one
        that a newer collection already saved (a replica that was frozen past its lease and
        wakes up must not write its old cycle over a newer one). With `seen` and
        `collected_before` (each worker's status and `last_collected_at` when the cycle loaded
        it), neither is one whose status an EC2 event changed meanwhile: that change was told
        already, and the next cycle reconciles. History
        rows follow the workers that were written.

        When the database refuses a value of one worker (see `rows`), the cycle is written
        again worker by worker: only that worker's row and history are dropped (logged,
        counted), the others are written.
        """
        if not updated and not samples:
            return set()
        try:
            return await self._save_cycle(updated, samples, seen, collected_before)
        except SQLAlchemyError as exc:
            if not refused(exc):
                raise StorageError(f"could not save the collection cycle: {exc}") from exc
            logger.warning("The database refused part of a cycle (%s); writing worker by worker", reason(exc))
        by_worker: dict[str, list[MetricSample]] = defaultdict(list)
        for sample in samples:
            by_worker[sample.worker_id].append(sample)
        groups: list[tuple[list[Worker], list[MetricSample]]]
        groups = [([w], by_worker.pop(w.id, [])) for w in updated]
        groups += [([], rows) for rows in by_worker.values()]  # history of workers outside the cycle
        try:
            results = await write_each(
                groups,
                lambda group: self._save_cycle(group[0], group[1], seen, collected_before),
                what=lambda group: f"worker {group[0][0].id if group[0] else group[1][0].worker_id}",
                table="workers",
                on_rejected=self._on_rejected,
            )
        except SQLAlchemyError as exc:
            raise StorageError(f"could not save the collection cycle: {exc}") from exc
        return set().union(*results)

    async def _save_cycle(
        self,
        updated: Sequence[Worker],
        samples: Sequence[MetricSample],
        seen: Mapping[str, str] | None,
        collected_before: Mapping[str, datetime | None] | None,
    ) -> set[str]:
        """The cycle's rows in one transaction (SQLAlchemy's error goes up as it is)."""
        statement = (
            update(workers)
            .where(
                workers.c.id == bindparam("_id"),
                or_(workers.c.last_collected_at.is_(None), workers.c.last_collected_at < bindparam("_fence")),
                # Refused only when the status moved while no collection was saved: an EC2 event
                # did it, and told it; a newer collection's write is judged by the time fence.
                or_(
                    bindparam("_any_status", type_=Boolean),
                    workers.c.status == bindparam("_seen"),
                    func.coalesce(workers.c.last_collected_at, _EPOCH)
                    != func.coalesce(bindparam("_seen_collected", type_=UTCDateTime), _EPOCH),
                ),
            )
            .values({name: bindparam(name) for name in _COLLECTED_FIELDS})
        )
        params = []
        loaded_at = dict(collected_before or {})
        for worker in updated:
            full = worker.to_record()
            record = {name: full[name] for name in _COLLECTED_FIELDS}
            record["_id"] = worker.id
            record["_fence"] = worker.last_collected_at
            record["_any_status"] = seen is None or worker.id not in seen
            record["_seen"] = None if seen is None else seen.get(worker.id)
            record["_seen_collected"] = loaded_at.get(worker.id)
            params.append(record)
        expected = {w.id: w.last_collected_at for w in updated}
        async with self._engine.begin() as conn:
            if params:
                await conn.execute(statement, params)
            written: set[str] = set()
            present: set[str] = set()  # history of workers outside this cycle (imports, tests)
            for chunk in _chunks(list(set(expected) | {s.worker_id for s in samples})):
                query = select(workers.c.id, workers.c.last_collected_at).where(workers.c.id.in_(chunk))
                for row in await conn.execute(query):
                    if row.id not in expected:
                        present.add(row.id)
                    elif row.last_collected_at == expected[row.id]:
                        written.add(row.id)
            rows = [s.to_record() for s in samples if s.worker_id in written or s.worker_id in present]
            if rows:
                await conn.execute(insert(worker_metrics), rows)
        return written

    async def apply_state_change_async(self, worker: Worker, fence: datetime, expected_status: str) -> bool:
        """Write a state change EC2 announced, unless the worker already shows something newer.

        Fenced in the database: nothing is written when a collection or another event at or
        after `fence` is already recorded, or when the status is no longer `expected_status` (a
        collection or a replica wrote meanwhile), so a stale event changes nothing and nothing
        is told twice, whatever the number of replicas.
        """
        statement = (
            update(workers)
            .where(
                workers.c.id == worker.id,
                workers.c.status == expected_status,
                or_(workers.c.last_collected_at.is_(None), workers.c.last_collected_at < fence),
                or_(workers.c.status_changed_at.is_(None), workers.c.status_changed_at < fence),
            )
            .values(
                status=worker.status.value,
                ec2_instance_state=worker.ec2_instance_state,
                status_changed_at=worker.status_changed_at,
                updated_at=worker.updated_at,
            )
        )
        async with self._engine.begin() as conn:
            result = await conn.execute(statement)
        return bool(result.rowcount)

    async def list_metrics_async(
        self,
        worker_id: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 10_000,
    ) -> list[MetricSample]:
        """History of one worker, oldest first."""
        conditions = [worker_metrics.c.worker_id == worker_id]
        if since is not None:
            conditions.append(worker_metrics.c.timestamp >= since)
        if until is not None:
            conditions.append(worker_metrics.c.timestamp <= until)
        query = (
            select(worker_metrics).where(*conditions).order_by(worker_metrics.c.timestamp.desc()).limit(limit)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            MetricSample(
                worker_id=row.worker_id,
                timestamp=row.timestamp,
                status=row.status,
                cpu_utilization=row.cpu_utilization,
                memory_utilization=row.memory_utilization,
                active_labs_count=row.active_labs_count,
                running_nodes=row.running_nodes,
                disk_used_percent=row.disk_used_percent,
            )
            for row in reversed(rows)
        ]
