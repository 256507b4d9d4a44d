"""Simulated CML controllers: many on one HTTP server, one path prefix each.

A controller named `w1` answers under `/controllers/w1/api/v0/...` with the endpoints the
monitor uses (`authenticate`, `labs`, `labs/{id}`, `system_information`, `system_stats`).
Scenarios make a controller unreachable (503) or slow, and start or stop its labs.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

USERNAME = "admin"
PASSWORD = "cml-sim"


@dataclass
class SimulatedController:
    name: str
    labs: dict[str, str] = field(default_factory=dict)  # lab id → state
    unreachable: bool = False
    latency: float = 0.0
    tokens: set[str] = field(default_factory=set)
    requests: int = 0

    def set_labs(self, running: int, stopped: int = 0) -> None:
        self.labs = {f"lab-{i:04d}": "STARTED" for i in range(running)}
        self.labs.update({f"lab-{running + i:04d}": "STOPPED" for i in range(stopped)})

    def running_labs(self) -> int:
        return sum(1 for state in self.labs.values() if state == "STARTED")


class ControllerFleet:
    """The controllers and the ASGI app that serves them."""

    def __init__(self, username: str = USERNAME, password: str = PASSWORD) -> None:
        self.username = username
        self.password = password
        self._controllers: dict[str, SimulatedController] = {}
        self._lock = threading.Lock()
        # Set by the fleet simulator: a controller answers only while its instance runs.
        self.is_up: Callable[[str], bool] = lambda _name: True
        self.routes = [
            Route("/controllers/{name}/api/v0/authenticate", self._authenticate, methods=["POST"]),
            Route("/controllers/{name}/api/v0/labs", self._labs),
            Route("/controllers/{name}/api/v0/labs/{lab_id}", self._lab),
            Route("/controllers/{name}/api/v0/system_information", self._system_information),
            Route("/controllers/{name}/api/v0/system_stats", self._system_stats),
        ]
        self.app = Starlette(routes=self.routes)

    def add(self, name: str, running_labs: int = 0, stopped_labs: int = 0) -> SimulatedController:
        controller = SimulatedController(name)
        controller.set_labs(running_labs, stopped_labs)
        with self._lock:
            self._controllers[name] = controller
        return controller

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
            return JSONResponse({"description": "no such controller"}, status_code=404)
        controller.requests += 1
        if controller.latency:
            await asyncio.sleep(controller.latency)
        if controller.unreachable or not self.is_up(controller.name):
            return JSONResponse({"description": "service unavailable"}, status_code=503)
        return controller

    def _authorized(self, controller: SimulatedController, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        return header.startswith("Bearer ") and header[7:] in controller.tokens

    async def _authenticate(self, request: Request) -> Response:
        controller = await self._enter(request)
        if isinstance(controller, Response):
            return controller
        body = await request.json()
        if body.get("username") != self.username or body.get("password") != self.password:
            return JSONResponse({"description": "Authentication failed"}, status_code=403)
        token = secrets.token_hex(16)
        controller.tokens.add(token)
        return JSONResponse(token)

    async def _guarded(self, request: Request) -> SimulatedController | Response:
        controller = await self._enter(request)
        if isinstance(controller, Response):
            return controller
        if not self._authorized(controller, request):
            return JSONResponse({"description": "No authorization token provided"}, status_code=401)
        return controller

    async def _labs(self, request: Request) -> Response:
        controller = await self._guarded(request)
        if isinstance(controller, Response):
            return controller
        return JSONResponse(list(controller.labs))

    async def _lab(self, request: Request) -> Response:
        controller = await self._guarded(request)
        if isinstance(controller, Response):
            return controller
        lab_id = request.path_params["lab_id"]
        state = controller.labs.get(lab_id)
        if state is None:
            return JSONResponse({"description": "Lab not found"}, status_code=404)
        return JSONResponse({"id": lab_id, "state": state, "lab_title": lab_id})

    async def _system_information(self, request: Request) -> Response:
        controller = await self._enter(request)
        if isinstance(controller, Response):
            return controller
        return JSONResponse({"version": "2.7.0+sim", "ready": True})

    async def _system_stats(self, request: Request) -> Response:
        controller = await self._guarded(request)
        if isinstance(controller, Response):
            return controller
        running = controller.running_labs()
        stats: dict[str, Any] = {
            "all": {
                "cpu": {"percent": min(100.0, 5.0 + 10 * running)},
                "dominfo": {"running_nodes": 4 * running},
            }
        }
        return JSONResponse(stats)
