"""The simulated controller is a CML 2.9 controller: every answer valid against CML 2.9's OpenAPI
document, and Cisco's own `virl2-client` connects to it and reads what it reads of a real one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cml_fleet_sim.cml_controllers import PASSWORD, USERNAME, ControllerFleet, SimulatedController
from cml_fleet_sim.serving import ThreadedServer

from .cml_spec import problems, response_schema

USER, USER_PASSWORD = "student", "student-pw"
DIAGNOSTICS = [
    "computes",
    "labs",
    "lab_events",
    "node_launch_queue",
    "services",
    "node_definitions",
    "user_list",
    "licensing",
    "startup_scheduler",
]


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[ControllerFleet, str]]:
    fleet = ControllerFleet()
    fleet.add_user(USER, USER_PASSWORD)
    server = ThreadedServer(fleet.app).start()
    controller = fleet.add("w1", running_labs=2, stopped_labs=1)
    controller.set_compute_admitted(False)
    controller.record_activity("9d1e4c7a-1d2b-4c3d-8e4f-5a6b7c8d9e0f", "start_lab")
    yield fleet, fleet.url_for(server.url, "w1") + "/api/v0"
    server.stop()


def _login(http: httpx.Client, base: str, username: str = USERNAME, password: str = PASSWORD) -> str:
    response = http.post(f"{base}/authenticate", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    token = response.json()
    assert not problems(response_schema("post", "/authenticate", 200), token)
    return str(token)


def _check(response: httpx.Response, method: str, path: str, status: int) -> Any:
    assert response.status_code == status, (path, response.status_code, response.text)
    if status == 204:
        assert response.content == b""
        return None
    body = response.json()
    assert problems(response_schema(method, path, status), body) == [], (path, status, body)
    return body


def test_every_answer_the_monitor_and_the_client_read_is_valid_per_the_spec(
    served: tuple[ControllerFleet, str],
) -> None:
    fleet, base = served
    controller = fleet.get("w1")
    with httpx.Client(timeout=5) as http:
        token = _login(http, base)
        auth = {"Authorization": f"Bearer {token}"}
        lab_id = next(i for i, s in controller.labs.items() if s == "STARTED")
        reads = [
            ("/authok", "/authok"),
            ("/system_information", "/system_information"),
            ("/system_health", "/system_health"),
            ("/system_stats", "/system_stats"),
            ("/licensing", "/licensing"),
            ("/labs", "/labs?show_all=true"),
            ("/labs/{lab_id}", f"/labs/{lab_id}"),
            ("/labs/{lab_id}/state", f"/labs/{lab_id}/state"),
            ("/labs/{lab_id}/topology", f"/labs/{lab_id}/topology"),
            ("/labs/{lab_id}/nodes", f"/labs/{lab_id}/nodes"),
            ("/labs/{lab_id}/nodes", f"/labs/{lab_id}/nodes?data=true&operational=true"),
            ("/labs/{lab_id}/resource_pools", f"/labs/{lab_id}/resource_pools"),
            ("/system/compute_hosts", "/system/compute_hosts"),
            ("/telemetry/events", "/telemetry/events"),
            ("/system/notices", "/system/notices"),
            ("/users", "/users"),
            ("/resource_pools", "/resource_pools?data=true"),
            *(("/diagnostics/{category}", f"/diagnostics/{c}") for c in DIAGNOSTICS),
        ]
        bodies = {url: _check(http.get(base + url, headers=auth), "get", path, 200) for path, url in reads}
        assert len(bodies["/labs?show_all=true"]) == 3
        lab = bodies[f"/labs/{lab_id}"]
        assert lab["state"] == "STARTED" and lab["effective_permissions"]
        stats = bodies["/system_stats"]
        assert all(
            {"model", "predicted", "load"} <= c["stats"]["cpu"].keys() for c in stats["computes"].values()
        )
        hosts = bodies["/system/compute_hosts"]
        assert [h["admission_state"] for h in hosts] == ["READY", "REGISTERED"]

        # Errors: CML's {code, description}, as the spec lists them per endpoint.
        missing = "0b1e4c7a-1d2b-4c3d-8e4f-5a6b7c8d9e0f"
        _check(http.get(f"{base}/labs/{missing}", headers=auth), "get", "/labs/{lab_id}", 404)
        _check(
            http.get(f"{base}/labs/{missing}/topology", headers=auth), "get", "/labs/{lab_id}/topology", 404
        )
        _check(http.get(f"{base}/authok"), "get", "/authok", 401)
        _check(http.get(f"{base}/authok", headers={"Authorization": "Bearer a.b.c"}), "get", "/authok", 401)
        wrong = {"username": USERNAME, "password": "wrong"}
        _check(http.post(f"{base}/authenticate", json=wrong), "post", "/authenticate", 403)

        # A system notice, as the monitor posts one before a pause, then removed.
        notice = {
            "level": "WARNING",
            "label": "Pausing",
            "content": "Start a lab to keep it",
            "enabled": True,
        }
        created = _check(
            http.post(f"{base}/system/notices", json=notice, headers=auth), "post", "/system/notices", 200
        )
        one = f"{base}/system/notices/{created['id']}"
        assert _check(http.get(one, headers=auth), "get", "/system/notices/{notice_id}", 200) == created
        _check(http.delete(one, headers=auth), "delete", "/system/notices/{notice_id}", 204)
        _check(http.delete(one, headers=auth), "delete", "/system/notices/{notice_id}", 404)
        bad = http.post(f"{base}/system/notices", json={"label": "no level"}, headers=auth)
        _check(bad, "post", "/system/notices", 422)


@pytest.mark.parametrize("fault", ["error", "unreachable"])
def test_fault_answers_are_cml_error_bodies(served: tuple[ControllerFleet, str], fault: str) -> None:
    fleet, base = served
    controller: SimulatedController = fleet.get("w1")
    with httpx.Client(timeout=5) as http:
        token = _login(http, base)
        try:
            if fault == "error":
                controller.answer = "error"
            else:
                controller.unreachable = True
            response = http.get(f"{base}/system_stats", headers={"Authorization": f"Bearer {token}"})
        finally:
            controller.answer, controller.unreachable = "ok", False
    _check(response, "get", "/system_stats", 500 if fault == "error" else 503)


def test_a_non_administrator_is_refused_what_cml_keeps_for_administrators(
    served: tuple[ControllerFleet, str],
) -> None:
    _fleet, base = served
    with httpx.Client(timeout=5) as http:
        auth = {"Authorization": f"Bearer {_login(http, base, USER, USER_PASSWORD)}"}
        _check(http.get(f"{base}/licensing", headers=auth), "get", "/licensing", 403)
        for path in ("/telemetry/events", "/system/compute_hosts", "/diagnostics/computes"):
            response = http.get(base + path, headers=auth)
            assert response.status_code == 403
            assert set(response.json()) == {"code", "description"} and response.json()["code"] == 403
        notice = {"level": "INFO", "label": "x"}
        assert http.post(f"{base}/system/notices", json=notice, headers=auth).status_code == 403
        # What every account may read: its own labs (none here), stats, health.
        assert _check(http.get(f"{base}/labs?show_all=true", headers=auth), "get", "/labs", 200) == []
        _check(http.get(f"{base}/system_stats", headers=auth), "get", "/system_stats", 200)
        _check(http.get(f"{base}/system_health", headers=auth), "get", "/system_health", 200)


def test_ciscos_virl2_client_connects_lists_and_reads_labs_and_the_system(
    served: tuple[ControllerFleet, str],
) -> None:
    virl2_client = pytest.importorskip("virl2_client")
    fleet, base = served
    controller = fleet.get("w1")
    url = base.removesuffix("api/v0")
    client = virl2_client.ClientLibrary(
        url, USERNAME, PASSWORD, ssl_verify=False, allow_http=True, raise_for_auth_failure=True
    )
    assert client.system_info()["version"].startswith("2.9")
    assert sorted(client.get_lab_list(show_all=True)) == sorted(controller.labs)
    labs = client.all_labs(show_all=True)
    assert len(labs) == 3
    started = next(lab for lab in labs if lab.id in controller.labs and controller.labs[lab.id] == "STARTED")
    assert started.state() == "STARTED"
    assert (
        len(started.nodes()) == controller.nodes_per_lab
        and len(started.links()) == controller.nodes_per_lab - 1
    )
    # Nodes with operational data, as `Lab.sync_operational` reads them (the interfaces it reads
    # next are beyond what the simulator serves).
    assert started._session.get(f"labs/{started.id}/nodes?data=true&operational=true").json()
    assert client.get_system_health()["computes"] and client.get_system_stats()["all"]["cpu"]["count"] == 64
    diagnostics = client.get_diagnostics(virl2_client.virl2_client.DiagnosticsCategory.COMPUTES)
    assert len(diagnostics["computes"]) == 2
    assert client.licensing.status()["registration"]["status"] == "COMPLETED"
    client.system_management.sync_compute_hosts()
    assert len(client.system_management.compute_hosts) == 2


def test_ciscos_client_reports_a_wrong_password_as_cml_does(served: tuple[ControllerFleet, str]) -> None:
    virl2_client = pytest.importorskip("virl2_client")
    _fleet, base = served
    with pytest.raises(virl2_client.InitializationError):
        virl2_client.ClientLibrary(
            base.removesuffix("api/v0"), USERNAME, "wrong", allow_http=True, raise_for_auth_failure=True
        )
