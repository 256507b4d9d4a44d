"""The composition root: builds every part from `Settings` and owns their lifetimes."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
from opentelemetry import trace
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from cml_monitor.alerts.dispatcher import NotificationDispatcher
from cml_monitor.alerts.engine import AlertEngine, AlertSettings
from cml_monitor.alerts.notifiers import (
    Notifier,
    OpsgenieNotifier,
    PagerDutyNotifier,
    SlackNotifier,
    WebhookNotifier,
)
from cml_monitor.alerts.outbox import Channel
from cml_monitor.alerts.rules import RuleSettings
from cml_monitor.aws import AwsEc2Client
from cml_monitor.clock import Clock, utcnow
from cml_monitor.cml import CmlControllerClient
from cml_monitor.monitoring import WorkerMonitoringScheduler, WorkerNotificationHandler, build_job_store
from cml_monitor.settings import Settings
from cml_monitor.storage import CMLWorkerRepository, create_engine, migrate
from cml_monitor.storage.alerts import AlertRepository
from cml_monitor.storage.history import HistoryStore

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
    alerts: AlertRepository
    alert_engine: AlertEngine
    dispatcher: NotificationDispatcher
    http: httpx.AsyncClient
    history: HistoryStore
    background: set[asyncio.Task[Any]] = field(default_factory=set)
    _starter: asyncio.Task[None] | None = None
    _watchdog: asyncio.Task[None] | None = None
    _maintenance: asyncio.Task[None] | None = None

    def spawn(self, coroutine: Any) -> None:
        """Run work after the response (e.g. a refresh) and keep a reference until it ends."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def start(self) -> None:
        await migrate(self.engine)
        self.metrics.alerts_firing.set(await self.alerts.count_firing())
        self.dispatcher.start()
        self._maintenance = asyncio.get_running_loop().create_task(self._maintain_history())
        if not self.settings.worker_monitoring_enabled:
            logger.info("Worker monitoring is disabled (WORKER_MONITORING_ENABLED=false)")
            return
        self._watchdog = asyncio.get_running_loop().create_task(self._watch_unreachable())
        try:
            await self.scheduler.start_async()
        except Exception as exc:
            # The job store (Redis) may be down at boot: serve anyway, report not ready, retry.
            logger.error("Could not start worker monitoring (%s); retrying in the background", exc)
            self._starter = asyncio.get_running_loop().create_task(self._start_monitoring_later())

    async def _maintain_history(self, period: float = 600.0) -> None:
        """Roll raw samples up into hours and prune both, now and every ten minutes."""
        while True:
            try:
                await self.history.maintain(self.clock())
            except Exception as exc:
                logger.error("History maintenance failed: %s", exc)
            await asyncio.sleep(period)

    async def _watch_unreachable(self) -> None:
        """Every so often, raise `unreachable` for workers nobody could collect lately."""
        period = min(60.0, max(1.0, self.settings.worker_metrics_poll_interval / 2))
        while True:
            await asyncio.sleep(period)
            try:
                await self.alert_engine.check_unreachable()
            except Exception as exc:
                logger.error("Unreachable-worker check failed: %s", exc)

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
        for task in (self._starter, self._watchdog, self._maintenance):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self.background:
            await asyncio.gather(*self.background, return_exceptions=True)
        await self.scheduler.stop_async()
        await self.alert_engine.drain()
        await self.dispatcher.stop()
        await self.http.aclose()
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
                await asyncio.to_thread(self.scheduler.check_job_store)
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
    alerts = AlertRepository(engine)
    http = httpx.AsyncClient(timeout=10.0, limits=httpx.Limits(max_connections=50))
    channels, notifiers = build_channels(settings, http)
    dispatcher = NotificationDispatcher(
        alerts,
        notifiers,
        max_attempts=settings.worker_notification_max_attempts,
        retry_base=settings.worker_notification_retry_base,
        retry_max=settings.worker_notification_retry_max,
        clock=clock,
        on_result=lambda channel, result: metrics.notifications.labels(channel, result).inc(),
    )
    rules = RuleSettings(
        settings.worker_cpu_threshold, settings.worker_memory_threshold, settings.worker_alert_hysteresis
    )
    alert_engine = AlertEngine(
        alerts,
        channels,
        AlertSettings(
            rules=rules,
            for_samples=settings.worker_alert_for_samples,
            repeat_interval=timedelta(seconds=settings.worker_alert_repeat_interval),
            unreachable_after=timedelta(seconds=3 * settings.worker_metrics_poll_interval),
        ),
        clock=clock,
        on_outbox=dispatcher.wake,
        on_firing_count=metrics.alerts_firing.set,
        batch_window=settings.worker_collection_batch_window,
    )
    handler = WorkerNotificationHandler(
        cpu_threshold=settings.worker_cpu_threshold,
        memory_threshold=settings.worker_memory_threshold,
        hysteresis=settings.worker_alert_hysteresis,
        alert_engine=alert_engine,
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
        alerts=alerts,
        alert_engine=alert_engine,
        dispatcher=dispatcher,
        http=http,
        history=HistoryStore(
            engine,
            raw_retention=timedelta(hours=settings.worker_metrics_raw_retention_hours),
            retention=timedelta(days=settings.worker_metrics_retention_days),
        ),
    )


def build_channels(settings: Settings, http: httpx.AsyncClient) -> tuple[list[Channel], dict[str, Notifier]]:
    """The receivers the settings name, and a notifier for each kind of them."""
    secret = settings.worker_notification_webhook_secret
    channels = [Channel("webhook", url) for url in settings.worker_notification_webhooks]
    notifiers: dict[str, Notifier] = {
        "webhook": WebhookNotifier(http, secret.get_secret_value() if secret else None)
    }
    if settings.slack_webhook_url is not None:
        channels.append(Channel("slack", alerts_only=True))
        notifiers["slack"] = SlackNotifier(http, settings.slack_webhook_url.get_secret_value())
    if settings.pagerduty_routing_key is not None and settings.pagerduty_routing_key.get_secret_value():
        channels.append(Channel("pagerduty", alerts_only=True))
        notifiers["pagerduty"] = PagerDutyNotifier(
            http, settings.pagerduty_routing_key.get_secret_value(), settings.pagerduty_events_url
        )
    if settings.opsgenie_api_key is not None and settings.opsgenie_api_key.get_secret_value():
        channels.append(Channel("opsgenie", alerts_only=True))
        notifiers["opsgenie"] = OpsgenieNotifier(
            http, settings.opsgenie_api_key.get_secret_value(), settings.opsgenie_api_url
        )
    return channels, notifiers
