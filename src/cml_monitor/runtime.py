"""The composition root: builds the whole monitor from `Settings` and owns its lifetime.

It only wires: every policy lives with the part it concerns (`policies.py` turns settings into
each part's parameters, `readiness.py` judges `/ready`, `monitoring/unreachable.py` decides when
workers may be judged unreachable). `MonitorRuntime` holds every part and the use cases the API
calls, named alike: `*_store` for persistence, `*_operations` for use cases. It is entered as an
async context manager whose exit unwinds one `AsyncExitStack`, so every part that was started is
stopped, in reverse order, whatever failed half-way. It needs no web app: `api` only adds HTTP.
"""

from __future__ import annotations

import logging
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from cml_monitor.actions import ActionExecutor, AutomaticActions
from cml_monitor.alerts.action_notices import ActionNotices
from cml_monitor.alerts.channels import build_channels
from cml_monitor.alerts.dispatcher import NotificationDispatcher
from cml_monitor.alerts.engine import AlertEngine
from cml_monitor.aws import AwsEc2Client
from cml_monitor.aws.events_queue import EventQueueConsumer
from cml_monitor.background import BackgroundTasks
from cml_monitor.clock import Clock, utcnow
from cml_monitor.cml import CmlControllerClient
from cml_monitor.cml.guard import UrlGuard
from cml_monitor.domain import EventObserver
from cml_monitor.event_bus import RedisEventBus
from cml_monitor.live_events import EventHub
from cml_monitor.metrics import PrometheusMetrics
from cml_monitor.monitoring import (
    FleetCollector,
    FleetMonitor,
    MonitoredWorkers,
    ObserverPublisher,
    WorkerMonitoringScheduler,
    build_job_store,
)
from cml_monitor.monitoring.freshness import FleetFreshness
from cml_monitor.monitoring.heartbeat import Heartbeat
from cml_monitor.monitoring.region_jobs import RegionJobs
from cml_monitor.monitoring.state_changes import StateChangeApplier
from cml_monitor.monitoring.unreachable import OwnOutages, UnreachableCheck
from cml_monitor.policies import (
    action_settings,
    alert_settings,
    collects,
    history_retention,
    idle_policy,
    monitoring_mode,
)
from cml_monitor.readiness import Check, Readiness
from cml_monitor.settings import Settings
from cml_monitor.storage import CMLWorkerRepository, LeaseStore, create_engine, migrate
from cml_monitor.storage.actions import ActionRepository
from cml_monitor.storage.alerts import AlertRepository
from cml_monitor.storage.collections import CollectionStatusStore
from cml_monitor.storage.history import HistoryStore
from cml_monitor.usecases import ActionOperations, AlertOperations, WorkerOperations

logger = logging.getLogger(__name__)


