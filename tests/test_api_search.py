"""`GET /api/workers?q=&alerting=&problem=`, `GET /api/workers/by-instance/{id}`, and who acknowledged."""

from __future__ import annotations

import uuid

from cml_monitor.clock import utcnow
from cml_monitor.domain import WorkerStatus
from cml_monitor.domain.alerts import Alert, AlertKind, AlertState
from cml_monitor.domain.cml import CmlStatus

from .conftest import REGION, Moto

IDS = ["i-0000000000000000a", "i-0000000000000000b", "i-0000000000000000c", "i-0000000000000000d"]


def firing(worker_id: str, kind: AlertKind = AlertKind.CPU) -> Alert:
    now = utcnow()
    return Alert(
        id=str(uuid.uuid4()),
        worker_id=worker_id,
        kind=kind,
        state=AlertState.FIRING,
        value=96.0,
        threshold=90.0,
        violations=1,
        started_at=now,
        updated_at=now,
        fired_at=now,
    )


async def fleet(api) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    names = ["lab-paris", "lab-tokyo", "Build-Paris", "spare"]
    regions = [REGION, "ap-northeast-1", REGION, "eu-west-1"]
    made = {}
    for name, region, instance_id in zip(names, regions, IDS, strict=True):
        body = {"name": name, "aws_region": region, "aws_instance_id": instance_id}
        if name == "lab-tokyo":
            body["cml_url"] = "https://127.0.0.2:9"
        response = await api.client.post("/api/workers", json=body)
        assert response.status_code == 201, response.text
        made[name] = response.json()
    return made


def names(response) -> list[str]:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.text
    return [w["name"] for w in response.json()["items"]]


async def test_search_alerting_and_problem_filters(api_factory, moto: Moto) -> None:  # type: ignore[no-untyped-def]
    api = await api_factory(worker_monitoring_enabled=False)
    made = await fleet(api)
    client = api.client
    assert names(await client.get("/api/workers", params={"q": "paris"})) == ["lab-paris", "Build-Paris"]
    assert names(await client.get("/api/workers", params={"q": "000d"})) == ["spare"]
    assert names(await client.get("/api/workers", params={"q": "northeast"})) == ["lab-tokyo"]
    assert names(await client.get("/api/workers", params={"q": "%"})) == []  # a literal, not a wildcard
    page = await client.get("/api/workers", params={"q": "lab", "limit": 1})
    assert names(page) == ["lab-paris"] and page.json()["total"] == 2

    runtime = api.runtime
    await runtime.alert_store.apply([firing(made["spare"]["id"])], [], [], [])
    assert names(await client.get("/api/workers", params={"alerting": "true"})) == ["spare"]
    assert "spare" not in names(await client.get("/api/workers", params={"alerting": "false"}))

    # Problems: the alerting one, one in an unknown state, one whose controller is unreachable.
    tokyo = await runtime.repository.get_by_id_async(made["lab-tokyo"]["id"])
    tokyo.status = WorkerStatus.RUNNING
    tokyo.cml = CmlStatus(reachable=False)
    await runtime.repository.update_async(tokyo)
    paris = await runtime.repository.get_by_id_async(made["lab-paris"]["id"])
    paris.status = WorkerStatus.STOPPED
    await runtime.repository.update_async(paris)
    build = await runtime.repository.get_by_id_async(made["Build-Paris"]["id"])
    assert build.status is WorkerStatus.UNKNOWN  # never collected
    problems = await client.get("/api/workers", params={"problem": "true"})
    assert names(problems) == ["lab-tokyo", "Build-Paris", "spare"] and problems.json()["total"] == 3
    assert names(await client.get("/api/workers", params={"problem": "false"})) == ["lab-paris"]
    combined = await client.get("/api/workers", params={"problem": "true", "q": "paris"})
    assert names(combined) == ["Build-Paris"]


async def test_bad_filter_values_name_the_field(api_factory, moto: Moto) -> None:  # type: ignore[no-untyped-def]
    api = await api_factory(worker_monitoring_enabled=False)
    for params, field in (
        ({"alerting": "maybe"}, "alerting"),
        ({"problem": "2"}, "problem"),
        ({"q": ""}, "q"),
        ({"q": "x" * 129}, "q"),
    ):
        response = await api.client.get("/api/workers", params=params)
        assert response.status_code == 422, params
        assert [item["loc"][-1] for item in response.json()["detail"]] == [field]
    # The live stream's shape is one of two: anything else is refused before the stream opens.
    response = await api.client.get("/api/events", params={"shape": "everything"})
    assert response.status_code == 422
    assert [item["loc"] for item in response.json()["detail"]] == [["query", "shape"]]


async def test_by_instance(api_factory, moto: Moto) -> None:  # type: ignore[no-untyped-def]
    api = await api_factory(worker_monitoring_enabled=False)
    made = await fleet(api)
    found = await api.client.get(f"/api/workers/by-instance/{IDS[1]}")
    assert found.status_code == 200 and found.json()["id"] == made["lab-tokyo"]["id"]
    missing = await api.client.get("/api/workers/by-instance/i-0123456789abcdef0")
    assert missing.status_code == 404 and "i-0123456789abcdef0" in missing.json()["detail"]
    bad = await api.client.get("/api/workers/by-instance/not-an-instance")
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "instance_id"


async def test_acknowledged_by_names_the_actor(api_factory, moto: Moto) -> None:  # type: ignore[no-untyped-def]
    api = await api_factory(token="adm-token", api_tokens="admin:adm-token", worker_monitoring_enabled=False)
    made = await fleet(api)
    alert = firing(made["spare"]["id"])
    await api.runtime.alert_store.apply([alert], [], [], [])
    acked = await api.client.post(f"/api/alerts/{alert.id}/ack", json={"comment": "on it"})
    assert acked.status_code == 200, acked.text
    body = acked.json()
    assert body["acknowledged_by"] == "admin" and body["acknowledged_comment"] == "on it"
    listed = (await api.client.get("/api/alerts")).json()["items"]
    assert [a["acknowledged_by"] for a in listed] == ["admin"]


async def test_import_preview_registers_nothing(api_factory, moto: Moto) -> None:  # type: ignore[no-untyped-def]
    a, b = moto.run_instances(2)
    moto.ec2().create_tags(Resources=[a, b], Tags=[{"Key": "Role", "Value": "cml"}])
    moto.ec2().create_tags(Resources=[a], Tags=[{"Key": "Name", "Value": "cml-a"}])
    api = await api_factory(worker_monitoring_enabled=False)
    body = {"aws_region": REGION, "aws_instance_id": b, "name": "known"}
    assert (await api.client.post("/api/workers", json=body)).status_code == 201
    preview = await api.client.post(
        "/api/workers/import", json={"aws_region": REGION, "tags": {"Role": "cml"}, "preview": True}
    )
    assert preview.status_code == 200, preview.text
    result = preview.json()
    assert result["imported"] == [] and result["skipped"] == [
        {"aws_instance_id": b, "reason": "already registered"}
    ]
    assert result["would_import"] == [{"aws_instance_id": a, "name": "cml-a", "state": "running"}]
    assert (await api.client.get("/api/workers")).json()["total"] == 1
    bad = await api.client.post(
        "/api/workers/import", json={"aws_region": REGION, "tags": {"Role": "cml"}, "preview": "perhaps"}
    )
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "preview"
