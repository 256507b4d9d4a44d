"""`FleetSimulator`: simulated AWS, CML controllers and a scenario admin API on one port.

- AWS (EC2 + CloudWatch) answers at the root URL: point `AWS_ENDPOINT_URL` at it.
- Controller of instance `i-…` answers at `/controllers/i-…` (only while the instance runs).
- Scenario control at `/sim/…` (JSON), or from Python through the same methods.
"""

from __future__ import annotations

import random
import secrets
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .aws_server import SimulatedAws
from .cml_controllers import PASSWORD, USERNAME, Answer, ControllerFleet
from .fleet import SimulatedFleet, SimulatedInstance
from .serving import ThreadedServer
from .sqs import SimulatedQueue


class FleetSimulator:
    def __init__(
        self,
        *,
        speed: float = 1.0,
        instant_transitions: bool = False,
        seed: int | None = None,
        controller_latency: float = 0.0,
    ) -> None:
        self.fleet = SimulatedFleet(speed=speed, instant_transitions=instant_transitions, seed=seed)
        self.controllers = ControllerFleet(USERNAME, PASSWORD)
        self.controllers.is_up = self._controller_up
        self.controller_latency = controller_latency
        self.aws = SimulatedAws(self.fleet)
        self._random = random.Random(seed)
        self._server: ThreadedServer | None = None
        self.app = Starlette(
            routes=[
                Route("/sim/instances", self._list_instances, methods=["GET"]),
                Route("/sim/instances", self._create_instances, methods=["POST"]),
                Route(
                    "/sim/instances/{instance_id}/scheduled-events",
                    self._scheduled_events,
                    methods=["POST", "DELETE"],
                ),
                Route("/sim/instances/{instance_id}/{action}", self._instance_action, methods=["POST"]),
                Route("/sim/instances/{instance_id}/metrics", self._set_metrics, methods=["PUT"]),
                Route("/sim/instances/{instance_id}/status-checks", self._set_checks, methods=["PUT"]),
                Route("/sim/controllers/{name}", self._set_controller, methods=["PUT"]),
                Route("/sim/faults", self._set_faults, methods=["PUT"]),
                Route("/sim/stats", self._stats, methods=["GET"]),
                *self.controllers.routes,
                Route("/{path:path}", self.aws.handle, methods=["GET", "POST"]),
            ]
        )

    # -- serving ---------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._server = ThreadedServer(self.app, host=host, port=port).start()
        return self._server.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the simulator is not started")
        return self._server.url

    def controller_url(self, instance_id: str) -> str:
        return self.controllers.url_for(self.url, instance_id)

    # -- scenario API ----------------------------------------------------------------------

    def _controller_up(self, name: str) -> bool:
        instance = self.fleet.get(name)
        return instance is None or instance.state == "running"

    def add_workers(
        self,
        count: int,
        *,
        region: str = "us-east-1",
        tags: dict[str, str] | None = None,
        with_controllers: bool = True,
        agent_dimensions: str = "InstanceId",
        max_labs: int = 4,
    ) -> list[SimulatedInstance]:
        instances = self.fleet.create(count, region=region, tags=tags, agent_dimensions=agent_dimensions)
        if with_controllers:
            for instance in instances:
                running = self._random.randint(0, max_labs)
                controller = self.controllers.add(instance.instance_id, running_labs=running, stopped_labs=1)
                controller.latency = self.controller_latency
                instance.running_labs = running
        return instances

    def set_labs(self, instance_id: str, running: int, stopped: int = 1) -> None:
        self.controllers.get(instance_id).set_labs(running, stopped)
        instance = self.fleet.get(instance_id)
        if instance is not None:
            instance.running_labs = running

    def set_controller(
        self,
        instance_id: str,
        *,
        unreachable: bool | None = None,
        latency: float | None = None,
        ready: bool | None = None,
        answer: Answer | None = None,
        disk_used_percent: float | None = None,
        compute_admitted: bool | None = None,
        licensed: bool | None = None,
        license_expires_in_days: float | None = None,
    ) -> None:
        """Change a controller's faults; arguments left `None` keep what it had."""
        controller = self.controllers.get(instance_id)
        if unreachable is not None:
            controller.unreachable = unreachable
        if latency is not None:
            controller.latency = latency
        if ready is not None:
            controller.ready = ready
        if answer is not None:
            controller.answer = answer
        if disk_used_percent is not None:
            controller.disk_used_percent = disk_used_percent
        if compute_admitted is not None:
            controller.set_compute_admitted(compute_admitted)
        if licensed is not None or license_expires_in_days is not None:
            controller.set_license(
                licensed=controller.licensed if licensed is None else licensed,
                expires_in_days=300 if license_expires_in_days is None else license_expires_in_days,
            )

    def enable_events(self) -> SimulatedQueue:
        """EventBridge → SQS on: every state change the fleet makes is sent to one queue."""
        if self.aws.queue is None:
            queue = SimulatedQueue(self.url)
            self.aws.queue = queue
            self.fleet.on_transition = queue.state_change
        return self.aws.queue

    def schedule_event(
        self, instance_id: str, code: str = "instance-retirement", *, in_days: float = 7.0
    ) -> dict[str, Any]:
        """An EC2 scheduled event, as AWS lists it in the instance's status until it is done."""
        instance = self.fleet.get(instance_id)
        if instance is None:
            raise KeyError(instance_id)
        not_before = time.time() + in_days * 86_400
        event = {
            "id": f"instance-event-{secrets.token_hex(8)}",
            "code": code,
            "description": {
                "instance-retirement": "The instance is running on degraded hardware",
                "instance-reboot": "The instance is scheduled for a reboot",
                "system-reboot": "Scheduled reboot",
                "system-maintenance": "Scheduled maintenance",
                "instance-stop": "The instance is scheduled to be stopped",
            }.get(code, "Scheduled event"),
            "not_before": not_before,
            "not_after": not_before + 2 * 3600,
        }
        instance.scheduled_events.append(event)
        return event

    def complete_events(self, instance_id: str) -> None:
        """AWS marks an event done by prefixing its description; it stays listed a while."""
        instance = self.fleet.get(instance_id)
        if instance is None:
            raise KeyError(instance_id)
        for event in instance.scheduled_events:
            if not event["description"].startswith("[Completed]"):
                event["description"] = f"[Completed] {event['description']}"

    def set_faults(
        self, *, throttling: bool | None = None, latency: float | None = None, error_rate: float | None = None
    ) -> None:
        faults = self.fleet.faults
        if throttling is not None:
            faults.throttling = throttling
            self.fleet.reset_buckets()
        if latency is not None:
            faults.latency = latency
        if error_rate is not None:
            faults.error_rate = error_rate

    # -- admin HTTP API --------------------------------------------------------------------

    @staticmethod
    def _describe(instance: SimulatedInstance) -> dict[str, Any]:
        return {
            "instance_id": instance.instance_id,
            "region": instance.region,
            "state": instance.state,
            "tags": instance.tags,
            "cpu_override": instance.cpu_override,
            "memory_override": instance.memory_override,
            "system_check": instance.system_check,
            "instance_check": instance.instance_check,
            "running_labs": instance.running_labs,
        }

    async def _list_instances(self, _request: Request) -> Response:
        return JSONResponse({"items": [self._describe(i) for i in self.fleet.all()]})

    async def _create_instances(self, request: Request) -> Response:
        body = await request.json()
        instances = self.add_workers(
            int(body.get("count", 1)), region=str(body.get("region", "us-east-1")), tags=body.get("tags")
        )
        return JSONResponse({"items": [self._describe(i) for i in instances]}, status_code=201)

    async def _instance_action(self, request: Request) -> Response:
        instance_id = request.path_params["instance_id"]
        action = request.path_params["action"]
        operations = {
            "start": self.fleet.start,
            "stop": lambda i: self.fleet.stop(i, requested=False),
            "terminate": self.fleet.terminate,
        }
        if action not in operations:
            return JSONResponse({"detail": f"unknown action {action!r}"}, status_code=404)
        try:
            previous, current = operations[action](instance_id)
        except KeyError:
            return JSONResponse({"detail": f"no instance {instance_id}"}, status_code=404)
        return JSONResponse({"instance_id": instance_id, "previous_state": previous, "state": current})

    async def _scheduled_events(self, request: Request) -> Response:
        """POST `{"code", "in_days"}` schedules an event; DELETE marks them all completed."""
        instance_id = request.path_params["instance_id"]
        try:
            if request.method == "DELETE":
                self.complete_events(instance_id)
                return JSONResponse({"status": "ok"})
            body = await request.json()
            event = self.schedule_event(
                instance_id,
                str(body.get("code", "instance-retirement")),
                in_days=float(body.get("in_days", 7)),
            )
        except KeyError:
            return JSONResponse({"detail": "no such instance"}, status_code=404)
        return JSONResponse(event, status_code=201)

    async def _set_metrics(self, request: Request) -> Response:
        body = await request.json()
        try:
            self.fleet.set_metrics(
                request.path_params["instance_id"], cpu=body.get("cpu"), memory=body.get("memory")
            )
        except KeyError:
            return JSONResponse({"detail": "no such instance"}, status_code=404)
        return JSONResponse({"status": "ok"})

    async def _set_checks(self, request: Request) -> Response:
        body = await request.json()
        try:
            self.fleet.set_status_checks(
                request.path_params["instance_id"], system=body.get("system"), instance=body.get("instance")
            )
        except KeyError:
            return JSONResponse({"detail": "no such instance"}, status_code=404)
        return JSONResponse({"status": "ok"})

    async def _set_controller(self, request: Request) -> Response:
        body = await request.json()
        name = request.path_params["name"]
        known = (
            "unreachable",
            "latency",
            "ready",
            "answer",
            "disk_used_percent",
            "compute_admitted",
            "licensed",
            "license_expires_in_days",
        )
        try:
            self.set_controller(name, **{key: body[key] for key in known if key in body})
            if "running_labs" in body:
                self.set_labs(name, int(body["running_labs"]))
        except KeyError:
            return JSONResponse({"detail": "no such controller"}, status_code=404)
        return JSONResponse({"status": "ok"})

    async def _set_faults(self, request: Request) -> Response:
        body = await request.json()
        self.set_faults(
            throttling=body.get("throttling"), latency=body.get("latency"), error_rate=body.get("error_rate")
        )
        faults = self.fleet.faults
        return JSONResponse(
            {"throttling": faults.throttling, "latency": faults.latency, "error_rate": faults.error_rate}
        )

    async def _stats(self, _request: Request) -> Response:
        return JSONResponse(
            {
                "requests": {f"{s}:{o}": n for (s, o), n in self.fleet.requests.items()},
                "throttled": self.fleet.throttled,
                "cml_requests": self.controllers.total_requests(),
                "instances": len(self.fleet.all()),
            }
        )