@dataclass
class MonitorRuntime:
    settings: Settings
    clock: Clock
    engine: AsyncEngine
    repository: CMLWorkerRepository
    history: HistoryStore
    alert_store: AlertRepository
    aws: AwsEc2Client
    cml: CmlControllerClient
    http: httpx.AsyncClient
    metrics: PrometheusMetrics
    live_events: EventHub
    alert_engine: AlertEngine
    dispatcher: NotificationDispatcher
    monitor: FleetMonitor
    scheduler: WorkerMonitoringScheduler
    unreachable: UnreachableCheck
    action_store: ActionRepository
    executor: ActionExecutor
    automatic: AutomaticActions
    events_queue: EventQueueConsumer | None
    workers: WorkerOperations
    alert_operations: AlertOperations
    action_operations: ActionOperations
    freshness: FleetFreshness
    ready: Readiness
    event_bus: RedisEventBus | None = None
    background: BackgroundTasks = field(default_factory=BackgroundTasks)
    _stack: AsyncExitStack = field(default_factory=AsyncExitStack)

    async def __aenter__(self) -> MonitorRuntime:
        stack = self._stack
        try:
            stack.push_async_callback(self.engine.dispose)
            stack.push_async_callback(self.aws.close)
            stack.push_async_callback(self.cml.close)
            stack.push_async_callback(self.http.aclose)
            await migrate(self.engine)
            self.metrics.alerts_firing.set(await self.alert_store.count_firing())
            if self.event_bus is not None:
                stack.push_async_callback(self.event_bus.close)
                await self.event_bus.start()
            stack.push_async_callback(self.background.cancel_all)
            stack.push_async_callback(self.monitor.stop)  # the collections an API replica asked for
            await self.freshness.reread()
            period = min(10.0, max(1.0, self.settings.worker_metrics_poll_interval / 4))
            self.background.every(
                period, self.freshness.reread, "Reading the collection records", first_delay=period
            )
            if not self.collects:
                logger.info(
                    "Role %s: serving the API only; collectors do the monitoring",
                    self.settings.cml_monitor_role,
                )
                return self
            self.dispatcher.start()
            stack.push_async_callback(self.dispatcher.stop)
            await self.executor.settle_interrupted()
            self.background.every(600.0, lambda: self.history.maintain(self.clock()), "History maintenance")
            if self.settings.worker_monitoring_enabled:
                await self._start_monitoring()
                if self.events_queue is not None:
                    self.background.spawn(self.events_queue.run())
            else:
                logger.info("Worker monitoring is disabled (WORKER_MONITORING_ENABLED=false)")
        except BaseException:
            await stack.aclose()
            raise
        return self

    @property
    def collects(self) -> bool:
        """Whether this replica runs the scheduler, the dispatcher and the background checks."""
        return collects(self.settings)

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()

    async def _start_monitoring(self) -> None:
        period = min(60.0, max(1.0, self.settings.worker_metrics_poll_interval / 2))
        self.background.every(period, self.unreachable, "Unreachable-worker check", first_delay=period)
        self._stack.push_async_callback(self.scheduler.stop_async)
        self.unreachable.blind_until_now()
        try:
            await self.scheduler.start_async()
        except Exception as exc:
            # The job store (Redis) may be down at boot: serve anyway, report not ready, retry.
            logger.error("Could not start worker monitoring (%s); retrying in the background", exc)
            self.background.spawn(self.scheduler.start_retrying())

    async def readiness(self) -> list[Check]:
        """Each dependency's check, for `/ready`."""
        return await self.ready.checks()


