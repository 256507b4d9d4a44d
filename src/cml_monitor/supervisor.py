"""`serve` in two processes: the HTTP API here, the collection in a supervised child.

Measured (bench.load): one process reading 500 controllers every 10 s holds the event loop in
0.1-0.3 s steps of parsing, and the API's p95 went past 2 s. So `serve` (role `all`) now runs
the API replica in this process and a `collector` replica as a child (`collector_process`),
exactly the split `CML_MONITOR_ROLE=api|collector` gives across machines, with a Unix socket
(`local_bus`) in place of Redis. Both share the database.

- `CollectorSupervisor` starts the child, restarts it with backoff when it dies (`/ready` says
  `collector: restarting …` meanwhile) and stops it with SIGTERM when `serve` stops.
- `RemoteScheduler` stands where the scheduler stands in the API: registering, removing,
  refreshing a worker are calls to the child, so they behave as in one process (the child adds
  the region's job and collects the worker at once), and next runs are the child's.
- `SupervisedRuntime` is the API replica's runtime plus the above; its readiness adds the
  child's checks (job store, scheduler, schedule, events queue).

`CML_MONITOR_COLLECTOR_PROCESS=false` keeps the old single process.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

from pydantic import SecretStr

from cml_monitor.cml.guard import UrlGuard
from cml_monitor.collector_metrics import CollectorMetricsRelay
from cml_monitor.event_bus import EventBus
from cml_monitor.local_bus import ChannelServer
from cml_monitor.monitoring import FleetMonitor, ObserverPublisher, WorkerMonitoringScheduler
from cml_monitor.readiness import Check, CheckState
from cml_monitor.runtime import MonitorRuntime, build_runtime
from cml_monitor.settings import Settings
from cml_monitor.usecases import AlertOperations, WorkerOperations

logger = logging.getLogger(__name__)

CALL_TIMEOUT = 5.0
READINESS_TIMEOUT = 4.0  # the child's own probes run side by side, 3 s each at most
CLEAN_EXIT_GRACE = 15.0  # longer than the API's own graceful stop (10 s)


def settings_payload(settings: Settings) -> str:
    """The settings as JSON for the child's stdin, secrets included (never in argv or the env)."""
    values = {
        name: value.get_secret_value() if isinstance(value, SecretStr) else value
        for name, value in settings.model_dump().items()
    }
    return json.dumps(values, default=str)


class CollectorSupervisor:
    """Keeps one collector child running; restarts it with backoff; stops it on SIGTERM."""

    def __init__(
        self,
        settings: Settings,
        socket_path: str,
        *,
        restart_min: float = 1.0,
        restart_max: float = 30.0,
        stop_timeout: float = 45.0,
        on_exit: Callable[[], None] | None = None,
    ) -> None:
        self._payload = settings_payload(settings)
        self._path = socket_path
        self._restart_min, self._restart_max = restart_min, restart_max
        self._stop_timeout = stop_timeout
        self._on_exit = on_exit
        self._process: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.restarts = 0
        self.problem: str | None = "starting"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    async def start(self) -> None:
        await self._spawn()
        self._task = asyncio.get_running_loop().create_task(self._watch(), name="collector-supervisor")

    async def _spawn(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cml_monitor.collector_process",
            self._path,
            stdin=asyncio.subprocess.PIPE,
        )
        assert self._process.stdin is not None
        self._process.stdin.write(self._payload.encode())
        await self._process.stdin.drain()
        self._process.stdin.close()
        logger.info("Started the collector process (pid %d)", self._process.pid)

    async def _watch(self) -> None:
        delay = self._restart_min
        while True:
            assert self._process is not None
            started = time.monotonic()
            code = await self._process.wait()
            if self._stopping:
                return
            if self._on_exit is not None:
                self._on_exit()
            if time.monotonic() - started > 60:
                delay = self._restart_min  # it ran a while: a new failure, not a crash loop
            how = f"signal {-code}" if code < 0 else f"code {code}"
            # A clean exit we did not ask for is SIGTERM or Ctrl-C sent to the whole group
            # (systemd, a terminal): this process is stopping too; restart only if it is not.
            wait = max(delay, CLEAN_EXIT_GRACE) if code == 0 else delay
            self.problem = f"restarting: the collector exited with {how}; next start in {wait:.0f} s"
            logger.log(
                logging.WARNING if code == 0 else logging.ERROR,
                "The collector process exited with %s; restarting it in %.0f s",
                how,
                wait,
            )
            await asyncio.sleep(wait)
            delay = min(delay * 2, self._restart_max)
            try:
                await self._spawn()
            except OSError as exc:
                logger.error("Could not start the collector process: %s", exc)
                continue
            self.restarts += 1
            self.problem = "starting"

    async def stop(self) -> None:
        """SIGTERM to the child, wait for its clean stop (SIGKILL after `stop_timeout`)."""
        self._stopping = True
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(self._stop_timeout):
                    await process.wait()
            except TimeoutError:
                logger.error("The collector did not stop in %.0f s; killing it", self._stop_timeout)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
            logger.info("The collector process stopped")
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def _parse_time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


