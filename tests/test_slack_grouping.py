"""Slack messages that fire within `WORKER_NOTIFICATION_GROUP_WAIT` arrive as one message, each
worker's messages in order, sent and retried as one unit; other channels stay one per event."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cml_fleet_sim.simulator import FleetSimulator

from .helpers import Receiver, eventually


async def test_alerts_firing_together_make_one_slack_message_retried_as_one(
    sim: FleetSimulator,
    receiver: tuple[Receiver, str],
    make_app: Callable[..., Any],
) -> None:
    recording, base = receiver
    recording.script["/slack"] = [(500, {})]  # the first post fails: the group is retried whole
    instances = sim.add_workers(3, with_controllers=False)
    app = await make_app(
        slack_webhook_url=f"{base}/slack",
        worker_notification_webhooks=f"{base}/hook",
        worker_notification_group_wait=3,
    )
    workers = [await app.register(i.instance_id) for i in instances]
    for instance, worker in zip(instances, workers, strict=True):
        sim.fleet.set_metrics(instance.instance_id, cpu=97.0, memory=30.0)
        await app.poll(worker["id"])
    sim.fleet.set_metrics(instances[0].instance_id, cpu=10.0, memory=30.0)
    await app.poll(workers[0]["id"])  # the first worker's alert resolves within the wait

    await eventually(lambda: len(recording.of("/slack")) == 2)
    first, second = (r["json"] for r in recording.of("/slack"))
    assert first == second  # the retry is the same single message
    assert first["text"].startswith("🚨 4 alerts (3 firing, 1 resolved)")
    lines = first["text"].splitlines()[1:]
    names = [w["name"] for w in workers]
    assert [line.split(" on ")[1].split(":")[0] for line in lines] == [names[0], names[1], names[2], names[0]]
    assert "[FIRING]" in lines[0] and "[RESOLVED]" in lines[3]  # one worker's messages keep their order

    async def all_sent() -> bool:
        return len([n for n in await app.notifications("sent") if n["channel"] == "slack"]) == 4

    await eventually(all_sent)
    slack_rows = [n for n in await app.notifications("sent") if n["channel"] == "slack"]
    assert {n["attempts"] for n in slack_rows} == {2}
    assert len(recording.of("/hook")) == 4  # webhooks: still one post per event
