"""The composition root on its own: the whole monitor runs and stops without the web app."""

from __future__ import annotations

import pytest

from cml_monitor.runtime import build_runtime
from cml_monitor.usecases import Conflict, InvalidInput, NotFound

from .conftest import REGION, Moto, make_settings
from .helpers import cpu, eventually


async def test_the_runtime_monitors_without_http_and_unwinds_everything(moto: Moto, sqlite_url: str) -> None:
    (instance,) = moto.run_instances(1)
    cpu(moto, instance, 42.0)
    runtime = build_runtime(make_settings(sqlite_url, moto.url, worker_metrics_poll_interval=300))
    async with runtime:
        assert runtime.scheduler.running
        worker = await runtime.workers.register(name="w", aws_region=REGION, aws_instance_id=instance)
        await eventually(lambda: _collected(runtime, worker.id))
        stored = await runtime.workers.get(worker.id)
        assert stored.cpu_utilization == 42.0
        assert runtime.workers.next_run_at(stored) is not None
        with pytest.raises(Conflict, match="already registered"):
            await runtime.workers.register(name="again", aws_region=REGION, aws_instance_id=instance)
        with pytest.raises(NotFound):
            await runtime.workers.get("not-an-id")
        with pytest.raises(InvalidInput) as invalid:
            await runtime.workers.edit(worker.id, {"name": None})
        assert invalid.value.field == "name"
        checks = {check.name: check.text for check in await runtime.readiness()}
        assert checks == {"database": "ok", "collection": "ok", "job_store": "ok", "schedule": "ok"}
    assert not runtime.scheduler.running
    assert not runtime.background  # every loop it started was stopped


async def _collected(runtime, worker_id: str) -> bool:  # type: ignore[no-untyped-def]
    return (await runtime.repository.get_by_id_async(worker_id)).last_collected_at is not None