class RemoteScheduler:
    """The scheduler as the API sees it, when the scheduler runs in the collector child.

    Changes are calls; a child that is restarting misses nothing that matters, because it
    derives its schedule from the database when it starts. The view (next runs, monitored
    workers) is the child's, read at most once a second.
    """

    def __init__(self, channel: ChannelServer) -> None:
        self._channel = channel
        self._view: dict[str, Any] = {"started": False, "runs": {}, "paused": [], "monitored": []}
        self._runs: dict[str, datetime | None] = {}
        self._paused: frozenset[str] = frozenset()
        self._read_at = 0.0
        self._reading: asyncio.Future[None] | None = None
        self._has_view = False
        self._calls: set[asyncio.Task[Any]] = set()

    @property
    def running(self) -> bool:
        return bool(self._view["started"]) and self._channel.connected

    async def refresh_view(self, *, force: bool = False) -> None:
        """Read the child's full view, at most once a second, without making a request wait.

        A request never waits on the child's event loop (busy in a cycle, it may answer late):
        once a view was read, a stale one is served while a fresh one is read in the background.
        """
        if not force and time.monotonic() - self._read_at < 1.0:
            return
        if self._reading is None or self._reading.done():
            self._read_at = time.monotonic()
            self._reading = asyncio.ensure_future(self._read_view())
        if force or not self._has_view:
            await asyncio.shield(self._reading)

    async def _read_view(self) -> None:
        try:
            view = await self._channel.call("view", CALL_TIMEOUT)
        except Exception as exc:
            logger.debug("Could not read the collector's schedule: %s", exc)
            return
        self._view, self._has_view = view, True
        self._take(view)

    def on_snapshot(self, kind: str, message: dict[str, Any]) -> None:
        """The child's schedule, sent every second: next runs stay current between reads."""
        if kind == "metrics" and isinstance(message.get("schedule"), dict):
            self._view["started"] = message["schedule"].get("started", False)
            self._take(message["schedule"])

    def _take(self, schedule: dict[str, Any]) -> None:
        self._runs = {region: _parse_time(at) for region, at in schedule.get("runs", {}).items()}
        self._paused = frozenset(schedule.get("paused", ()))

    def next_run_at(self, worker_id: str, aws_region: str | None = None) -> datetime | None:
        if not self.running or worker_id in self._paused or aws_region is None:
            return None
        return self._runs.get(aws_region)

    def monitoring_jobs(self) -> list[dict[str, Any]]:
        from cml_monitor.monitoring.region_jobs import job_id_for_region

        return [
            {"worker_id": worker_id, "job_id": job_id_for_region(region), "next_run_at": self._runs[region]}
            for worker_id, region in self._view["monitored"]
            if region in self._runs
        ]

    async def jobs_view(self) -> tuple[list[dict[str, Any]], bool]:
        """The monitored workers and their next runs as the child has them (asked over the
        channel, which the child answers from memory), and whether that could not be done."""
        await self.refresh_view()
        return self.monitoring_jobs(), not self._has_view

    async def _call(self, method: str, worker_id: str) -> None:
        try:
            # A child still starting (the API answers before it connects) gets the call once it
            # is there, rather than a worker registered or refreshed meanwhile being left out.
            await self._channel.wait_connected(CALL_TIMEOUT)
            await self._channel.call(method, CALL_TIMEOUT, worker_id=worker_id)
        except Exception as exc:
            # The child derives its schedule from the database when it (re)starts.
            logger.warning("The collector did not take %s of %s: %s", method, worker_id, exc)
        if method != "collect_soon":  # the monitored set changed: the next reader waits for it
            self._read_at, self._has_view = 0.0, False

    async def start_monitoring_worker_async(self, worker_id: str, *, run_now: bool = True) -> None:
        await self._call("start_monitoring", worker_id)

    async def stop_monitoring_worker_async(self, worker_id: str) -> None:
        await self._call("stop_monitoring", worker_id)

    def collect_soon(self, worker_id: str) -> asyncio.Task[None]:
        task = asyncio.ensure_future(self._call("collect_soon", worker_id))
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)
        return task

    def wake_dispatcher(self) -> None:
        """Notifications written here (a manual action's) go out now, not at the child's next poll."""
        task = asyncio.ensure_future(self._wake())
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

    async def _wake(self) -> None:
        try:
            await self._channel.call("wake_dispatcher", CALL_TIMEOUT)
        except Exception as exc:  # the child's dispatcher polls the outbox anyway
            logger.debug("Could not wake the collector's dispatcher: %s", exc)


