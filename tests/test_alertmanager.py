"""The Alertmanager channel against Debian's real `prometheus-alertmanager`, two of them.

An alert that fires becomes active in every Alertmanager with our labels, annotations and
link; re-posting keeps it there; its resolution ends it. Plus the links every other channel
carries when `CML_MONITOR_PUBLIC_URL` is set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from cml_fleet_sim.simulator import FleetSimulator
from cml_monitor.alerts.alertmanager_refresh import AlertmanagerRefresher
from cml_monitor.alerts.links import Links
from cml_monitor.alerts.notifiers import AlertmanagerNotifier
from cml_monitor.domain import Alert, AlertKind, AlertState, WorkerRef

from .helpers import Receiver, eventually
from .prometheus_tools import alertmanager

PUBLIC = "https://monitor.example.test"


def _ours(base: str) -> list[dict[str, Any]]:
    alerts = httpx.get(f"{base}/api/v2/alerts", timeout=5).json()
    return [a for a in alerts if a["labels"].get("alertname", "").startswith("cml_monitor_")]


async def test_alerts_become_active_then_resolved_in_every_alertmanager(
    sim: FleetSimulator,
    make_app: Callable[..., Any],
    tmp_path: Path,
) -> None:
    (instance,) = sim.add_workers(1, with_controllers=False)
    with alertmanager(tmp_path / "am1") as first, alertmanager(tmp_path / "am2") as second:
        app = await make_app(
            worker_notification_alertmanager_urls=f"{first},{second}/",
            cml_monitor_public_url=PUBLIC + "/",
            worker_runbook_base_url="https://wiki.example.test/runbooks/",
        )
        worker = await app.register(instance.instance_id)
        sim.fleet.set_metrics(instance.instance_id, cpu=97.5, memory=30.0)
        await app.poll(worker["id"])

        for base in (first, second):
            await eventually(lambda base=base: len(_ours(base)) == 1)
            (alert,) = _ours(base)
            assert alert["status"]["state"] == "active"
            assert alert["labels"] == {
                "alertname": "cml_monitor_cpu",
                "kind": "cpu",
                "severity": "warning",
                "worker": worker["name"],
                "worker_id": worker["id"],
                "instance_id": instance.instance_id,
                "region": "us-east-1",
            }
            assert alert["annotations"]["runbook_url"] == "https://wiki.example.test/runbooks/cpu.md"
            assert "97.5%" in alert["annotations"]["summary"]
            assert alert["annotations"]["description"]
            assert alert["generatorURL"] == f"{PUBLIC}/#/workers/{worker['id']}"
            ends_first = alert["endsAt"]

        refresher = app.runtime.alertmanager_refresher
        assert refresher is not None and await refresher.refresh() == 1  # the re-post while firing
        (again,) = _ours(first)
        assert again["status"]["state"] == "active" and again["endsAt"] >= ends_first

        sim.fleet.set_metrics(instance.instance_id, cpu=10.0, memory=30.0)
        await app.poll(worker["id"])
        for base in (first, second):
            await eventually(lambda base=base: _ours(base) == [])  # Alertmanager lists no ended alert
        assert await refresher.refresh() == 0  # nothing firing: nothing re-posted
        sent = await app.notifications("sent")
        assert sorted((n["channel"], n["event_type"]) for n in sent) == [
            ("alertmanager", "alert.firing"),
            ("alertmanager", "alert.firing"),
            ("alertmanager", "alert.resolved"),
            ("alertmanager", "alert.resolved"),
        ]
        metrics = (await app.client.get("/metrics")).text
        assert 'cml_monitor_notifications_total{channel="alertmanager",result="sent"} 4.0' in metrics


async def test_every_channel_links_the_worker_page_and_the_runbook(
    sim: FleetSimulator,
    receiver: tuple[Receiver, str],
    make_app: Callable[..., Any],
) -> None:
    recording, base = receiver
    (instance,) = sim.add_workers(1, with_controllers=False)
    app = await make_app(
        worker_notification_webhooks=f"{base}/hook",
        slack_webhook_url=f"{base}/slack",
        pagerduty_routing_key="R0UTINGKEY0000000000000000000000",
        pagerduty_events_url=f"{base}/v2/enqueue",
        opsgenie_api_key="genie-key",
        opsgenie_api_url=base,
        cml_monitor_public_url=PUBLIC,
        worker_runbook_base_url="https://wiki.example.test/runbooks",
        worker_notification_group_wait=0,
    )
    worker = await app.register(instance.instance_id)
    sim.fleet.set_metrics(instance.instance_id, cpu=97.5, memory=30.0)
    await app.poll(worker["id"])
    await eventually(lambda: len(recording.requests) == 4)
    page = f"{PUBLIC}/#/workers/{worker['id']}"
    runbook = "https://wiki.example.test/runbooks/cpu.md"

    (hook,) = recording.of("/hook")
    assert hook["json"]["links"] == {"dashboard": page, "runbook": runbook}
    assert hook["json"]["type"] == "alert.firing" and hook["json"]["worker"]["id"] == worker["id"]
    (slack,) = recording.of("/slack")
    context = slack["json"]["blocks"][-1]["elements"][0]["text"]
    assert f"<{page}|Worker page>" in context and f"<{runbook}|Runbook>" in context
    (pagerduty,) = recording.of("/v2/enqueue")
    assert pagerduty["json"]["links"] == [
        {"href": page, "text": "Worker page"},
        {"href": runbook, "text": "Runbook"},
    ]
    (opsgenie,) = recording.of("/v2/alerts")
    assert opsgenie["json"]["details"]["dashboard"] == page
    assert opsgenie["json"]["details"]["runbook"] == runbook


class _ResolvesMidRound:
    """An alert store whose one alert resolves while the re-post is on its way."""

    def __init__(self) -> None:
        now = datetime.now(UTC)
        self.alert = Alert(
            id="a-1",
            worker_id="w-1",
            kind=AlertKind.CPU,
            state=AlertState.FIRING,
            value=97.0,
            threshold=90.0,
            violations=1,
            started_at=now,
            updated_at=now,
            fired_at=now,
            last_notified_at=now,
        )
        self.reads = 0

    async def notified_firing(self) -> list[tuple[Alert, WorkerRef | None]]:
        self.reads += 1
        worker = WorkerRef("w-1", "lab-1", "i-1", "us-east-1")
        return [(self.alert, worker)] if self.reads == 1 else []

    async def get_alert(self, alert_id: str) -> Alert | None:
        now = datetime.now(UTC)
        return replace(self.alert, state=AlertState.RESOLVED, resolved_at=now, value=20.0)

    async def list_silences(self, *, active_at: Any = None) -> list[Any]:
        return []


async def test_a_repost_racing_a_resolution_is_followed_by_the_resolution(
    receiver: tuple[Receiver, str],
) -> None:
    recording, base = receiver
    async with httpx.AsyncClient() as http:
        notifier = AlertmanagerNotifier(http, Links(), refresh=60)
        refresher = AlertmanagerRefresher(_ResolvesMidRound(), notifier, [base])
        assert await refresher.refresh() == 1
    (firing,), (resolved,) = (r["json"] for r in recording.of("/api/v2/alerts"))
    now = datetime.now(UTC)
    assert datetime.fromisoformat(firing["endsAt"].replace("Z", "+00:00")) > now + timedelta(minutes=3)
    assert datetime.fromisoformat(resolved["endsAt"].replace("Z", "+00:00")) <= now
    assert firing["labels"] == resolved["labels"]
    assert "generatorURL" not in firing  # no public URL: no link rather than a wrong one
