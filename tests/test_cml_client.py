"""`CmlControllerClient` against simulated controllers served over real HTTP on loopback."""

import pytest

from cml_fleet_sim.cml_controllers import PASSWORD, USERNAME, ControllerFleet
from cml_monitor.cml import CmlControllerClient, CmlControllerError


@pytest.fixture
async def cml():
    client = CmlControllerClient(username=USERNAME, password=PASSWORD, timeout=2)
    yield client
    await client.close()


async def test_counts_started_labs(
    controllers: tuple[ControllerFleet, str], cml: CmlControllerClient
) -> None:
    fleet, base = controllers
    fleet.add("w1", running_labs=3, stopped_labs=2)
    assert await cml.get_active_labs_count(fleet.url_for(base, "w1")) == 3


async def test_token_is_cached_and_renewed_once_on_401(
    controllers: tuple[ControllerFleet, str], cml: CmlControllerClient
) -> None:
    fleet, base = controllers
    controller = fleet.add("w1", running_labs=1)
    url = fleet.url_for(base, "w1")
    await cml.get_active_labs_count(url)
    await cml.get_active_labs_count(url)
    assert len(controller.tokens) == 1  # authenticated once for both
    controller.tokens.clear()  # the controller restarted and forgot its sessions
    assert await cml.get_active_labs_count(url) == 1
    assert len(controller.tokens) == 1


async def test_unreachable_and_wrong_password_raise_our_error(
    controllers: tuple[ControllerFleet, str],
) -> None:
    fleet, base = controllers
    fleet.add("down").unreachable = True
    fleet.add("w1")
    client = CmlControllerClient(username=USERNAME, password="wrong", timeout=2)
    try:
        with pytest.raises(CmlControllerError, match="HTTP 503"):
            await client.get_active_labs_count(fleet.url_for(base, "down"))
        with pytest.raises(CmlControllerError, match="authentication"):
            await client.get_active_labs_count(fleet.url_for(base, "w1"))
        with pytest.raises(CmlControllerError, match="unreachable"):
            await client.get_active_labs_count("http://127.0.0.1:9")
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("labs", "reason"),
    [
        ([None, 1, {}, []], "not lab ids"),
        ({"labs": []}, "not lab ids"),
        ("<html><body>Please log in</body></html>", "malformed JSON"),
    ],
)
async def test_a_lab_list_that_is_not_a_list_of_ids_is_an_error_not_zero(
    cml: CmlControllerClient, labs: object, reason: str
) -> None:
    import json

    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    from cml_fleet_sim.serving import ThreadedServer

    async def authenticate(_request: object) -> Response:
        return JSONResponse("token")

    async def list_labs(_request: object) -> Response:
        if isinstance(labs, str):
            return HTMLResponse(labs)  # a login page where JSON was expected
        return Response(json.dumps(labs), media_type="application/json")

    app = Starlette(
        routes=[
            Route("/api/v0/authenticate", authenticate, methods=["POST"]),
            Route("/api/v0/labs", list_labs),
        ]
    )
    server = ThreadedServer(app).start()
    try:
        with pytest.raises(CmlControllerError, match=reason):
            await cml.get_active_labs_count(server.url)
    finally:
        server.stop()
