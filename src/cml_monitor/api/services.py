"""The composition root: builds every part from `Settings` and owns their lifetimes."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from cml_monitor.aws import AwsEc2Client
from cml_monitor.clock import Clock, utcnow
from cml_monitor.cml import CmlControllerClient
from cml_monitor.monitoring import WorkerMonitoringScheduler, WorkerNotificationHandler, build_job_store
from cml_monitor.settings import Settings
from cml_monitor.storage import CMLWorkerRepository, create_engine, migrate

from .events import EventHub
from .metrics import PrometheusMetrics

logger = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    repository: CMLWorkerRepository
    aws: AwsEc2Client
    cml: CmlControllerClient
    handler: WorkerNotificationHandler
    scheduler: WorkerMonitoringScheduler
    events: EventHub
    metrics: PrometheusMetrics
    clock: Clock
    background: set[asyncio.Task[Any]] = field(default_factory=set)
    _starter: asyncio.Task[None] | None = None

    def spawn(self, coroutine: Any) -> None:
        """Run work after the response (e.g. a refresh) and keep a reference until it ends."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def start(self) -> None:
        await migrate(self.engine)
        if not self.settings.worker_monitoring_enabled:
            logger.info("Worker monitoring is disabled (WORKER_MONITORING_ENABLED=false)")
            return
        try:
            await self.scheduler.start_async()
        except Exception as exc:
            # The job store (Redis) may be down at boot: serve anyway, report not ready, retry.
            logger.error("Could not start worker monitoring (%s); retrying in the background", exc)
            self._starter = asyncio.get_running_loop().create_task(self._start_monitoring_later())

    async def _start_monitoring_later(self, delay: float = 5.0) -> None:
        while True:
            await asyncio.sleep(delay)
            try:
                await self.scheduler.start_async()
            except Exception as exc:
                logger.error("Worker monitoring still cannot start: %s", exc)
                continue
            logger.info("Worker monitoring started after retrying")
            return

    async def close(self) -> None:
        if self._starter is not None:
            self._starter.cancel()
            await asyncio.gather(self._starter, return_exceptions=True)
        if self.background:
            await asyncio.gather(*self.background, return_exceptions=True)
        await self.scheduler.stop_async()
        await self.cml.close()
        await self.aws.close()
        await self.engine.dispose()

    async def readiness(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unavailable: {type(exc).__name__}"
        if not self.settings.worker_monitoring_enabled:
            checks["job_store"] = "disabled"
        else:
            try:
                await asyncio.to_thread(self.scheduler.monitoring_jobs)
                checks["job_store"] = "ok" if self.scheduler.running else "stopped"
            except Exception as exc:
                checks["job_store"] = f"unavailable: {type(exc).__name__}"
        return checks


def build_services(
    settings: Settings,
    *,
    aws_client: AwsEc2Client | None = None,
    cml_client: CmlControllerClient | None = None,
    clock: Clock = utcnow,
    tracer: trace.Tracer | None = None,
) -> Services:
    engine = create_engine(settings.database_url)
    repository = CMLWorkerRepository(engine)
    metrics = PrometheusMetrics()
    aws = aws_client or AwsEc2Client(
        endpoint_url=settings.aws_endpoint_url,
        max_attempts=settings.aws_max_attempts,
        retry_mode=settings.aws_retry_mode,
        clock=clock,
    )
    aws.requests.add_listener(metrics.on_aws_request)
    cml = cml_client or CmlControllerClient(
        username=settings.cml_username,
        password=settings.cml_password.get_secret_value(),
        verify_tls=settings.cml_verify_tls,
        timeout=settings.cml_timeout,
    )
    handler = WorkerNotificationHandler(
        cpu_threshold=settings.worker_cpu_threshold,
        memory_threshold=settings.worker_memory_threshold,
        clock=clock,
    )
    events = EventHub()
    scheduler = WorkerMonitoringScheduler(
        repository,
        aws,
        handler,
        cml_client=cml,
        job_store=build_job_store(settings.background_job_store_url, settings.database_url),
        poll_interval=settings.worker_metrics_poll_interval,
        clock=clock,
        tracer=tracer,
        batch_window=settings.worker_collection_batch_window,
        cml_concurrency=settings.cml_concurrency,
        observers=[metrics, events],
        cycle_observer=metrics.collection_seconds.observe,
    )
    return Services(
        settings=settings,
        engine=engine,
        repository=repository,
        aws=aws,
        cml=cml,
        handler=handler,
        scheduler=scheduler,
        events=events,
        metrics=metrics,
        clock=clock,
    )
