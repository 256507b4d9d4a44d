"""The composition root: builds the whole monitor from `Settings` and owns its lifetime.

It only wires: every policy lives with the part it concerns (`policies.py` turns settings into
each part's parameters, `readiness.py` judges `/ready`, `monitoring/unreachable.py` decides when
workers may be judged unreachable, `clients.py` configures what reads AWS and CML,
`alerts/channels.py` the receivers). `MonitorRuntime` holds every part and the use cases the API
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

from cml_monitor.actions import ACTION_LEASE, ActionExecutor, AutomaticActions
from cml_monitor.alerts.action_notices import ActionNotices
from cml_monitor.alerts.alertmanager_refresh import AlertmanagerRefresher
from cml_monitor.alerts.channels import alertmanager_refresher, build_channels, build_dispatcher
from cml_monitor.alerts.dispatcher import NotificationDispatcher
from cml_monitor.alerts.engine import AlertEngine
from cml_monitor.aws import AwsEc2Client
from cml_monitor.aws.events_queue import EventQueues
from cml_monitor.background import BackgroundTasks
from cml_monitor.clients import aws_client, cml_client, events_queues, fleet_collector, migrate_or_explain
from cml_monitor.clock import Clock, utcnow
from cml_monitor.cml import CmlControllerClient
from cml_monitor.cml.guard import UrlGuard
from cml_monitor.domain import EventObserver
from cml_monitor.event_bus import EventBus, EventBusFactory, RedisEventBus
from cml_monitor.live_events import EventHub
from cml_monitor.metrics import PrometheusMetrics
from cml_monitor.monitoring import (
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
    discovery_settings,
    history_retention,
    idle_policy,
    monitoring_mode,
)
from cml_monitor.readiness import Check, Readiness
from cml_monitor.settings import Settings
from cml_monitor.storage import CMLWorkerRepository, LeaseStore, create_engine
from cml_monitor.storage.actions import ActionRepository
from cml_monitor.storage.alerts import AlertRepository
from cml_monitor.storage.collections import CollectionStatusStore
from cml_monitor.storage.history import HistoryStore
from cml_monitor.usecases import ActionOperations, AlertOperations, WorkerOperations
from cml_monitor.usecases.discovery import WorkerDiscovery

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
    monitored: MonitoredWorkers
    scheduler: WorkerMonitoringScheduler
    unreachable: UnreachableCheck
    action_store: ActionRepository
    executor: ActionExecutor
    automatic: AutomaticActions
    events_queue: EventQueues | None
    workers: WorkerOperations
    alert_operations: AlertOperations
    action_operations: ActionOperations
    freshness: FleetFreshness
    ready: Readiness
    event_bus: EventBus | None = None
    alertmanager_refresher: AlertmanagerRefresher | None = None
    discovery: WorkerDiscovery | None = None
    background: BackgroundTasks = field(default_factory=BackgroundTasks)
    _stack: AsyncExitStack = field(default_factory=AsyncExitStack)

    async def __aenter__(self) -> MonitorRuntime:
        stack = self._stack
        try:
            stack.push_async_callback(self.engine.dispose)
            stack.push_async_callback(self.aws.close)
            stack.push_async_callback(self.cml.close)
            stack.push_async_callback(self.http.aclose)
            await migrate_or_explain(self.engine, self.settings.database_url)
            self.metrics.set_firing(await self.alert_store.firing())
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
            if (refresher := self.alertmanager_refresher) is not None:
                every = refresher.interval
                self.background.every(every, refresher.refresh, "Alertmanager re-post", first_delay=every)
            await self.executor.settle_interrupted()
            # Again every lease: an action whose replica died after this one started is
            # settled (and its worker freed for the next action) without waiting for a restart.
            lease = ACTION_LEASE.total_seconds()
            self.background.every(
                lease, self.executor.settle_interrupted, "Action reconciliation", first_delay=lease
            )
            self.background.every(600.0, lambda: self.history.maintain(self.clock()), "History maintenance")
            if self.settings.worker_monitoring_enabled:
                await self._start_monitoring()
                if self.events_queue is not None:
                    self.background.spawn(self.events_queue.run())
                if self.discovery is not None:
                    self.background.every(
                        self.discovery.settings.interval, self.discovery.run_once, "Worker discovery"
                    )
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


def build_runtime(settings: Settings, *, event_bus: EventBusFactory | None = None) -> MonitorRuntime:
    """Wire every part from the settings; nothing is started until the runtime is entered.

    `event_bus` builds the bus in place of Redis's (`serve`'s local channel to its collector)."""
    clock = utcnow
    poll = settings.worker_metrics_poll_interval
    collecting = collects(settings)
    engine = create_engine(settings.database_url, timeout=settings.database_timeout)
    metrics = PrometheusMetrics()
    repository = CMLWorkerRepository(engine, on_rejected=metrics.on_rejected_row)
    aws = aws_client(settings, metrics, clock)
    cml = cml_client(settings, clock)
    alerts = AlertRepository(engine, on_rejected=metrics.on_rejected_row)
    raw_retention, retention = history_retention(settings)
    history = HistoryStore(engine, raw_retention=raw_retention, retention=retention)
    http = httpx.AsyncClient(
        timeout=settings.worker_notification_timeout, limits=httpx.Limits(max_connections=50)
    )
    channels, notifiers = build_channels(settings, http, clock=clock)
    dispatcher = build_dispatcher(settings, alerts, notifiers, metrics, clock=clock)
    alert_engine = AlertEngine(
        alerts,
        channels,
        alert_settings(settings),
        clock=clock,
        on_outbox=dispatcher.wake,
        on_firing=metrics.set_firing,
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
        on_collected=metrics.on_region_collected,
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
    pause_notices = cml if settings.worker_auto_pause_notice else None  # banners on the controller
    automatic = AutomaticActions(
        executor, action_store, alerts, cml, action_settings(settings), clock=clock, notices=pause_notices
    )
    events = EventHub()
    observer_failed = metrics.observer_failures.labels

    def fan_out(*observers: EventObserver) -> ObserverPublisher:
        return ObserverPublisher(
            observers, timeout=settings.worker_observer_timeout, on_failure=lambda n: observer_failed(n).inc()
        )

    bus: EventBus | None = None
    if event_bus is not None:  # `serve`'s local channel
        bus = event_bus(fan_out(metrics, events))
    elif settings.event_bus_url:
        bus = RedisEventBus(settings.event_bus_url, fan_out(metrics, events))
    monitored = MonitoredWorkers()
    collector = fleet_collector(settings, repository, aws, cml, idle, metrics, clock)
    # The one rule that picks observers per role: with an event bus, a collector publishes its
    # events to Redis and every replica (this one too) feeds its gauges and SSE from the bus;
    # without one, this replica feeds them directly. Automatic actions run where the events are
    # collected; the alert engine (the seed's notification handler) sees every event too.
    publisher = fan_out(alert_engine, automatic, *([bus] if bus is not None else [metrics, events]))
    outages = OwnOutages()
    leases = LeaseStore(engine)
    monitor = FleetMonitor(
        repository,
        collector,
        publisher,
        monitored,
        leases=leases,
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
    job_store = build_job_store(
        settings.background_job_store_url,
        settings.database_url,
        timeout=settings.background_job_store_timeout,
    )
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
    applier = StateChangeApplier(repository, monitor.publish, monitor.collect_soon, clock=clock)
    events_queue = events_queues(settings, applier, metrics)
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
        controllers=cml,
    )
    events.next_run = workers.next_run_at  # a live event's worker says what GET says of it
    found = discovery_settings(settings)
    discovery = (
        None
        if found is None
        else WorkerDiscovery(workers, repository, aws, found, leases=leases, holder=replica, clock=clock)
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
        monitored=monitored,
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
        alertmanager_refresher=alertmanager_refresher(settings, notifiers, alerts, clock=clock),
        discovery=discovery,
    )
