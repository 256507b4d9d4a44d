"""Simulated CML controllers: many on one HTTP server, one path prefix each.

A controller named `w1` answers under `/controllers/w1/api/v0/...` with the CML 2.9 shapes of
the endpoints a monitor reads: `authenticate` (a JSON string token), `system_information` (no
token; 502 while the controller is not ready), `system_health`, `system_stats`, `licensing`,
`labs` (a list of lab UUIDs), `labs/{id}` and `labs/{id}/state` (a JSON string),
`telemetry/events` (the whole history: category, timestamp, data.user_id), and what Cisco's
`virl2-client` reads (`cml_client_routes`). Tokens are JSON web tokens; errors are CML's
`{code, description}`; accounts other than the administrator get 403 where CML refuses them
(licensing, telemetry, compute hosts, diagnostics, posting notices) and see only their own
labs. Faults: a
controller unreachable (503) or slow, not ready, a compute not admitted, unlicensed or about
to expire, a full disk, many labs, every endpoint answering 500, garbage JSON or an HTML
login page, or hostile answers (NUL and control characters in strings, dates in 9999).
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from . import cml_documents as docs
from .cml_client_routes import ClientEndpoints

USERNAME = "admin"
PASSWORD = "cml-sim"
VERSION = "2.9.0+build.3"
NODES_PER_LAB = 4
GIB = 1024**3

Answer = Literal["ok", "error", "garbage", "html"]


@dataclass
class SimulatedCompute:
    hostname: str
    is_controller: bool = False
    admission_state: str = "READY"  # CML's ComputeStates: UNREGISTERED, REGISTERED, ONLINE, READY
    valid: bool = True
    compute_id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class SimulatedController:
    name: str
    labs: dict[str, str] = field(default_factory=dict)  # lab id (a UUID4) → state
    unreachable: bool = False
    latency: float = 0.0
    tokens: set[str] = field(default_factory=set)
    requests: int = 0
    ready: bool = True
    answer: Answer = "ok"
    disk_used_percent: float = 35.0
    cpu_count: int = 32
    registration: str = "COMPLETED"
    authorization: str = "IN_COMPLIANCE"
    license_expires: datetime = field(default_factory=lambda: datetime.now(UTC) + timedelta(days=300))
    computes: list[SimulatedCompute] = field(
        default_factory=lambda: [SimulatedCompute("cml-controller", is_controller=True)]
    )
    telemetry: list[dict[str, Any]] = field(default_factory=list)  # CML's telemetry events, oldest first
    notices: dict[str, dict[str, Any]] = field(default_factory=dict)  # system notices by id
    owner: str = USERNAME  # the account owning every lab
    nodes_per_lab: int = NODES_PER_LAB
    created: datetime = field(default_factory=lambda: datetime.now(UTC) - timedelta(days=3))

    def record_activity(
        self, user_id: str, category: str = "user_activity", at: datetime | None = None
    ) -> None:
        """An event in the controller's telemetry: a UTC date-time, as the spec's `date-time` demands."""
        stamp = (at or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        self.telemetry.append({"category": category, "timestamp": stamp, "data": {"user_id": user_id}})

    def set_labs(self, running: int, stopped: int = 0) -> None:
        self.labs = {str(uuid.uuid4()): "STARTED" for _ in range(running)}
        self.labs.update({str(uuid.uuid4()): "STOPPED" for _ in range(stopped)})

    def running_labs(self) -> int:
        return sum(1 for state in self.labs.values() if state == "STARTED")

    def set_license(self, *, licensed: bool = True, expires_in_days: float = 300) -> None:
        self.registration = "COMPLETED" if licensed else "NOT_REGISTERED"
        self.authorization = "IN_COMPLIANCE" if licensed else "EVAL"
        self.license_expires = datetime.now(UTC) + timedelta(days=expires_in_days)

    def set_compute_admitted(self, admitted: bool) -> None:
        """A second compute host that is (or is not) admitted to the cluster."""
        if len(self.computes) < 2:
            self.computes.append(SimulatedCompute("cml-compute-1"))
        self.computes[1].admission_state = "READY" if admitted else "REGISTERED"
        self.computes[1].valid = admitted

    def make_hostile(self) -> None:
        """Fault: strings carrying NUL and other control characters (a compute's hostname and
        admission state, the licensing statuses, a telemetry user) and a telemetry event dated
        in the year 9999, as a controller with a corrupt database or a wild clock answers."""
        self.computes.append(
            SimulatedCompute("cml-\x00compute\x1b[31m-2\x07", admission_state="REGISTERED\x00", valid=False)
        )
        self.registration = "COMPLETED\x00"
        self.authorization = "IN_COMPLIANCE\x08\x00"
        self.record_activity("mallory\x00", at=datetime(9999, 12, 31, 23, 0, tzinfo=UTC))

    @property
    def licensed(self) -> bool:
        return self.registration == "COMPLETED" and self.authorization == "IN_COMPLIANCE"


class ControllerFleet(ClientEndpoints):
    """The controllers and the ASGI app that serves them."""

    def __init__(self, username: str = USERNAME, password: str = PASSWORD) -> None:
        self.username = username
        self.password = password
        # Accounts by name: password and whether it is an administrator.
        self.users: dict[str, tuple[str, bool]] = {username: (password, True)}
        self._secret = secrets.token_hex(32)  # signs the tokens, as each controller signs its own
        self._controllers: dict[str, SimulatedController] = {}
        self._lock = threading.Lock()
        # Set by the fleet simulator: a controller answers only while its instance runs.
        self.is_up: Callable[[str], bool] = lambda _name: True
        prefix = "/controllers/{name}/api/v0"
        self.routes = [
            Route(f"{prefix}/authenticate", self._authenticate, methods=["POST"]),
            Route(f"{prefix}/labs", self._labs),
            Route(f"{prefix}/labs/{{lab_id}}", self._lab),
            Route(f"{prefix}/labs/{{lab_id}}/state", self._lab_state),
            Route(f"{prefix}/system_information", self._system_information),
            Route(f"{prefix}/system_health", self._system_health),
            Route(f"{prefix}/system_stats", self._system_stats),
            Route(f"{prefix}/licensing", self._licensing),
            Route(f"{prefix}/telemetry/events", self._telemetry_events),
            *self.client_routes(prefix),
        ]
        self.app = Starlette(routes=self.routes)

    def add(self, name: str, running_labs: int = 0, stopped_labs: int = 0) -> SimulatedController:
        controller = SimulatedController(name)
        controller.set_labs(running_labs, stopped_labs)
        with self._lock:
            self._controllers[name] = controller
        return controller

    def add_user(self, username: str, password: str, *, admin: bool = False) -> None:
        """Another account on every controller (a non-administrator unless told otherwise)."""
        self.users[username] = (password, admin)

    def total_requests(self) -> int:
        with self._lock:
            return sum(c.requests for c in self._controllers.values())

    def get(self, name: str) -> SimulatedController:
        return self._controllers[name]

    @staticmethod
    def url_for(base_url: str, name: str) -> str:
        return f"{base_url}/controllers/{name}"

    async def _enter(self, request: Request) -> SimulatedController | Response:
        controller = self._controllers.get(request.path_params["name"])
        if controller is None:
            return docs.error(404, "no such controller")
        controller.requests += 1
        if controller.latency:
            await asyncio.sleep(controller.latency)
        if controller.unreachable or not self.is_up(controller.name):
            return docs.error(503, "service unavailable")
        if controller.answer == "error":
            return docs.error(500, "Internal Server Error")
        if controller.answer == "garbage":
            return Response(b'{"version": "2.9', media_type="application/json")
        if controller.answer == "html":  # a proxy's login page where JSON was expected
            return HTMLResponse("<html><body><form>Please log in</form></body></html>")
        return controller

    def _caller(self, controller: SimulatedController, request: Request) -> str | None:
        """The account a request's bearer token was issued to on this controller, if any."""
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer ") or header[7:] not in controller.tokens:
            return None
        subject = docs.token_subject(self._secret, header[7:])
        return next((name for name in self.users if docs.user_id(name) == subject), None)

    def _authorized(self, controller: SimulatedController, request: Request) -> bool:
        return self._caller(controller, request) is not None

    def _is_admin(self, controller: SimulatedController, request: Request) -> bool:
        caller = self._caller(controller, request)
        return caller is not None and self.users[caller][1]

    async def _authenticate(self, request: Request) -> Response:
        controller = await self._enter(request)
        if isinstance(controller, Response):
            return controller
        try:
            body = await request.json()
        except ValueError:
            return docs.error(422, "body: not JSON")
        username = body.get("username") if isinstance(body, dict) else None
        account = self.users.get(username) if isinstance(username, str) else None
        if account is None or body.get("password") != account[0]:
            return docs.error(403, "Authentication failed!")
        token = docs.make_token(self._secret, username)
        controller.tokens.add(token)
        return JSONResponse(token)

    async def _guarded(self, request: Request) -> SimulatedController | Response:
        controller = await self._enter(request)
        if isinstance(controller, Response):
            return controller
        if not self._authorized(controller, request):
            return docs.error(401, "No authorization token provided.")
        return controller

    async def _admin(self, request: Request) -> SimulatedController | Response:
        """Like `_guarded`, and 403 for an account that is not an administrator."""
        controller = await self._guarded(request)
        if isinstance(controller, Response):
            return controller
        if not self._is_admin(controller, request):
            return docs.error(403, "Access denied: administrator rights required.")
        return controller

    async def _labs(self, request: Request) -> Response:
        controller = await self._guarded(request)
        if isinstance(controller, Response):
            return controller
        if not self._is_admin(controller, request):  # others see their own labs only
            caller = self._caller(controller, request)
            return JSONResponse([] if caller != controller.owner else list(controller.labs))
        return JSONResponse(list(controller.labs))

    async def _lab(self, request: Request) -> Response:
        controller = await self._guarded(request)
        if isinstance(controller, Response):
            return controller
        lab_id = request.path_params["lab_id"]
        state = controller.labs.get(lab_id)
        if state is None:
            return docs.error(404, f"Lab not found: {lab_id}")
        return JSONResponse(
            docs.lab(
                controller.name,
                lab_id,
                state,
                owner=controller.owner,
                nodes=controller.nodes_per_lab,
                created=controller.created,
            )
        )

    async def _lab_state(self, request: Request) -> Response:
        controller = await self._guarded(request)
        if isinstance(controller, Response):
            return controller
        state = controller.labs.get(request.path_params["lab_id"])
        if state is None:
            return docs.error(404, f"Lab not found: {request.path_params['lab_id']}")
        return JSONResponse(state)

    async def _system_information(self, request: Request) -> Response:
        controller = await self._enter(request)
        if isinstance(controller, Response):
            return controller
        if not controller.ready:
            return Response("Bad Gateway", status_code=502)  # what the controller's proxy answers
        return JSONResponse(
            {"version": VERSION, "ready": True, "allow_ssh_pubkey_auth": False, "oui": "52:54:00:00:00:00"}
        )

    async def _system_health(self, request: Request) -> Response:
        controller = await self._guarded(request)
        if isinstance(controller, Response):
            return controller
        computes = {
            compute.compute_id: {
                "kvm_vmx_enabled": True,
                "enough_cpus": True,
                "lld_connected": compute.valid,
                "lld_synced": compute.valid,
                "libvirt": True,
                "fabric": compute.valid,
                "device_mux": True,
                "refplat_images_available": True,
                "docker_shim": True,
                "valid": compute.valid,
                "admission_state": compute.admission_state,
                "is_controller": compute.is_controller,
                "hostname": compute.hostname,
            }
            for compute in controller.computes
        }
        valid = all(c.valid for c in controller.computes)
        return JSONResponse(
            {
                "valid": valid,
                "is_licensed": controller.licensed,
                "is_enterprise": True,
                "computes": computes,
                "controller": {
                    "core_connected": True,
                    "nodes_loaded": True,
                    "images_loaded": True,
                    "valid": True,
                },
            }
        )

    async def _system_stats(self, request: Request) -> Response:
        controller = await self._guarded(request)
        if isinstance(controller, Response):
            return controller
        return JSONResponse(self._system_stats_document(controller))

    def _system_stats_document(self, controller: SimulatedController) -> dict[str, Any]:
        running_nodes = NODES_PER_LAB * controller.running_labs()
        total_nodes = NODES_PER_LAB * len(controller.labs)
        cpu_percent = min(100.0, 3.0 + 2.5 * running_nodes)
        memory_total = 256 * GIB
        memory_used = min(memory_total, 8 * GIB + running_nodes * 4 * GIB)
        disk_total = 500 * GIB
        disk_used = disk_total * controller.disk_used_percent / 100
        computes: dict[str, Any] = {}
        for index, compute in enumerate(controller.computes):
            first = index == 0  # the nodes run on the controller host in this simulation
            computes[compute.compute_id] = {
                "hostname": compute.hostname,
                "is_controller": compute.is_controller,
                "stats": {
                    "cpu": docs.cpu_stats(controller.cpu_count, cpu_percent if first else 1.0),
                    "memory": {
                        "used": memory_used,
                        "free": memory_total - memory_used,
                        "total": memory_total,
                    },
                    "disk": {"used": disk_used, "free": disk_total - disk_used, "total": disk_total},
                    "dominfo": {
                        "total_nodes": total_nodes if first else 0,
                        "total_orphans": 0,
                        "running_nodes": running_nodes if first else 0,
                        "running_orphans": 0,
                        "allocated_cpus": 2 * running_nodes if first else 0,
                        "allocated_memory": 4096 * running_nodes if first else 0,
                    },
                },
            }
        count = controller.cpu_count * len(controller.computes)
        return {
            "computes": computes,
            "all": {
                "cpu": {"count": count, "percent": cpu_percent / len(controller.computes)},
                "memory": {
                    "used": memory_used,
                    "free": memory_total - memory_used,
                    "total": memory_total,
                },
                "disk": {"used": disk_used, "free": disk_total - disk_used, "total": disk_total},
            },
            "controller": {"disk": {"used": disk_used, "free": disk_total - disk_used, "total": disk_total}},
        }

    async def _licensing(self, request: Request) -> Response:
        controller = await self._admin(request)
        if isinstance(controller, Response):
            return controller
        return JSONResponse(
            docs.licensing(controller.registration, controller.authorization, controller.license_expires)
        )

    async def _telemetry_events(self, request: Request) -> Response:
        controller = await self._admin(request)
        if isinstance(controller, Response):
            return controller
        return JSONResponse(controller.telemetry)
