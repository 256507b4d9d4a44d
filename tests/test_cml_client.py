"""`CmlControllerClient` against simulated controllers served over real HTTP on loopback."""

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cml_fleet_sim.cml_controllers import PASSWORD, USERNAME, VERSION, ControllerFleet, SimulatedController
from cml_fleet_sim.serving import ThreadedServer
from cml_monitor.cml import CmlControllerClient
from cml_monitor.domain import CmlStatus, ComputeHealth


@pytest.fixture
async def cml():
    client = CmlControllerClient(username=USERNAME, password=PASSWORD, timeout=2)
    yield client
    await client.close()


async def test_reads_every_field_of_a_healthy_controller(
    controllers: tuple[ControllerFleet, str], cml: CmlControllerClient
) -> None:
    fleet, base = controllers
    fleet.add("w1", running_labs=3, stopped_labs=2)
    reading = await cml.read_controller(fleet.url_for(base, "w1"), licensing=True)
    assert reading.reachable and reading.errors == ()
    values = reading.values
    assert values["version"] == VERSION and values["ready"] is True
    assert values["healthy"] is True and values["licensed"] is True
    assert values["computes"] == (ComputeHealth("cml-controller", True, "READY"),)
    assert (values["labs_started"], values["labs_total"]) == (3, 5)
    assert (values["running_nodes"], values["total_nodes"]) == (12, 20)  # 4 nodes a lab
    assert (values["allocated_cpus"], values["cpu_count"]) == (24, 32)
    assert values["disk_used_percent"] == 35.0
    assert values["cpu_percent"] == pytest.approx(33.0)
    assert values["memory_used_percent"] == pytest.approx(100 * (8 + 12 * 4) / 256, abs=0.01)
    assert (values["license_registration"], values["license_authorization"]) == ("COMPLETED", "IN_COMPLIANCE")
    assert values["license_expires_at"] > datetime.now(UTC) + timedelta(days=299)


async def test_steady_state_costs_four_calls_and_lab_states_are_read_when_nodes_move(
    controllers: tuple[ControllerFleet, str], cml: CmlControllerClient
) -> None:
    fleet, base = controllers
    controller = fleet.add("w1", running_labs=2, stopped_labs=1)
    url = fleet.url_for(base, "w1")
    await cml.read_controller(url, licensing=True)
    before = controller.requests
    reading = await cml.read_controller(url)
    assert controller.requests - before == 4  # information, health, stats, lab list
    assert "license_registration" not in reading.values  # licensing only when asked
    assert reading.values["labs_started"] == 2
    controller.labs[next(i for i, s in controller.labs.items() if s == "STOPPED")] = "STARTED"
    before = controller.requests
    reading = await cml.read_controller(url)
    assert reading.values["labs_started"] == 3
    assert controller.requests - before == 4 + 3  # the node count moved: each lab's state read


async def test_token_is_cached_and_renewed_once_on_401(
    controllers: tuple[ControllerFleet, str], cml: CmlControllerClient
) -> None:
    fleet, base = controllers
    controller = fleet.add("w1", running_labs=1)
    url = fleet.url_for(base, "w1")
    await cml.read_controller(url)
    await cml.read_controller(url)
    assert len(controller.tokens) == 1  # authenticated once for both
    controller.tokens.clear()  # the controller restarted and forgot its sessions
    reading = await cml.read_controller(url)
    assert reading.errors == () and reading.values["labs_started"] == 1
    assert len(controller.tokens) == 1


def _not_ready(c: SimulatedController) -> None:
    c.ready = False


def _full_disk(c: SimulatedController) -> None:
    c.disk_used_percent = 97.5


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (_not_ready, {"ready": False, "healthy": True}),
        (lambda c: c.set_compute_admitted(False), {"healthy": False}),
        (
            lambda c: c.set_license(licensed=False),
            {"licensed": False, "license_registration": "NOT_REGISTERED"},
        ),
        (_full_disk, {"disk_used_percent": 97.5}),
    ],
)
async def test_injected_controller_faults_are_read_as_such(
    controllers: tuple[ControllerFleet, str],
    cml: CmlControllerClient,
    fault: Callable[[SimulatedController], None],
    expected: dict,
) -> None:
    fleet, base = controllers
    fault(fleet.add("w1", running_labs=1))
    reading = await cml.read_controller(fleet.url_for(base, "w1"), licensing=True)
    assert reading.reachable
    assert {k: reading.values[k] for k in expected} == expected
    if expected.get("healthy") is False:
        compute = next(c for c in reading.values["computes"] if c.hostname == "cml-compute-1")
        assert (compute.healthy, compute.admission_state) == (False, "REGISTERED")
        problem = CmlStatus().apply(reading, _now()).health_problem or ""
        assert "not admitted: cml-compute-1 REGISTERED" in problem


