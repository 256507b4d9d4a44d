"""The simulated controller's endpoints beyond what the monitor polls: what Cisco's client reads.

`virl2-client` checks its login with `GET authok` (controllers before 2.10), joins a lab through
`labs/{id}/topology`, syncs it with `labs/{id}/nodes?data=true&operational=true` and
`labs/{id}/resource_pools`, and reads `system/compute_hosts`, `system/notices` and
`diagnostics/{category}`. The monitor itself posts and removes `system/notices` before an
automatic pause. Administrator-only endpoints answer 403 to other accounts, as CML does.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import cml_documents as docs


class _Compute(Protocol):
    compute_id: str
    hostname: str
    is_controller: bool
    admission_state: str
    valid: bool


class SimulatedController(Protocol):
    """What these endpoints read of `cml_controllers.SimulatedController`."""

    name: str
    labs: dict[str, str]
    owner: str
    nodes_per_lab: int
    created: datetime
    ready: bool
    notices: dict[str, dict[str, Any]]

    @property
    def computes(self) -> list[_Compute]: ...

    def running_labs(self) -> int: ...


NOTICE_LEVELS = frozenset({"INFO", "SUCCESS", "WARNING", "ERROR"})
NOTICE_FIELDS = frozenset({"level", "label", "content", "enabled", "groups"})
DIAGNOSTICS = frozenset(
    {
        "computes",
        "labs",
        "lab_events",
        "node_launch_queue",
        "services",
        "node_definitions",
        "user_list",
        "licensing",
        "startup_scheduler",
    }
)


class ClientEndpoints:
    """Mixed into `ControllerFleet`: it provides `_guarded`, `_admin` and the controllers."""

    _guarded: Callable[[Request], Awaitable[SimulatedController | Response]]
    _admin: Callable[[Request], Awaitable[SimulatedController | Response]]
    _system_stats_document: Callable[[SimulatedController], dict[str, Any]]
    users: dict[str, tuple[str, bool]]

    def client_routes(self, prefix: str) -> list[Route]:
        return [
            Route(f"{prefix}/authok", self._authok),
            Route(f"{prefix}/labs/{{lab_id}}/topology", self._topology),
            Route(f"{prefix}/labs/{{lab_id}}/nodes", self._nodes),
            Route(f"{prefix}/labs/{{lab_id}}/resource_pools", self._resource_pools),
            Route(f"{prefix}/system/compute_hosts", self._compute_hosts),
            Route(f"{prefix}/users", self._users),
            Route(f"{prefix}/resource_pools", self._all_resource_pools),
            Route(f"{prefix}/system/notices", self._notices, methods=["GET", "POST"]),
            Route(f"{prefix}/system/notices/{{notice_id}}", self._notice, methods=["GET", "DELETE"]),
            Route(f"{prefix}/diagnostics/{{category}}", self._diagnostics),
        ]

    async def _authok(self, request: Request) -> Response:
        controller = await self._guarded(request)
        if isinstance(controller, Response):
            return controller
        return JSONResponse("OK")

    async def _users(self, request: Request) -> Response:
        controller = await self._guarded(request)
        if isinstance(controller, Response):
            return controller
        return JSONResponse(self._user_documents(controller))

    def _user_documents(self, controller: SimulatedController) -> list[dict[str, Any]]:
        return [docs.user(name, admin, controller.created) for name, (_pw, admin) in self.users.items()]

    async def _lab_of(self, request: Request) -> tuple[SimulatedController, str, str] | Response:
        controller = await self._guarded(request)
        if isinstance(controller, Response):
            return controller
        lab_id = request.path_params["lab_id"]
        state = controller.labs.get(lab_id)
        if state is None:
            return docs.error(404, f"Lab not found: {lab_id}")
        return controller, lab_id, state

    async def _topology(self, request: Request) -> Response:
        found = await self._lab_of(request)
        if isinstance(found, Response):
            return found
        controller, lab_id, state = found
        return JSONResponse(
            docs.topology(
                controller.name, lab_id, state, owner=controller.owner, nodes=controller.nodes_per_lab
            )
        )

    async def _nodes(self, request: Request) -> Response:
        found = await self._lab_of(request)
        if isinstance(found, Response):
            return found
        controller, lab_id, state = found
        ids = docs.node_ids(controller.name, lab_id, controller.nodes_per_lab)
        if request.query_params.get("data", "").lower() != "true":
            return JSONResponse(ids)
        compute = controller.computes[0].compute_id
        return JSONResponse(
            [docs.node(controller.name, lab_id, node, i, state, compute) for i, node in enumerate(ids)]
        )

    async def _resource_pools(self, request: Request) -> Response:
        found = await self._lab_of(request)
        if isinstance(found, Response):
            return found
        return JSONResponse([])  # no resource pools configured on the simulated controllers

    async def _all_resource_pools(self, request: Request) -> Response:
        controller = await self._guarded(request)
        if isinstance(controller, Response):
            return controller
        return JSONResponse([])

    def _hosts(self, controller: SimulatedController) -> list[dict[str, Any]]:
        hosts = []
        for index, compute in enumerate(controller.computes):
            nodes = [
                node
                for lab_id in controller.labs
                for node in docs.node_ids(controller.name, lab_id, controller.nodes_per_lab)
            ]
            running = controller.nodes_per_lab * controller.running_labs()
            hosts.append(
                docs.compute_host(
                    compute.compute_id,
                    compute.hostname,
                    admission_state=compute.admission_state,
                    connected=compute.valid,
                    nodes=nodes if index == 0 else [],
                    running=running if index == 0 else 0,
                )
            )
        return hosts

    async def _compute_hosts(self, request: Request) -> Response:
        controller = await self._admin(request)
        if isinstance(controller, Response):
            return controller
        return JSONResponse(self._hosts(controller))

    async def _diagnostics(self, request: Request) -> Response:
        controller = await self._admin(request)
        if isinstance(controller, Response):
            return controller
        category = request.path_params["category"]
        if category not in DIAGNOSTICS:
            return docs.error(422, f"category: {category!r} is not a diagnostics category")
        stats = self._system_stats_document(controller)["computes"]
        computes = {
            host["id"]: docs.compute_diagnostics(host, stats[host["id"]]["stats"], compute.is_controller)
            for host, compute in zip(self._hosts(controller), controller.computes, strict=True)
        }
        started = controller.nodes_per_lab * controller.running_labs()
        return JSONResponse(
            docs.diagnostics(
                category,
                computes=computes,
                labs=dict.fromkeys(controller.labs, controller.created),
                started=started,
                ready=controller.ready,
                users=self._user_documents(controller),
            )
        )

    async def _notices(self, request: Request) -> Response:
        controller = await (self._admin(request) if request.method == "POST" else self._guarded(request))
        if isinstance(controller, Response):
            return controller
        if request.method == "GET":
            return JSONResponse(list(controller.notices.values()))
        try:
            body = await request.json()
        except ValueError:
            return docs.error(422, "body: not JSON")
        problem = _notice_problem(body)
        if problem:
            return docs.error(422, problem)
        notice_id = str(uuid.uuid4())
        controller.notices[notice_id] = docs.notice(notice_id, body, datetime.now(UTC))
        return JSONResponse(controller.notices[notice_id])

    async def _notice(self, request: Request) -> Response:
        controller = await (self._admin(request) if request.method == "DELETE" else self._guarded(request))
        if isinstance(controller, Response):
            return controller
        notice_id = request.path_params["notice_id"]
        if notice_id not in controller.notices:
            return docs.error(404, f"Notice not found: {notice_id}")
        if request.method == "DELETE":
            del controller.notices[notice_id]
            return Response(status_code=204)
        return JSONResponse(controller.notices[notice_id])


def _notice_problem(body: Any) -> str | None:
    """What is wrong with a `SystemNoticeCreate` body (required level and label, no other fields)."""
    if not isinstance(body, dict):
        return "body: not an object"
    unknown = set(body) - NOTICE_FIELDS
    if unknown:
        return f"body: unknown field {sorted(unknown)[0]}"
    if body.get("level") not in NOTICE_LEVELS:
        return "level: must be one of INFO, SUCCESS, WARNING, ERROR"
    if not isinstance(body.get("label"), str):
        return "label: required text"
    if "content" in body and not isinstance(body["content"], str):
        return "content: must be text"
    if "enabled" in body and not isinstance(body["enabled"], bool):
        return "enabled: must be a boolean"
    if "groups" in body and not (
        isinstance(body["groups"], list) and all(isinstance(g, str) for g in body["groups"])
    ):
        return "groups: must be a list of group ids"
    return None
