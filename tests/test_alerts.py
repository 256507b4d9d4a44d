"""Alerting end to end: the simulator as AWS, real HTTP receivers on loopback, SQLite outbox."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from cml_fleet_sim.simulator import FleetSimulator
from cml_monitor.alerts.engine import AlertEngine, AlertSettings

from .helpers import Receiver, eventually, metrics_event

SECRET = "s3cret-for-hmac"


# -- webhooks end to end ---------------------------------------------------------------------


async def test_one_firing_one_resolved_signed_and_never_at_every_poll(
    sim: FleetSimulator, receiver: tuple[Receiver, str], make_app: Callable[..., Any]
) -> None:
    recording, base = receiver
    (instance,) = sim.add_workers(1, with_controllers=False)
    app = await make_app(
        worker_notification_webhooks=f"{base}/hook",
        worker_notification_webhook_secret=SECRET,
        worker_alert_hysteresis=10.0,
    )
    worker = await app.register(instance.instance_id)
    sim.fleet.set_metrics(instance.instance_id, cpu=50.0, memory=40.0)
    await app.poll(worker["id"])  # unknown → running is discovery, not a change: no message

    sim.fleet.set_metrics(instance.instance_id, cpu=95.0, memory=40.0)
    for _ in range(3):
        await app.poll(worker["id"])
    sim.fleet.set_metrics(instance.instance_id, cpu=84.0, memory=40.0)  # inside the band (90 - 10)
    await app.poll(worker["id"])
    await eventually(lambda: len(recording.of("/hook")) >= 1)
    assert [a["state"] for a in await app.alerts(kind="cpu")] == ["firing"]

    sim.fleet.set_metrics(instance.instance_id, cpu=20.0, memory=40.0)
    await app.poll(worker["id"])
    await app.poll(worker["id"])
    await eventually(lambda: len(recording.of("/hook")) >= 2)
    await app.runtime.dispatcher.dispatch_due()
    assert len(recording.of("/hook")) == 2
    alert_posts = [r for r in recording.of("/hook") if r["json"]["type"].startswith("alert.")]
    assert [r["json"]["type"] for r in alert_posts] == ["alert.firing", "alert.resolved"]
    firing, resolved = (r["json"] for r in alert_posts)
    assert firing["alert"]["id"] == resolved["alert"]["id"]
    assert firing["alert"]["kind"] == "cpu" and firing["alert"]["value"] == 95.0
    assert firing["alert"]["threshold"] == 90.0 and firing["alert"]["resolved_at"] is None
    assert resolved["alert"]["state"] == "resolved" and resolved["alert"]["resolved_at"]
    assert firing["worker"] == {
        "id": worker["id"],
        "name": worker["name"],
        "aws_instance_id": instance.instance_id,
        "aws_region": "us-east-1",
    }
    for request in alert_posts:
        expected = "sha256=" + hmac.new(SECRET.encode(), request["body"], hashlib.sha256).hexdigest()
        assert request["headers"]["x-cml-monitor-signature"] == expected
    assert len({r["headers"]["x-cml-monitor-delivery"] for r in recording.of("/hook")}) == 2
    assert [a["state"] for a in await app.alerts(kind="cpu")] == ["resolved"]


async def test_a_failing_receiver_gets_the_message_once_with_one_delivery_id(
    sim: FleetSimulator, receiver: tuple[Receiver, str], make_app: Callable[..., Any]
) -> None:
    recording, base = receiver
    recording.script = {"/hook": [(500, {}), (500, {}), (500, {}), (200, {})]}
    (instance,) = sim.add_workers(1, with_controllers=False)
    sim.fleet.set_status_checks(instance.instance_id, system="impaired")
    app = await make_app(worker_notification_webhooks=f"{base}/hook")
    worker = await app.register(instance.instance_id)
    await app.poll(worker["id"])  # status_check fires: one message

    async def sent() -> bool:
        return len(await app.notifications("sent")) == 1

    await eventually(sent, timeout=30)
    assert len(recording.requests) == 4  # three failures, one success, nothing more
    assert len({r["headers"]["x-cml-monitor-delivery"] for r in recording.requests}) == 1
    assert {r["json"]["type"] for r in recording.requests} == {"alert.firing"}
    (notification,) = await app.notifications("sent")
    assert (
        notification["attempts"] == 4
        and notification["id"] == recording.requests[0]["headers"]["x-cml-monitor-delivery"]
    )
    alert = (await app.alerts(state="firing"))[0]
    assert alert["kind"] == "status_check" and alert["severity"] == "critical"


async def test_retry_after_is_respected(
    sim: FleetSimulator, receiver: tuple[Receiver, str], make_app: Callable[..., Any]
) -> None:
    recording, base = receiver
    recording.script = {"/hook": [(429, {"Retry-After": "2"})]}
    (instance,) = sim.add_workers(1, with_controllers=False)
    sim.fleet.set_status_checks(instance.instance_id, instance="impaired")
    app = await make_app(worker_notification_webhooks=f"{base}/hook")
    worker = await app.register(instance.instance_id)
    await app.poll(worker["id"])  # one alert.firing message
    await eventually(lambda: len(recording.requests) >= 2, timeout=15)
    first, second = recording.requests[:2]
    assert first["headers"]["x-cml-monitor-delivery"] == second["headers"]["x-cml-monitor-delivery"]
    assert second["at"] - first["at"] >= 2.0


async def test_dead_letters_are_visible(
    sim: FleetSimulator, receiver: tuple[Receiver, str], make_app: Callable[..., Any]
) -> None:
    recording, base = receiver
    recording.script = {"/always-500": [(500, {})] * 50, "/bad-request": [(400, {})]}
    (instance,) = sim.add_workers(1, with_controllers=False)
    sim.fleet.set_status_checks(instance.instance_id, system="impaired")
    app = await make_app(
        worker_notification_webhooks=f"{base}/always-500,{base}/bad-request",
        worker_notification_max_age=2,
        worker_notification_retry_base=0.05,
        worker_notification_retry_max=0.2,
    )
    worker = await app.register(instance.instance_id)
    await app.poll(worker["id"])

    async def both_failed() -> bool:
        return len(await app.notifications("failed")) == 2

    await eventually(both_failed, timeout=30)
    failed = await app.notifications("failed")
    attempts = sorted(n["attempts"] for n in failed)
    assert attempts[0] == 1 and attempts[1] > 1  # a 400 is not worth retrying; a 500 is, until too old
    assert all(n["last_error"].startswith("HTTP ") for n in failed)
    text = (await app.client.get("/metrics")).text
    assert 'cml_monitor_notifications_total{channel="webhook",result="failed"} 2.0' in text


async def test_slack_pagerduty_and_opsgenie_bodies(
    sim: FleetSimulator, receiver: tuple[Receiver, str], make_app: Callable[..., Any]
) -> None:
    recording, base = receiver
    (instance,) = sim.add_workers(1, with_controllers=False)
    app = await make_app(
        slack_webhook_url=f"{base}/slack",
        pagerduty_routing_key="R0UTINGKEY0000000000000000000000",
        pagerduty_events_url=f"{base}/v2/enqueue",
        opsgenie_api_key="genie-key",
        opsgenie_api_url=base,
    )
    worker = await app.register(instance.instance_id)
    sim.fleet.set_metrics(instance.instance_id, cpu=97.5, memory=30.0)
    await app.poll(worker["id"])
    sim.fleet.set_metrics(instance.instance_id, cpu=10.0, memory=30.0)
    await app.poll(worker["id"])
    await eventually(lambda: len(recording.requests) == 6)  # firing + resolved on each of three
    alert_id = (await app.alerts(kind="cpu"))[0]["id"]

    slack = [r["json"] for r in recording.of("/slack")]
    assert "[FIRING] cpu on" in slack[0]["text"] and "97.5%" in slack[0]["text"]
    assert "[RESOLVED]" in slack[1]["text"]
    for body in slack:
        assert body["blocks"][0]["type"] == "section" and body["blocks"][0]["text"]["type"] == "mrkdwn"
        assert all(len(b["text"]["text"]) <= 3000 for b in body["blocks"] if "text" in b)
        assert all(len(f["text"]) <= 2000 for b in body["blocks"] for f in b.get("fields", []))

    trigger, resolve = (r["json"] for r in recording.of("/v2/enqueue"))
    assert trigger["routing_key"] == "R0UTINGKEY0000000000000000000000"
    assert trigger["event_action"] == "trigger" and trigger["dedup_key"] == alert_id
    payload = trigger["payload"]
    assert payload["severity"] == "warning" and payload["source"] == instance.instance_id
    assert payload["summary"] and len(payload["summary"]) <= 1024
    assert payload["component"] == worker["name"] and payload["class"] == "cpu"
    datetime.fromisoformat(payload["timestamp"].replace("Z", "+00:00"))
    assert resolve == {
        "routing_key": trigger["routing_key"],
        "event_action": "resolve",
        "dedup_key": alert_id,
    }

    created = recording.of("/v2/alerts")[0]
    assert created["headers"]["authorization"] == "GenieKey genie-key"
    body = created["json"]
    assert body["alias"] == alert_id and len(body["message"]) <= 130 and body["priority"] == "P3"
    assert body["source"] == "cml-monitor" and "cpu" in body["tags"]
    assert all(isinstance(v, str) for v in body["details"].values())
    closed = recording.of(f"/v2/alerts/{alert_id}/close")[0]
    assert closed["query"] == "identifierType=alias" and closed["json"]["source"] == "cml-monitor"


async def test_a_silence_suppresses_and_its_expiry_lifts_it(
    sim: FleetSimulator, receiver: tuple[Receiver, str], make_app: Callable[..., Any]
) -> None:
    recording, base = receiver
    (instance,) = sim.add_workers(1, with_controllers=False)
    app = await make_app(worker_notification_webhooks=f"{base}/hook")
    worker = await app.register(instance.instance_id)
    await app.poll(worker["id"])
    ends_at = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    created = await app.client.post(
        "/api/silences",
        json={"worker_id": worker["id"], "kind": "cpu", "ends_at": ends_at, "comment": "load test"},
    )
    assert created.status_code == 201 and created.json()["active"] is True
    silence_id = created.json()["id"]
    sim.fleet.set_metrics(instance.instance_id, cpu=99.0)
    await app.poll(worker["id"])
    await app.poll(worker["id"])
    assert [a["state"] for a in await app.alerts(kind="cpu")] == ["firing"]  # state still moves
    await app.runtime.dispatcher.dispatch_due()
    assert recording.requests == [] and await app.notifications("pending") == []

    assert (await app.client.delete(f"/api/silences/{silence_id}")).status_code == 204
    assert (await app.client.get(f"/api/silences/{silence_id}")).json()["active"] is False
    await app.poll(worker["id"])
    await eventually(lambda: len(recording.requests) == 1)
    assert recording.requests[0]["json"]["type"] == "alert.firing"


async def test_silence_and_ack_validation(sim: FleetSimulator, make_app: Callable[..., Any]) -> None:
    app = await make_app()
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    future = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    for body, field in (
        ({"ends_at": past, "comment": "x"}, "ends_at"),
        ({"ends_at": future, "comment": ""}, "comment"),
        ({"ends_at": future, "comment": "x", "kind": "diskspace"}, "kind"),
        (
            {"ends_at": future, "comment": "x", "worker_id": "3f1b8a7e-0000-4000-8000-000000000000"},
            "worker_id",
        ),
        ({"ends_at": "2030-01-01T00:00:00", "comment": "x"}, "ends_at"),
    ):
        response = await app.client.post("/api/silences", json=body)
        assert response.status_code == 422, body
        assert field in [str(d["loc"][-1]) for d in response.json()["detail"]]
    assert (await app.client.get("/api/silences/nope")).status_code == 404
    assert (await app.client.delete("/api/silences/3f1b8a7e-0000-4000-8000-000000000000")).status_code == 404
    assert (await app.client.post("/api/alerts/3f1b8a7e-0000-4000-8000-000000000000/ack")).status_code == 404
    assert (await app.client.get("/api/alerts", params={"state": "exploded"})).status_code == 422


async def test_acknowledged_alerts_are_not_repeated(
    sim: FleetSimulator, receiver: tuple[Receiver, str], make_app: Callable[..., Any]
) -> None:
    recording, base = receiver
    (instance,) = sim.add_workers(1, with_controllers=False)
    app = await make_app(worker_notification_webhooks=f"{base}/hook", worker_alert_repeat_interval=60)
    worker = await app.register(instance.instance_id)
    sim.fleet.set_metrics(instance.instance_id, cpu=99.0)
    await app.poll(worker["id"])
    alert = (await app.alerts(kind="cpu"))[0]
    acked = await app.client.post(f"/api/alerts/{alert['id']}/ack", json={"comment": "on it"})
    assert acked.status_code == 200 and acked.json()["acknowledged_comment"] == "on it"
    later = AlertEngine(
        app.runtime.alert_store,
        app.runtime.alert_engine.channels,
        AlertSettings(repeat_interval=timedelta(seconds=60)),
        clock=lambda: datetime.now(UTC) + timedelta(hours=1),
    )
    await later.observe([metrics_event(worker["id"], cpu=99.0, at=datetime.now(UTC) + timedelta(hours=1))])
    await app.runtime.dispatcher.dispatch_due()
    await eventually(lambda: len(recording.requests) == 1)  # one firing, no repeat
    assert [r["json"]["type"] for r in recording.requests].count("alert.firing") == 1


async def test_a_stop_behind_our_back_alerts_and_mutes_cpu_but_ours_does_not(
    sim: FleetSimulator, receiver: tuple[Receiver, str], make_app: Callable[..., Any]
) -> None:
    recording, base = receiver
    theirs, ours = sim.add_workers(2, with_controllers=False)
    app = await make_app(worker_notification_webhooks=f"{base}/hook")
    worker = await app.register(theirs.instance_id)
    other = await app.register(ours.instance_id)
    await app.poll(worker["id"])
    await app.poll(other["id"])
    sim.fleet.set_metrics(theirs.instance_id, cpu=99.0)
    sim.fleet.stop(theirs.instance_id, requested=False)
    await app.poll(worker["id"])
    firing = await app.alerts(state="firing")
    assert [(a["kind"], a["worker_id"]) for a in firing] == [("unexpected_stop", worker["id"])]

    stopped = await app.client.post(f"/api/workers/{other['id']}/stop")
    assert stopped.status_code == 202, stopped.text
    assert stopped.json()["result"] == "ok" and stopped.json()["reason"] == "manual"
    assert "stopped" in stopped.json()["detail"]
    await app.poll(other["id"])
    assert [a["worker_id"] for a in await app.alerts(state="firing")] == [worker["id"]]

    sim.fleet.start(theirs.instance_id)
    await app.poll(worker["id"])
    assert [a["state"] for a in await app.alerts(kind="unexpected_stop")] == ["resolved"]
    types = [r["json"]["type"] for r in recording.requests]
    await eventually(lambda: [r["json"]["type"] for r in recording.requests].count("alert.resolved") == 1)
    assert "alert.firing" in types


async def test_unreachable_fires_when_collections_stop_and_resolves_when_they_return(
    sim: FleetSimulator, make_app: Callable[..., Any]
) -> None:
    (instance,) = sim.add_workers(1, with_controllers=False)
    app = await make_app()
    worker = await app.register(instance.instance_id)
    await app.poll(worker["id"])
    future = AlertEngine(
        app.runtime.alert_store,
        [],
        AlertSettings(unreachable_after=timedelta(seconds=900)),
        clock=lambda: datetime.now(UTC) + timedelta(hours=1),
    )
    assert await future.check_unreachable() == 1
    assert [a["kind"] for a in await app.alerts(state="firing")] == ["unreachable"]
    await app.poll(worker["id"])
    assert [a["state"] for a in await app.alerts(kind="unreachable")] == ["resolved"]


async def test_a_receiver_slower_than_the_delivery_timeout_gets_it_again_with_the_same_id(
    sim: FleetSimulator, receiver: tuple[Receiver, str], make_app: Callable[..., Any]
) -> None:
    recording, base = receiver
    recording.stalls = {"/slow": [1.5]}  # the first answer comes after the sender gave up
    (instance,) = sim.add_workers(1, with_controllers=False)
    app = await make_app(
        worker_notification_webhooks=f"{base}/slow",
        worker_notification_timeout=0.5,
        worker_notification_retry_base=0.2,
    )
    worker = await app.register(instance.instance_id)
    sim.fleet.set_metrics(instance.instance_id, cpu=99.0)
    await app.poll(worker["id"])

    async def sent() -> bool:
        return len(await app.notifications("sent")) == 1

    await eventually(sent, timeout=30)
    deliveries = {r["headers"]["x-cml-monitor-delivery"] for r in recording.of("/slow")}
    assert len(recording.of("/slow")) == 2 and len(deliveries) == 1  # a duplicate a receiver can drop
    assert await app.notifications("failed") == []
    assert await app.notifications("pending") == []
