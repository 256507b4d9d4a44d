"""The repository on both databases: the same code path for SQLite and PostgreSQL."""

from datetime import UTC, datetime, timedelta

import pytest

from cml_monitor.domain import Worker, WorkerStatus
from cml_monitor.storage import CMLWorkerRepository, DuplicateWorkerError, MetricSample, migrate

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def _worker(n: int, region: str = "us-east-1", at: datetime = NOW) -> Worker:
    return Worker.register(
        name=f"worker-{n}",
        aws_region=region,
        aws_instance_id=f"i-{n:017x}",
        now=at + timedelta(seconds=n),
        cml_url=f"https://cml-{n}.example" if n % 2 else None,
    )


async def test_add_get_and_round_trip(repository: CMLWorkerRepository) -> None:
    worker = await repository.add_async(_worker(1))
    loaded = await repository.get_by_id_async(worker.id)
    assert loaded is not None
    assert loaded.to_record() == worker.to_record()
    assert loaded.created_at.tzinfo is not None
    assert (await repository.get_by_instance_id_async(worker.aws_instance_id)).id == worker.id
    assert await repository.get_by_id_async("nope") is None


async def test_duplicate_instance_is_refused_and_nothing_changes(repository: CMLWorkerRepository) -> None:
    first = await repository.add_async(_worker(1))
    clone = _worker(1)
    with pytest.raises(DuplicateWorkerError):
        await repository.add_async(clone)
    items, total = await repository.list_async()
    assert total == 1
    assert items[0].id == first.id


async def test_list_filters_and_pages(repository: CMLWorkerRepository) -> None:
    for n in range(5):
        worker = _worker(n, region="eu-west-1" if n < 2 else "us-east-1")
        if n == 4:
            worker.update_ec2_state(
                instance_state="stopped", system_status=None, instance_status=None, now=NOW
            )
        await repository.add_async(worker)
    items, total = await repository.list_async(aws_region="eu-west-1")
    assert total == 2
    assert {w.name for w in items} == {"worker-0", "worker-1"}
    items, total = await repository.list_async(status=WorkerStatus.STOPPED)
    assert [w.name for w in items] == ["worker-4"]
    page, total = await repository.list_async(limit=2, offset=2)
    assert total == 5
    assert [w.name for w in page] == ["worker-2", "worker-3"]


async def test_update_and_remove(repository: CMLWorkerRepository) -> None:
    worker = await repository.add_async(_worker(7))
    worker.edit(name="renamed", cml_url=None, now=NOW)
    await repository.update_async(worker)
    assert (await repository.get_by_id_async(worker.id)).name == "renamed"
    assert await repository.remove_async(worker.id) is True
    assert await repository.remove_async(worker.id) is False
    assert await repository.get_by_id_async(worker.id) is None


async def test_monitorable_ids_leave_out_terminated(repository: CMLWorkerRepository) -> None:
    alive = await repository.add_async(_worker(1))
    dead = _worker(2)
    dead.update_ec2_state(instance_state="terminated", system_status=None, instance_status=None, now=NOW)
    await repository.add_async(dead)
    assert await repository.list_monitorable_async() == [(alive.id, alive.aws_region)]


async def test_save_collection_writes_rows_and_history_in_one_go(repository: CMLWorkerRepository) -> None:
    workers = [await repository.add_async(_worker(n)) for n in range(3)]
    gone = workers.pop()
    await repository.remove_async(gone.id)  # deleted while the cycle ran
    at = NOW + timedelta(minutes=5)
    samples = []
    for worker in [*workers, gone]:
        worker.update_ec2_state(instance_state="running", system_status="ok", instance_status="ok", now=at)
        worker.update_telemetry(cpu_utilization=0.0, memory_utilization=55.5, active_labs_count=2, now=at)
        samples.append(MetricSample(worker.id, at, "running", 0.0, 55.5, 2))
    await repository.save_collection_async([*workers, gone], samples)
    for worker in workers:
        stored = await repository.get_by_id_async(worker.id)
        assert stored.status is WorkerStatus.RUNNING
        assert stored.cpu_utilization == 0.0
        assert stored.memory_utilization == 55.5
        assert stored.last_collected_at == at
        history = await repository.list_metrics_async(worker.id)
        assert [(h.cpu_utilization, h.memory_utilization, h.active_labs_count) for h in history] == [
            (0.0, 55.5, 2)
        ]
    assert await repository.get_by_id_async(gone.id) is None
    assert await repository.list_metrics_async(gone.id) == []


async def test_collection_does_not_undo_a_concurrent_rename(repository: CMLWorkerRepository) -> None:
    worker = await repository.add_async(_worker(1))
    edited = await repository.get_by_id_async(worker.id)
    edited.edit(name="edited", cml_url="https://new.example", now=NOW)
    await repository.update_async(edited)
    worker.update_telemetry(cpu_utilization=12.0, memory_utilization=None, active_labs_count=0, now=NOW)
    await repository.save_collection_async([worker], [])
    stored = await repository.get_by_id_async(worker.id)
    assert (stored.name, stored.cml_url, stored.cpu_utilization) == ("edited", "https://new.example", 12.0)


async def test_migrations_are_idempotent(repository: CMLWorkerRepository) -> None:
    await repository.add_async(_worker(1))
    await migrate(repository.engine)
    assert (await repository.list_async())[1] == 1


async def test_a_stale_cycle_never_overwrites_a_newer_one(repository: CMLWorkerRepository) -> None:
    """A replica frozen past its lease wakes up with an old cycle: it must write nothing."""
    worker = await repository.add_async(_worker(1))
    frozen = await repository.get_by_id_async(worker.id)
    newer = await repository.get_by_id_async(worker.id)
    old_at, new_at = NOW + timedelta(minutes=5), NOW + timedelta(minutes=10)
    newer.update_telemetry(cpu_utilization=20.0, memory_utilization=None, active_labs_count=1, now=new_at)
    assert await repository.save_collection_async(
        [newer], [MetricSample(worker.id, new_at, "unknown", 20.0, None, 1)]
    ) == {worker.id}
    frozen.update_telemetry(cpu_utilization=99.0, memory_utilization=None, active_labs_count=0, now=old_at)
    written = await repository.save_collection_async(
        [frozen], [MetricSample(worker.id, old_at, "unknown", 99.0, None, 0)]
    )
    assert written == set()
    stored = await repository.get_by_id_async(worker.id)
    assert (stored.cpu_utilization, stored.last_collected_at) == (20.0, new_at)
    assert [h.cpu_utilization for h in await repository.list_metrics_async(worker.id)] == [20.0]