@dataclasses.dataclass
class SupervisedRuntime(MonitorRuntime):
    """The API replica's runtime, with the collector child it supervises."""

    channel: ChannelServer | None = None
    supervisor: CollectorSupervisor | None = None
    relay: CollectorMetricsRelay | None = None
    channel_is_bus: bool = True
    socket_dir: str = ""

    async def __aenter__(self) -> SupervisedRuntime:
        await super().__aenter__()
        assert self.channel is not None and self.supervisor is not None
        stack = self._stack
        try:
            stack.callback(shutil.rmtree, self.socket_dir, True)
            if not self.channel_is_bus:  # else the runtime started it as its bus
                stack.push_async_callback(self.channel.close)
                await self.channel.start()
            await self.supervisor.start()
            stack.push_async_callback(self.supervisor.stop)
        except BaseException:
            await stack.aclose()
            raise
        return self

    async def readiness(self) -> list[Check]:
        """This replica's checks, then `collector` (the child answers), then the child's own
        checks this one does not make (job store, scheduler, schedule, events queue); the child
        is asked side by side with this replica's own probes, so all is said within 5 s."""
        assert self.channel is not None and self.supervisor is not None
        asked = asyncio.ensure_future(self.channel.call("readiness", READINESS_TIMEOUT))
        dropped = {"job_store", *(["event_bus"] if self.channel_is_bus else [])}
        # The job store is "disabled" in an API replica (the child's is below); the channel as
        # event bus is reported as `collector`.
        checks = [check for check in await super().readiness() if check.name not in dropped]
        try:
            theirs = await asked
        except Exception as exc:
            problem = self.supervisor.problem if self.supervisor.problem != "starting" else None
            detail = problem or self.channel.problem or f"unavailable: {type(exc).__name__}"
            return [*checks, Check.failing("collector", detail)]
        checks.append(Check.ok("collector"))
        names = {check.name for check in checks}
        for name, state, detail in theirs:
            if name not in names:
                checks.append(Check(name, CheckState(state), detail))
        return checks


def build_supervised_runtime(settings: Settings, **kwargs: Any) -> SupervisedRuntime:
    """The API replica here, wired to a collector child (started when the runtime is entered)."""
    socket_dir = tempfile.mkdtemp(prefix="cml-monitor-")
    channel = ChannelServer(os.path.join(socket_dir, "collector.sock"))
    channel_is_bus = not settings.event_bus_url

    def channel_bus(sinks: ObserverPublisher) -> EventBus:
        channel.sinks = sinks
        return channel

    api_settings = settings.model_copy(update={"cml_monitor_role": "api"})
    base = build_runtime(api_settings, event_bus=channel_bus if channel_is_bus else None, **kwargs)
    remote = RemoteScheduler(channel)
    scheduler = cast(WorkerMonitoringScheduler, remote)
    workers = WorkerOperations(
        base.repository,
        scheduler,
        cast(FleetMonitor, remote),  # collecting a worker now is the child's too
        base.aws,
        base.history,
        base.metrics,
        clock=base.clock,
        monitoring="schedule" if settings.worker_monitoring_enabled else "off",
        url_guard=UrlGuard(settings.blocked_networks),
        executor=base.executor,
        freshness=base.freshness,
        controllers=base.cml,
    )
    base.live_events.next_run = workers.next_run_at  # the child's schedule, as GET reads it
    # The API's own dispatcher never runs (the child's does): a wake goes to the child.
    base.dispatcher.wake = remote.wake_dispatcher  # type: ignore[method-assign]
    relay = CollectorMetricsRelay(base.metrics)

    def on_snapshot(kind: str, message: dict[str, Any]) -> None:
        relay.on_snapshot(kind, message)
        remote.on_snapshot(kind, message)

    channel.on_snapshot = on_snapshot
    supervisor = CollectorSupervisor(settings, channel.path, on_exit=relay.forget_child)
    fresh = ("background", "_stack")  # the new runtime's own
    parts = {f.name: getattr(base, f.name) for f in dataclasses.fields(MonitorRuntime) if f.name not in fresh}
    parts.update(
        scheduler=scheduler,
        workers=workers,
        alert_operations=AlertOperations(base.alert_store, workers, clock=base.clock),
    )
    return SupervisedRuntime(
        **parts,
        channel=channel,
        supervisor=supervisor,
        relay=relay,
        channel_is_bus=channel_is_bus,
        socket_dir=socket_dir,
    )


def serve_runtime(settings: Settings, **kwargs: Any) -> MonitorRuntime:
    """What `serve` and the demo run: two processes for the role `all`, else one."""
    if settings.cml_monitor_role == "all" and settings.cml_monitor_collector_process:
        return build_supervised_runtime(settings, **kwargs)
    return build_runtime(settings, **kwargs)