def _now() -> datetime:
    return datetime.now(UTC)


@pytest.mark.parametrize("answer", ["error", "garbage", "html"])
async def test_a_controller_answering_500_garbage_or_a_login_page_is_unreachable_and_changes_nothing(
    controllers: tuple[ControllerFleet, str], cml: CmlControllerClient, answer: str
) -> None:
    fleet, base = controllers
    controller = fleet.add("w1", running_labs=2)
    url = fleet.url_for(base, "w1")
    known = CmlStatus().apply(await cml.read_controller(url, licensing=True), _now())
    controller.answer = answer  # type: ignore[assignment]
    reading = await cml.read_controller(url, licensing=True)
    assert not reading.reachable and reading.values == {}
    assert {e.split(":")[0] for e in reading.errors} >= {"system_information", "labs"}
    after = known.apply(reading, _now())
    assert after.reachable is False
    assert (after.version, after.labs_started, after.disk_used_percent) == (VERSION, 2, 35.0)
    assert after.license_registration == "COMPLETED"


async def test_a_hung_controller_costs_one_deadline_and_keeps_what_answered(
    controllers: tuple[ControllerFleet, str],
) -> None:
    fleet, base = controllers
    fleet.add("w1").latency = 30.0
    client = CmlControllerClient(username=USERNAME, password=PASSWORD, timeout=1)
    try:
        started = time.monotonic()
        reading = await client.read_controller(fleet.url_for(base, "w1"))
        assert time.monotonic() - started < 5
    finally:
        await client.close()
    assert not reading.reachable
    assert any("no answer within 1 s" in e for e in reading.errors)


async def test_wrong_password_and_closed_port_are_reported_per_endpoint(
    controllers: tuple[ControllerFleet, str],
) -> None:
    fleet, base = controllers
    fleet.add("w1")
    client = CmlControllerClient(username=USERNAME, password="wrong", timeout=2)
    try:
        reading = await client.read_controller(fleet.url_for(base, "w1"))
        # The unauthenticated endpoint still says the controller is there and ready...
        assert reading.reachable and reading.values == {"version": VERSION, "ready": True}
        # ...and what needs the account says why it could not be read.
        assert any(e.startswith("system_health: authentication") and "HTTP 403" in e for e in reading.errors)
        assert "health endpoint failed" in (CmlStatus().apply(reading, _now()).health_problem or "")
        closed = await client.read_controller("http://127.0.0.1:9")
        assert not closed.reachable and all("unreachable" in e for e in closed.errors)
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("labs", "reason"),
    [
        ([None, 1, {}, []], "not lab ids"),
        ({"labs": []}, "not lab ids"),
    ],
)
async def test_a_lab_list_that_is_not_a_list_of_ids_is_an_error_not_zero(
    cml: CmlControllerClient, labs: object, reason: str
) -> None:
    async def authenticate(_request: object) -> Response:
        return JSONResponse("token")

    async def list_labs(_request: object) -> Response:
        return Response(json.dumps(labs), media_type="application/json")

    async def information(_request: object) -> Response:
        return JSONResponse({"version": "2.9.0", "ready": True})

    app = Starlette(
        routes=[
            Route("/api/v0/authenticate", authenticate, methods=["POST"]),
            Route("/api/v0/labs", list_labs),
            Route("/api/v0/system_information", information),
        ]
    )
    server = ThreadedServer(app).start()
    try:
        reading = await cml.read_controller(server.url)
    finally:
        server.stop()
    assert "labs_started" not in reading.values
    assert any(e.startswith("labs:") and reason in e for e in reading.errors)
    assert reading.values["version"] == "2.9.0"  # the rest of the controller is still read