def build_runtime(settings: Settings) -> MonitorRuntime:
    """Wire every part from the settings; nothing is started until the runtime is entered."""
    clock = utcnow
    poll = settings.worker_metrics_poll_interval
    collecting = collects(settings)
    engine = create_engine(settings.database_url, timeout=settings.database_timeout)
    repository = CMLWorkerRepository(engine)
    metrics = PrometheusMetrics()
    aws = AwsEc2Client(
        endpoint_url=settings.aws_endpoint_url,
        max_attempts=settings.aws_max_attempts,
        retry_mode=settings.aws_retry_mode,
        clock=clock,
    )
    aws.requests.add_listener(metrics.on_aws_request)
    aws.requests.add_metrics_listener(metrics.cloudwatch_metrics.inc)
    cml = CmlControllerClient(
        username=settings.cml_username,
        password=settings.cml_password.get_secret_value(),
        verify_tls=settings.cml_verify_tls,
        timeout=settings.cml_timeout,
        max_labs=settings.cml_max_labs,
        blocked_networks=settings.blocked_networks,
        automation_users=settings.cml_automation_users,
    )
    alerts = AlertRepository(engine)
    raw_retention, retention = history_retention(settings)
    history = HistoryStore(engine, raw_retention=raw_retention, retention=retention)
    http = httpx.AsyncClient(
        timeout=settings.worker_notification_timeout, limits=httpx.Limits(max_connections=50)
    )
    channels, notifiers = build_channels(settings, http)
    dispatcher = NotificationDispatcher(
        alerts,
        notifiers,
        max_age=settings.worker_notification_max_age,
        delivery_timeout=settings.worker_notification_timeout,
        retry_base=settings.worker_notification_retry_base,
        retry_max=settings.worker_notification_retry_max,
        clock=clock,
        on_result=lambda channel, result: metrics.notifications.labels(channel, result).inc(),
    )
    alert_engine = AlertEngine(
        alerts,
        channels,
        alert_settings(settings),
        clock=clock,
        on_outbox=dispatcher.wake,
        on_firing_count=metrics.alerts_firing.set,
    )
    idle = idle_policy(settings)
    action_store = ActionRepository(engine)
    replica = uuid.uuid4().hex  # this replica, as lease holder and in the collection records
    freshness = FleetFreshness(
        CollectionStatusStore(engine),
        interval_seconds=poll,
        holder=replica,
        enabled=settings.worker_monitoring_enabled,
        clock=clock,
        on_collected=lambda region, at: metrics.last_collection.labels(region).set(at),
    )
    beat_url = settings.cml_monitor_heartbeat_url
    heartbeat = Heartbeat(http, beat_url, interval_seconds=poll, clock=clock) if beat_url else None
    notices = ActionNotices(alerts, channels, clock=clock, on_outbox=dispatcher.wake)
    executor = ActionExecutor(
        action_store,
        repository,
        aws,
        idle_policy=idle,
        clock=clock,
        notify=notices,
        on_result=metrics.on_action,
    )
    automatic = AutomaticActions(executor, action_store, alerts, cml, action_settings(settings), clock=clock)
    events = EventHub()
    observer_failed = metrics.observer_failures.labels

    def fan_out(*observers: EventObserver) -> ObserverPublisher:
        return ObserverPublisher(
            observers, timeout=settings.worker_observer_timeout, on_failure=lambda n: observer_failed(n).inc()
        )

    bus = RedisEventBus(settings.event_bus_url, fan_out(metrics, events)) if settings.event_bus_url else None
    monitored = MonitoredWorkers()
    collector = FleetCollector(
        repository,
        aws,
        cml,
        clock=clock,
        cml_concurrency=settings.cml_concurrency,
        licensing_interval=settings.cml_licensing_check_interval,
        activity_interval=settings.worker_idle_check_interval,
        idle_policy=idle,
        cycle_observer=metrics.collection_seconds.observe,
    )
    # The one rule that picks observers per role: with an event bus, a collector publishes its
    # events to Redis and every replica (this one too) feeds its gauges and SSE from the bus;
    # without one, this replica feeds them directly. Automatic actions run where the events are
    # collected; the alert engine (the seed's notification handler) sees every event too.
    publisher = fan_out(alert_engine, automatic, *([bus] if bus is not None else [metrics, events]))
    outages = OwnOutages()
    monitor = FleetMonitor(
        repository,
        collector,
        publisher,
        monitored,
        leases=LeaseStore(engine),
        holder=replica,
        poll_interval=poll,
        clock=clock,
        outages=outages,
        outcome_listeners=[
            freshness.record,
            alert_engine.region_outcome,
            *([heartbeat.note] if heartbeat is not None else []),
        ],
    )
    job_store = build_job_store(settings.background_job_store_url, settings.database_url)
    jobs = RegionJobs(job_store, poll_interval=poll, clock=clock)
    scheduler = WorkerMonitoringScheduler(monitor, monitored, repository, jobs, poll_interval=poll)
    unreachable = UnreachableCheck(
        outages,
        scheduler,
        monitor,
        alert_engine.check_unreachable,
        window=alert_engine.settings.unreachable_after,
        clock=clock,
    )
    events_queue = None
    if settings.worker_events_queue_url:
        events_queue = EventQueueConsumer(
            settings.worker_events_queue_url,
            StateChangeApplier(repository, monitor.publish, monitor.collect_soon),
            region=settings.aws_region,
            endpoint_url=settings.aws_endpoint_url,
            on_result=lambda kind, result: metrics.aws_events.labels(kind, result).inc(),
        )
    workers = WorkerOperations(
        repository,
        scheduler,
        monitor,
        aws,
        history,
        metrics,
        clock=clock,
        monitoring=monitoring_mode(settings),
        url_guard=UrlGuard(settings.blocked_networks),
        executor=executor,
        freshness=freshness,
    )
    return MonitorRuntime(
        settings=settings,
        clock=clock,
        engine=engine,
        repository=repository,
        history=history,
        alert_store=alerts,
        aws=aws,
        cml=cml,
        http=http,
        metrics=metrics,
        live_events=events,
        alert_engine=alert_engine,
        dispatcher=dispatcher,
        monitor=monitor,
        scheduler=scheduler,
        unreachable=unreachable,
        action_store=action_store,
        executor=executor,
        automatic=automatic,
        events_queue=events_queue,
        workers=workers,
        alert_operations=AlertOperations(alerts, workers, clock=clock),
        action_operations=ActionOperations(action_store, repository),
        freshness=freshness,
        ready=Readiness(
            engine,
            freshness.check,
            schedule=scheduler if collecting and settings.worker_monitoring_enabled else None,
            events_queue=events_queue if collecting else None,
            bus=bus,
        ),
        event_bus=bus,
    )
