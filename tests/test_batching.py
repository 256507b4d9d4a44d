import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from cml_monitor.monitoring.batching import BatchLoader
from cml_monitor.monitoring.scheduler import TRIGGER_ANCHOR, AlignedIntervalTrigger


async def test_keys_within_the_window_share_one_call() -> None:
    calls: list[list[int]] = []

    async def batch(keys: list[int]) -> dict[int, int]:
        calls.append(keys)
        return {k: k * 10 for k in keys}

    loader = BatchLoader(batch, window=0.05)

    async def late(key: int) -> int:
        await asyncio.sleep(0.01)
        return await loader.load(key)

    results = await asyncio.gather(loader.load(1), loader.load(2), late(3), loader.load(2))
    assert results == [10, 20, 30, 20]
    assert calls == [[1, 2, 3]]


async def test_a_full_batch_goes_at_once_and_errors_reach_every_caller() -> None:
    calls: list[list[int]] = []

    async def batch(keys: list[int]) -> dict[int, int]:
        calls.append(keys)
        if 99 in keys:
            raise RuntimeError("boom")
        return {k: k for k in keys if k != 5}

    loader = BatchLoader(batch, window=10, max_batch_size=2)
    assert await asyncio.gather(loader.load(1), loader.load(2)) == [1, 2]
    loader2 = BatchLoader(batch, window=0.01)
    outcomes = await asyncio.gather(loader2.load(99), loader2.load(5), return_exceptions=True)
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    with pytest.raises(KeyError):
        await loader2.load(5)


def test_aligned_trigger_snaps_back_to_the_grid() -> None:
    trigger = AlignedIntervalTrigger(seconds=300, start_date=TRIGGER_ANCHOR, timezone=UTC)
    odd = datetime(2026, 11, 25, 10, 3, 17, 412000, tzinfo=UTC)
    assert trigger.get_next_fire_time(odd, odd) == datetime(2026, 11, 25, 10, 5, tzinfo=UTC)
    on_grid = datetime(2026, 11, 25, 10, 5, tzinfo=UTC)
    assert trigger.get_next_fire_time(on_grid, on_grid) == on_grid + timedelta(minutes=5)
