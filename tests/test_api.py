"""The REST API through httpx against the app (lifespan running, SQLite, moto over HTTP)."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest

from cml_monitor.api.app import STATIC_DIR
from cml_monitor.live_events import EventHub

from .conftest import REGION, Moto
from .helpers import VALID, cpu, cycle, eventually, memory, register_with_controllers, sse_events


def field_of(response) -> list[str]:  # type: ignore[no-untyped-def]
    detail = response.json()["detail"]
    return [str(item["loc"][-1]) for item in detail]


async def test_register_read_list_and_delete(api_factory, moto: Moto) -> None:  # type: ignore[no-untyped-def]
    api = await api_factory()
    created = await api.client.post("/api/workers", json={**VALID, "cml_url": "https://cml.example:8443"})
    assert created.status_code == 201
    worker = created.json()
    assert created.headers["location"] == f"/api/workers/{worker['id']}"
    assert worker["status"] == "unknown"
    assert worker["monitoring"]["active"] is True
    assert worker["cml_url"] == "https://cml.example:8443"
    for key in ("ec2_instance_state", "cpu_utilization", "memory_utilization", "last_collected_at"):
        assert key in worker

    got = await api.client.get(f"/api/workers/{worker['id']}")
    assert got.status_code == 200 and got.json()["id"] == worker["id"]
    listed = (await api.client.get("/api/workers")).json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == worker["id"]
    jobs = (await api.client.get("/api/monitoring/jobs")).json()["items"]
    assert [j["worker_id"] for j in jobs] == [worker["id"]]

    assert (await api.client.delete(f"/api/workers/{worker['id']}")).status_code == 204
    assert (await api.client.get(f"/api/workers/{worker['id']}")).status_code == 404
    assert (await api.client.delete(f"/api/workers/{worker['id']}")).status_code == 404
    assert (await api.client.get("/api/monitoring/jobs")).json()["items"] == []


async def test_list_filters_and_paging(api_factory) -> None:  # type: ignore[no-untyped-def]
    api = await api_factory()
    for n in range(3):
        region = "eu-west-1" if n == 0 else REGION
        body = {"name": f"w{n}", "aws_region": region, "aws_instance_id": f"i-{n:08x}"}
        assert (await api.client.post("/api/workers", json=body)).status_code == 201
    assert (await api.client.get("/api/workers", params={"aws_region": "eu-west-1"})).json()["total"] == 1
    assert (await api.client.get("/api/workers", params={"status": "running"})).json()["total"] == 0
    page = (await api.client.get("/api/workers", params={"limit": 1, "offset": 1})).json()
    assert page["total"] == 3 and [w["name"] for w in page["items"]] == ["w1"]
    for params, field in (
        ({"limit": 0}, "limit"),
        ({"offset": -1}, "offset"),
        ({"status": "asleep"}, "status"),
    ):
        response = await api.client.get("/api/workers", params=params)
        assert response.status_code == 422
        assert field_of(response) == [field]


async def test_duplicate_instance_is_409_and_changes_nothing(api_factory) -> None:  # type: ignore[no-untyped-def]
    api = await api_factory()
    first = (await api.client.post("/api/workers", json=VALID)).json()
    again = await api.client.post("/api/workers", json={**VALID, "name": "other"})
    assert again.status_code == 409
    assert "aws_instance_id" in again.json()["detail"]
    listed = (await api.client.get("/api/workers")).json()
    assert listed["total"] == 1 and listed["items"][0]["name"] == first["name"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"aws_instance_id": "i-123"}, "aws_instance_id"),
        ({"aws_instance_id": "i-0123456789ABCDEF0"}, "aws_instance_id"),
        ({"aws_instance_id": "vol-01234567"}, "aws_instance_id"),
        ({"aws_region": "mars-north-1"}, "aws_region"),
        ({"name": ""}, "name"),
        ({"name": "x" * 129}, "name"),
        ({"name": "bad\x00name"}, "name"),
        ({"cml_url": "ftp://cml.example"}, "cml_url"),
        ({"cml_url": "not a url"}, "cml_url"),
        ({"surprise": 1}, "surprise"),
    ],
)
async def test_invalid_registration_is_422_naming_the_field(api_factory, change, field) -> None:  # type: ignore[no-untyped-def]
    api = await api_factory()
    response = await api.client.post("/api/workers", json={**VALID, **change})
    assert response.status_code == 422
    assert field in field_of(response)
    assert response.json()["detail"][0]["msg"]
    assert (await api.client.get("/api/workers")).json()["total"] == 0


async def test_missing_field_and_bad_json(api_factory) -> None:  # type: ignore[no-untyped-def]
    api = await api_factory()
    response = await api.client.post("/api/workers", json={"name": "x", "aws_region": REGION})
    assert response.status_code == 422 and field_of(response) == ["aws_instance_id"]
    broken = await api.client.post("/api/workers", content=b"{", headers={"content-type": "application/json"})
    assert broken.status_code == 422


async def test_bodies_over_64_kib_are_413(api_factory) -> None:  # type: ignore[no-untyped-def]
    api = await api_factory()
    big = {**VALID, "name": "x" * (65 * 1024)}
    assert (await api.client.post("/api/workers", json=big)).status_code == 413

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(70):
            yield b"x" * 1024

    streamed = await api.client.post(
        "/api/workers", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    assert (await api.client.get("/api/workers")).json()["total"] == 0


async def test_patch_edits_and_clears(api_factory) -> None:  # type: ignore[no-untyped-def]
    api = await api_factory()
    worker = (await api.client.post("/api/workers", json={**VALID, "cml_url": "https://a.example"})).json()
    url = f"/api/workers/{worker['id']}"
    patched = await api.client.patch(url, json={"name": "renamed", "cpu_threshold": 75})
    assert patched.status_code == 200
    assert (patched.json()["name"], patched.json()["cpu_threshold"], patched.json()["cml_url"]) == (
        "renamed",
        75.0,
        "https://a.example",
    )
    cleared = (await api.client.patch(url, json={"cml_url": None})).json()
    assert cleared["cml_url"] is None and cleared["name"] == "renamed"
    for body, field in (
        ({"name": None}, "name"),
        ({"memory_threshold": 150}, "memory_threshold"),
        ({"id": "x"}, "id"),
    ):
        response = await api.client.patch(url, json=body)
        assert response.status_code == 422 and field in field_of(response)
    assert (await api.client.patch("/api/workers/nope", json={"name": "x"})).status_code == 404
    assert (await api.client.get(url)).json()["name"] == "renamed"


async def test_refresh_collects_and_history_and_alerts_follow(api_factory, moto: Moto) -> None:  # type: ignore[no-untyped-def]
    (instance,) = moto.run_instances(1)
    cpu(moto, instance, 95.0)
    memory(moto, instance, 61.5)
    api = await api_factory(worker_monitoring_enabled=False)
    worker = (await api.client.post("/api/workers", json={**VALID, "aws_instance_id": instance})).json()
    assert worker["monitoring"]["active"] is False
    response = await api.client.post(f"/api/workers/{worker['id']}/refresh")
    assert response.status_code == 202

    async def collected() -> bool:
        data = (await api.client.get(f"/api/workers/{worker['id']}")).json()
        return data["last_collected_at"] is not None

    await eventually(collected)
    data = (await api.client.get(f"/api/workers/{worker['id']}")).json()
    assert (data["status"], data["cpu_utilization"], data["memory_utilization"]) == ("running", 95.0, 61.5)
    history = (await api.client.get(f"/api/workers/{worker['id']}/metrics")).json()["items"]
    assert [(h["status"], h["cpu_utilization"]) for h in history] == [("running", 95.0)]
    later = await api.client.get(
        f"/api/workers/{worker['id']}/metrics",
        params={"since": "2999-01-01T00:00:00Z", "until": "2999-01-01T01:00:00Z"},
    )
    assert later.json()["items"] == []
    naive = await api.client.get(
        f"/api/workers/{worker['id']}/metrics", params={"since": "2026-01-01T00:00:00"}
    )
    assert naive.status_code == 422

    async def alert_recorded() -> bool:
        return bool((await api.client.get("/api/alerts", params={"state": "firing"})).json()["items"])

    await eventually(alert_recorded)
    alerts = (await api.client.get("/api/alerts", params={"state": "firing"})).json()["items"]
    assert [(a["kind"], a["value"], a["threshold"], a["worker_id"]) for a in alerts] == [
        ("cpu", 95.0, 90.0, worker["id"])
    ]
    text = (await api.client.get("/metrics")).text
    assert (
        f'cml_monitor_worker_cpu_utilization_percent{{worker_id="{worker["id"]}",worker_name="lab-1"}} 95.0'
        in text
    )
    assert 'cml_monitor_aws_requests_total{operation="DescribeInstanceStatus",service="ec2"}' in text
    assert "cml_monitor_collection_seconds_count 1.0" in text
    for name in ("cml_monitor_worker_up", "cml_monitor_alerts_firing", "cml_monitor_notifications_total"):
        assert name in text


async def test_import_by_tag(api_factory, moto: Moto) -> None:  # type: ignore[no-untyped-def]
    ec2 = moto.ec2()
    a, b, c = moto.run_instances(3)
    ec2.create_tags(Resources=[a, b], Tags=[{"Key": "Role", "Value": "cml"}])
    ec2.create_tags(Resources=[a], Tags=[{"Key": "Name", "Value": "cml-a"}])
    api = await api_factory()
    assert (await api.client.post("/api/workers", json={**VALID, "aws_instance_id": b})).status_code == 201
    result = await api.client.post(
        "/api/workers/import", json={"aws_region": REGION, "tags": {"Role": "cml"}}
    )
    assert result.status_code == 200
    body = result.json()
    assert [(w["aws_instance_id"], w["name"]) for w in body["imported"]] == [(a, "cml-a")]
    assert body["skipped"] == [{"aws_instance_id": b, "reason": "already registered"}]
    assert c not in {w["aws_instance_id"] for w in (await api.client.get("/api/workers")).json()["items"]}
    again = (
        await api.client.post("/api/workers/import", json={"aws_region": REGION, "tags": {"Role": "cml"}})
    ).json()
    assert again["imported"] == [] and len(again["skipped"]) == 2
    bad = await api.client.post("/api/workers/import", json={"aws_region": REGION, "tags": {}})
    assert bad.status_code == 422 and field_of(bad) == ["tags"]


async def test_auth_matrix(api_factory) -> None:  # type: ignore[no-untyped-def]
    tokens = "admin:adm-token,viewer:view-token"
    admin = await api_factory(token="adm-token", api_tokens=tokens)
    client = admin.client
    assert (await client.post("/api/workers", json=VALID)).status_code == 201
    for headers, expected in (
        ({"Authorization": ""}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": "Basic adm-token"}, 401),
        ({"Authorization": "Bearer view-token"}, 200),
        ({"Authorization": "Bearer adm-token"}, 200),
    ):
        response = await client.get("/api/workers", headers=headers)
        assert response.status_code == expected, headers
        if expected == 401:
            challenge = response.headers["www-authenticate"]
            assert challenge.startswith("Bearer ")
            assert ('error="invalid_token"' in challenge) == headers["Authorization"].startswith("Bearer ")
    viewer = {"Authorization": "Bearer view-token"}
    other = {**VALID, "aws_instance_id": "i-0123456789abcdef1"}
    assert (await client.post("/api/workers", json=other, headers=viewer)).status_code == 403
    assert (await client.get("/api/workers", headers=viewer)).json()["total"] == 1
    for path in ("/health", "/metrics"):
        assert (await client.get(path, headers={"Authorization": ""})).status_code == 200
    events = await client.get("/api/events", headers={"Authorization": ""})
    assert events.status_code == 401  # the live stream needs a token too


async def test_the_dashboard_is_served_with_security_headers(api_factory) -> None:  # type: ignore[no-untyped-def]
    api = await api_factory()
    page = await api.client.get("/")
    policy = page.headers["content-security-policy"]
    assert (
        "script-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy
    )
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["x-frame-options"] == "DENY"
    assert "<script>" not in page.text  # no inline script: the policy can forbid it
    # One entry module; every module it imports, and each of theirs, is served as JavaScript
    # (browsers run a module only then) under the same policy, and preloaded by the page.
    assert re.findall(r"<script[^>]*>", page.text) == ['<script type="module" src="/static/main.js">']
    served, queue = set(), ["main.js"]
    while queue:
        name = queue.pop()
        if name in served:
            continue
        served.add(name)
        script = await api.client.get(f"/static/{name}")
        assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
        assert script.headers["content-security-policy"] == policy
        queue += re.findall(r'\bfrom "\./([\w.]+)"', script.text)
    assert served == {path.name for path in STATIC_DIR.glob("*.js")}  # no file outside the graph
    preloaded = re.findall(r'<link rel="modulepreload" href="/static/([\w.]+)">', page.text)
    assert sorted(preloaded) == sorted(served - {"main.js"})
    assert (await api.client.get("/auth/config")).json() == {"mode": "none", "oidc": None}


async def test_a_live_metrics_event_carries_the_worker_exactly_as_get_answers_it(
    sim: Any, sqlite_url: str, monitor: Any
) -> None:
    """The dashboard's one shape: a `metrics` event's `worker` is `GET /api/workers/{id}`, every
    key and value (controller, scheduled event, idle state, an own threshold, the next run),
    and the event's own fields are still there beside it."""
    app = await monitor(sqlite_url, worker_metrics_poll_interval=86_400)  # no scheduled run meanwhile
    ((instance_id, worker_id),) = (await register_with_controllers(app, sim, 1)).items()
    sim.set_labs(instance_id, running=2, stopped=1)
    sim.schedule_event(instance_id, "system-reboot", in_days=3)
    patched = await app.client.patch(f"/api/workers/{worker_id}", json={"cpu_threshold": 80.0})
    assert patched.status_code == 200
    await eventually(lambda: _collected(app, worker_id))  # the collection registering asked for

    stream = app.runtime.live_events.subscribe()
    as_worker = app.runtime.live_events.subscribe(shape="worker")
    taken = asyncio.ensure_future(stream.__anext__())
    taken_as_worker = asyncio.ensure_future(as_worker.__anext__())
    await asyncio.sleep(0)  # subscribed
    await cycle(app)
    ((kind, data),) = sse_events(await asyncio.wait_for(taken, 5))
    ((worker_kind, worker_data),) = sse_events(await asyncio.wait_for(taken_as_worker, 5))
    await stream.aclose()
    await as_worker.aclose()
    event = json.loads(data)
    answered = await app.worker(worker_id)

    assert kind == worker_kind == "metrics" and event["worker_id"] == worker_id
    assert json.loads(worker_data) == answered  # the dashboard's stream: the worker as GET says it
    assert "worker" not in event  # a script's stream: the event as it always was
    assert answered["monitoring"]["active"] and answered["monitoring"]["next_run_at"]
    assert answered["cml"]["reachable"] and answered["ec2_scheduled_events"]
    assert answered["cpu_threshold"] == 80.0 and answered["active_labs_count"] == 2
    # The fields the event always had, for what reads them (scripts, seed observers).
    assert event["timestamp"] == answered["last_collected_at"]
    assert event["metrics"] == {
        "cpu_utilization": answered["cpu_utilization"],
        "memory_utilization": answered["memory_utilization"],
    }
    assert event["ec2"]["instance_state"] == answered["ec2_instance_state"] == "running"
    assert (event["cml"], event["idle"]) == (answered["cml"], answered["idle"])


