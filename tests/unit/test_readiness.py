"""Readiness as typed checks: the state decides readiness, the text is what `/ready` shows."""

from __future__ import annotations

import asyncio

from cml_monitor.readiness import Check, CheckState, all_healthy, probe


def test_a_degraded_check_is_said_but_not_fatal() -> None:
    degraded = Check.degraded("events_queue", "degraded (polling goes on): AccessDenied")
    assert degraded.text == "degraded (polling goes on): AccessDenied"
    assert all_healthy([Check.ok("database"), Check.disabled("job_store"), degraded])
    assert not all_healthy([Check.ok("database"), Check.failing("scheduler", "stopped")])
    assert [Check.ok("a").text, Check.disabled("b").text] == ["ok", "disabled"]


async def test_a_probe_names_the_failure_and_never_waits_past_its_deadline() -> None:
    async def fails() -> None:
        raise ConnectionRefusedError

    async def hangs() -> None:
        await asyncio.Event().wait()

    async def works() -> None:
        return None

    failed, hung, worked = await asyncio.gather(
        probe("database", fails), probe("job_store", hangs, timeout=0.05), probe("x", works)
    )
    assert (failed.state, failed.text) == (CheckState.FAILING, "unavailable: ConnectionRefusedError")
    assert hung.text == "unavailable: TimeoutError"
    assert worked == Check.ok("x")