async def _collected(app: Any, worker_id: str) -> bool:
    return (await app.worker(worker_id))["last_collected_at"] is not None


async def test_ready_reports_a_dead_job_store(api_factory) -> None:  # type: ignore[no-untyped-def]
    api = await api_factory(background_job_store_url="redis://127.0.0.1:1/0")
    response = await api.client.get("/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "ok"
    assert response.json()["checks"]["job_store"].startswith("unavailable")
    assert (await api.client.get("/health")).status_code == 200
    healthy = await api_factory(worker_monitoring_enabled=False)
    assert (await healthy.client.get("/ready")).status_code == 200


async def test_a_client_that_falls_behind_is_told_to_resync_never_silently_short() -> None:
    hub = EventHub(queue_size=3)
    fast = hub.subscribe()
    slow = hub.subscribe()
    fast_task = asyncio.ensure_future(fast.__anext__())
    slow_task = asyncio.ensure_future(slow.__anext__())
    await asyncio.sleep(0)
    assert hub.subscribers == 2
    hub.publish("metrics", {"n": 1})
    assert sse_events(await fast_task) == [("metrics", '{"n": 1}')]
    assert sse_events(await slow_task) == [("metrics", '{"n": 1}')]
    for n in range(2, 7):
        hub.publish("metrics", {"n": n})
        assert sse_events(await fast.__anext__()) == [("metrics", f'{{"n": {n}}}')]
    received = sse_events(await asyncio.wait_for(slow.__anext__(), 5))  # what queued: one chunk
    assert received == [("resync", '{"dropped": 3}'), ("metrics", '{"n": 5}'), ("metrics", '{"n": 6}')]
    assert hub.dropped == 3
    await fast.aclose()
    await slow.aclose()
    assert hub.subscribers == 0


async def test_a_whole_cycle_of_500_workers_reaches_an_idle_client_and_publishing_yields() -> None:
    from .helpers import make_event

    hub = EventHub()
    stream = hub.subscribe()
    first = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    other = asyncio.ensure_future(ticker())
    await hub.observe([make_event(f"w{n}") for n in range(500)])
    other.cancel()
    assert ticks >= 2  # the loop ran other work while 500 events were fanned out
    received = sse_events(await first)
    while len(received) < 500:
        received += sse_events(await asyncio.wait_for(stream.__anext__(), 5))
    assert {json.loads(data)["worker_id"] for _, data in received} == {f"w{n}" for n in range(500)}
    assert hub.dropped == 0
    await stream.aclose()


RAW_BODIES = [
    # (path, method, raw JSON body, the field the 422 must name)
    ("patch", '{"cpu_threshold": NaN}', "cpu_threshold"),
    ("patch", '{"cpu_threshold": Infinity}', "cpu_threshold"),
    ("patch", '{"memory_threshold": -Infinity}', "memory_threshold"),
    ("patch", '{"cpu_threshold": 1e309}', "cpu_threshold"),
    ("patch", '{"cpu_threshold": true}', "cpu_threshold"),
    ("patch", '{"memory_threshold": false}', "memory_threshold"),
    ("patch", '{"name": "bad\\ud800name"}', "name"),
    ("silence", '{"ends_at": "0001-01-01T00:00:00+14:00", "comment": "x"}', "ends_at"),
    ("silence", '{"ends_at": "9999-12-31T23:59:59-14:00", "comment": "x"}', "ends_at"),
    ("silence", '{"ends_at": "2099-01-01T00:00:00", "comment": "x"}', "ends_at"),
    ("silence", '{"ends_at": "2099-01-01T00:00:00Z", "comment": "\\udfff"}', "comment"),
    ("import", '{"aws_region": "us-east-1", "tags": {"Role\\ud800": "cml"}}', "tags"),
]


@pytest.mark.parametrize(("target", "raw", "field"), RAW_BODIES)
async def test_non_finite_boolean_surrogate_and_out_of_range_input_is_422(  # type: ignore[no-untyped-def]
    api_factory, target, raw, field
) -> None:
    api = await api_factory()
    worker = (await api.client.post("/api/workers", json=VALID)).json()
    url = {
        "patch": f"/api/workers/{worker['id']}",
        "silence": "/api/silences",
        "import": "/api/workers/import",
    }
    method = "PATCH" if target == "patch" else "POST"
    response = await api.client.request(
        method, url[target], content=raw.encode(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert field in response.json()["detail"][0]["loc"]
    stored = (await api.client.get(f"/api/workers/{worker['id']}")).json()
    assert (stored["name"], stored["cpu_threshold"], stored["memory_threshold"]) == (
        VALID["name"],
        None,
        None,
    )
    assert (await api.client.get("/api/silences")).json()["items"] == []


async def test_dates_out_of_range_in_a_query_are_422(api_factory) -> None:  # type: ignore[no-untyped-def]
    api = await api_factory()
    worker = (await api.client.post("/api/workers", json=VALID)).json()
    for value in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"):
        response = await api.client.get(f"/api/workers/{worker['id']}/metrics", params={"since": value})
        assert response.status_code == 422 and "since" in field_of(response)


async def test_bytes_that_are_not_utf8_are_refused_not_a_500(api_factory) -> None:  # type: ignore[no-untyped-def]
    api = await api_factory()
    cesu = b'{"name": "w", "aws_region": "us-east-1", "aws_instance_id": "i-0123456789abcdef0", "cml_url": "https://\xed\xa0\x80.example"}'
    response = await api.client.post(
        "/api/workers", content=cesu, headers={"content-type": "application/json"}
    )
    assert response.status_code in (400, 422)
    assert (await api.client.get("/api/workers")).json()["total"] == 0


def test_the_fast_worker_json_is_exactly_the_documented_worker() -> None:
    from datetime import UTC, datetime

    from cml_monitor.api.schemas import WorkerOut
    from cml_monitor.domain import Worker, worker_json

    at = datetime(2026, 11, 25, 10, 0, 0, 123456, tzinfo=UTC)
    worker = Worker.register(
        name="w", aws_region=REGION, aws_instance_id="i-0123456789abcdef0", cml_url="https://c", now=at
    )
    worker.update_ec2_state(instance_state="running", system_status="ok", instance_status="ok", now=at)
    worker.update_telemetry(cpu_utilization=0.0, memory_utilization=61.5, active_labs_count=2, now=at)
    worker.cpu_threshold = 80.0
    for next_run in (None, at):
        assert worker_json(worker, next_run) == WorkerOut.from_worker(worker, next_run).model_dump(
            mode="json"
        )
