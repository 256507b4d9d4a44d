"""The composition root: builds the whole monitor from `Settings` and owns its lifetime.

`MonitorRuntime` holds every part (database, AWS and CML clients, scheduler, alerting,
dispatcher, live events, metrics, the background loops) and the use cases the API calls. It is
entered as an async context manager whose exit unwinds one `AsyncExitStack`, so every part that
was started is stopped, in reverse order, whatever failed half-way. It needs no web app:
`api` only adds HTTP on top.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
from opentelemetry import trace
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine

from cml_monitor.actions import ACTION_LEASE, ActionExecutor, ActionSettings, AutomaticActions
from cml_monitor.alerts.alertmanager_refresh import AlertmanagerRefresher
from cml_monitor.alerts.dispatcher import NotificationDispatcher
from cml_monitor.alerts.engine import AlertEngine, AlertSettings
from cml_monitor.alerts.links import Links
from cml_monitor.alerts.notifiers import (
    AlertmanagerNotifier,
    Notifier,
    OpsgenieNotifier,
    PagerDutyNotifier,
    SlackNotifier,
    WebhookNotifier,
)
from cml_monitor.alerts.outbox import Channel, action_payload, notification_rows
from cml_monitor.alerts.rules import RuleSettings
from cml_monitor.aws import AwsEc2Client
from cml_monitor.aws.events_queue import EventQueues
from cml_monitor.clock import Clock, utcnow
from cml_monitor.cml import CmlControllerClient
from cml_monitor.cml.guard import UrlGuard
from cml_monitor.domain import Worker
from cml_monitor.domain.actions import Action
from cml_monitor.domain.idle import IdlePolicy
from cml_monitor.event_bus import EventBus, EventBusFactory, RedisEventBus
from cml_monitor.live_events import EventHub
from cml_monitor.metrics import PrometheusMetrics
from cml_monitor.monitoring import WorkerMonitoringScheduler, WorkerNotificationHandler, build_job_store
from cml_monitor.monitoring.freshness import FleetFreshness
from cml_monitor.monitoring.heartbeat import Heartbeat
from cml_monitor.monitoring.state_changes import StateChangeApplier
from cml_monitor.settings import Settings
from cml_monitor.storage import CMLWorkerRepository, LeaseStore, create_engine, migrate
from cml_monitor.storage.actions import ActionRepository
from cml_monitor.storage.alerts import AlertRepository
from cml_monitor.storage.collections import CollectionStatusStore
from cml_monitor.storage.history import HistoryStore
from cml_monitor.usecases import ActionOperations, AlertOperations, WorkerOperations
from cml_monitor.usecases.discovery import DiscoverySettings, WorkerDiscovery

logger = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """The monitor cannot start (its database cannot be reached or migrated): one line says why."""


def _safe_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("://", 1)[0] + "://…"


async def _every(period: float, work: Any, what: str, *, first_delay: float = 0.0) -> None:
    """Run `work()` every `period` seconds for ever; a failure is logged, the loop goes on."""
    await asyncio.sleep(first_delay)
    while True:
        try:
            await work()
        except Exception as exc:
            logger.error("%s failed: %s", what, exc)
        await asyncio.sleep(period)


@dataclass
class MonitorRuntime:
    settings: Settings
    clock: Clock
    engine: AsyncEngine
    repository: CMLWorkerRepository
    history: HistoryStore
    alerts: AlertRepository
    aws: AwsEc2Client
    cml: CmlControllerClient
    http: httpx.AsyncClient
    metrics: PrometheusMetrics
    events: EventHub
    alert_engine: AlertEngine
    dispatcher: NotificationDispatcher
    scheduler: WorkerMonitoringScheduler
    actions: ActionRepository
    executor: ActionExecutor
    automatic: AutomaticActions
    events_queue: EventQueues | None
    workers: WorkerOperations
    alerting: AlertOperations
    action_operations: ActionOperations
    freshness: FleetFreshness
    bus: EventBus | None = None
    alertmanager_refresher: AlertmanagerRefresher | None = None
    discovery: WorkerDiscovery | None = None
    background: set[asyncio.Task[Any]] = field(default_factory=set)
    _stack: AsyncExitStack = field(default_factory=AsyncExitStack)

    async def __aenter__(self) -> MonitorRuntime:
        stack = self._stack
        try:
            stack.push_async_callback(self.engine.dispose)
            stack.push_async_callback(self.aws.close)
            stack.push_async_callback(self.cml.close)
            stack.push_async_callback(self.http.aclose)
            try:
                await migrate(self.engine)
            except Exception as exc:
                raise StartupError(
                    f"the database {_safe_url(self.settings.database_url)} cannot be reached or migrated: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            self.metrics.set_firing(await self.alerts.firing())
            if self.bus is not None:
                stack.push_async_callback(self.bus.close)
                await self.bus.start()
            stack.push_async_callback(self._finish_background)
            await self._refresh_freshness()
            period = min(10.0, max(1.0, self.settings.worker_metrics_poll_interval / 4))
            self._loop(
                _every(period, self._refresh_freshness, "Reading the collection records", first_delay=period)
            )
            if not self.collects:
                logger.info("Role %s: serving the API only; collectors do the monitoring", self.role)
                return self
            self.dispatcher.start()
            stack.push_async_callback(self.dispatcher.stop)
            refresher = self.alertmanager_refresher
            if refresher is not None:
                every = refresher.interval
                self._loop(_every(every, refresher.refresh, "Alertmanager re-post", first_delay=every))
            await self._reconcile_actions()
            # Again every lease: an action whose replica died after this one started is
            # settled (and its worker freed for the next action) without waiting for a restart.
            lease = ACTION_LEASE.total_seconds()
            self._loop(_every(lease, self._reconcile_actions, "Action reconciliation", first_delay=lease))
            self._loop(_every(600.0, self._maintain_history, "History maintenance"))
            if self.settings.worker_monitoring_enabled:
                await self._start_monitoring()
                if self.events_queue is not None:
                    self._loop(self.events_queue.run())
                if self.discovery is not None:
                    self._loop(
                        _every(self.discovery.settings.interval, self.discovery.run_once, "Worker discovery")
                    )
            else:
                logger.info("Worker monitoring is disabled (WORKER_MONITORING_ENABLED=false)")
        except BaseException:
            await stack.aclose()
            raise
        return self

    @property
    def role(self) -> str:
        return self.settings.cml_monitor_role

    @property
    def collects(self) -> bool:
        """Whether this replica runs the scheduler, the dispatcher and the background checks."""
        return self.role in ("all", "collector")

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()

    async def _reconcile_actions(self) -> None:
        """Actions a crash left between "recorded" and "done" are settled from what EC2 shows."""
        try:
            settled = await self.executor.reconcile()
        except Exception as exc:
            logger.error("Could not reconcile interrupted actions: %s", exc)
            return
        if settled:
            logger.warning("Settled %d action(s) interrupted by a replica's stop", settled)

    async def _start_monitoring(self) -> None:
        period = min(60.0, max(1.0, self.settings.worker_metrics_poll_interval / 2))
        self._loop(_every(period, self._check_unreachable, "Unreachable-worker check", first_delay=period))
        self._stack.push_async_callback(self.scheduler.stop_async)
        self.scheduler.monitor.outages.note(self.clock())  # we were not watching until now
        try:
            await self.scheduler.start_async()
        except Exception as exc:
            # The job store (Redis) may be down at boot: serve anyway, report not ready, retry.
            logger.error("Could not start worker monitoring (%s); retrying in the background", exc)
            self._loop(self._start_monitoring_later())

    async def _start_monitoring_later(self, delay: float = 5.0) -> None:
        while True:
            await asyncio.sleep(delay)
            try:
                await self.scheduler.start_async()
            except RuntimeError:
                return  # stopped meanwhile
            except Exception as exc:
                logger.error("Worker monitoring still cannot start: %s", exc)
                continue
            logger.info("Worker monitoring started after retrying")
            return

    async def _check_unreachable(self) -> None:
        """Raise `unreachable` for workers nobody could collect, unless the fault is ours.

        While the scheduler is not running, a region's runs have stopped working (job store or
        database down), or within one unreachable window after any of that, no worker is judged.
        """
        outages = self.scheduler.monitor.outages
        now = self.clock()
        scheduler = self.scheduler
        if not scheduler.running or scheduler.schedule_error is not None or scheduler.overdue_regions(now):
            outages.note(now)
            return
        if not outages.quiet_since(now, self.alert_engine.settings.unreachable_after):
            return
        try:
            await self.alert_engine.check_unreachable()
        except Exception:
            outages.note(now)
            raise

    async def _refresh_freshness(self) -> None:
        """Every replica re-reads how each region's collection went (logged once per outage)."""
        had_error = self.freshness.read_error is not None
        try:
            await self.freshness.refresh()
        except Exception as exc:
            if not had_error:
                logger.error("Could not read the collection records: %s", exc)
        else:
            if had_error:
                logger.info("Reading the collection records works again")

    async def _maintain_history(self) -> None:
        """Roll raw samples up into hours and prune both."""
        await self.history.maintain(self.clock())

    def _loop(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def _finish_background(self) -> None:
        for task in list(self.background):
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)

    async def readiness(self) -> dict[str, str]:
        """Each dependency's state: `ok`, `disabled`, or what is wrong with it.

        The probes that touch something (database, job store) run side by side, each with its
        own 3 s deadline, and the rest is read from memory: `/ready` answers within 5 s whatever
        hangs.
        """

        async def probe(name: str, call: Any) -> tuple[str, str]:
            # Not `wait_for`: it waits for the cancelled probe to wind down, and a driver
            # talking to a frozen server may take its own timeout to do so.
            task = asyncio.ensure_future(call())
            done, _ = await asyncio.wait({task}, timeout=3.0)
            if not done:
                task.cancel()
                task.add_done_callback(lambda t: t.cancelled() or t.exception())
                return name, "unavailable: TimeoutError"
            if (exc := task.exception()) is not None:
                return name, f"unavailable: {type(exc).__name__}"
            return name, "ok"

        async def database() -> None:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))

        schedules = self.collects and self.settings.worker_monitoring_enabled
        probes = [probe("database", database)]
        if schedules:
            probes.append(probe("job_store", self.scheduler.check_job_store))
        probed = dict(await asyncio.gather(*probes))
        checks = {"database": probed["database"], "collection": self.freshness.check()}
        if self.events_queue is not None and self.collects:
            problem = self.events_queue.problem
            checks["events_queue"] = "ok" if problem is None else f"degraded (polling goes on): {problem}"
        if self.bus is not None:
            checks["event_bus"] = self.bus.problem or "ok"
        if not schedules:
            checks["job_store"] = "disabled"
            return checks
        checks["job_store"] = probed["job_store"]
        if not self.scheduler.running:
            checks["scheduler"] = "stopped"
        elif checks["database"] == "ok" and checks["job_store"] == "ok":
            problem = self.scheduler.schedule_problem()
            checks["schedule"] = "ok" if problem is None else f"out of date: {problem}"
        return checks


def rule_settings(settings: Settings) -> RuleSettings:
    return RuleSettings(
        cpu_threshold=settings.worker_cpu_threshold,
        memory_threshold=settings.worker_memory_threshold,
        hysteresis=settings.worker_alert_hysteresis,
        disk_threshold=settings.worker_disk_threshold,
        license_warning_days=settings.cml_license_expiry_warning_days,
    )


def build_runtime(
    settings: Settings,
    *,
    aws_client: AwsEc2Client | None = None,
    cml_client: CmlControllerClient | None = None,
    clock: Clock = utcnow,
    tracer: trace.Tracer | None = None,
    event_bus: EventBusFactory | None = None,
) -> MonitorRuntime:
    """Wire every part from the settings; nothing is started until the runtime is entered."""
    engine = create_engine(settings.database_url, timeout=settings.database_timeout)
    metrics = PrometheusMetrics()
    repository = CMLWorkerRepository(engine, on_rejected=metrics.on_rejected_row)
    aws = aws_client or AwsEc2Client(
        endpoint_url=settings.aws_endpoint_url,
        max_attempts=settings.aws_max_attempts,
        retry_mode=settings.aws_retry_mode,
        clock=clock,
        managed_tag=settings.managed_tag,
    )
    aws.requests.add_listener(metrics.on_aws_request)
    aws.requests.add_metrics_listener(metrics.cloudwatch_metrics.inc)
    cml = cml_client or CmlControllerClient(
        username=settings.cml_username,
        password=settings.cml_password.get_secret_value(),
        verify_tls=settings.cml_verify_tls,
        ca_bundle=settings.cml_ca_bundle or None,
        timeout=settings.cml_timeout,
        max_labs=settings.cml_max_labs,
        blocked_networks=settings.blocked_networks,
        automation_users=settings.cml_automation_users,
        clock=clock,
    )
    alerts = AlertRepository(engine, on_rejected=metrics.on_rejected_row)
    history = HistoryStore(
        engine,
        raw_retention=timedelta(hours=settings.worker_metrics_raw_retention_hours),
        retention=timedelta(days=settings.worker_metrics_retention_days),
    )
    http = httpx.AsyncClient(
        timeout=settings.worker_notification_timeout, limits=httpx.Limits(max_connections=50)
    )
    channels, notifiers = build_channels(settings, http, clock=clock)
    alertmanager = notifiers.get("alertmanager")
    refresher = None
    if isinstance(alertmanager, AlertmanagerNotifier):
        refresher = AlertmanagerRefresher(
            alerts, alertmanager, settings.worker_notification_alertmanager_urls, clock=clock
        )
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
        AlertSettings(
            rules=rule_settings(settings),
            for_samples=settings.worker_alert_for_samples,
            repeat_interval=timedelta(seconds=settings.worker_alert_repeat_interval),
            unreachable_after=timedelta(seconds=3 * settings.worker_metrics_poll_interval),
        ),
        clock=clock,
        on_outbox=dispatcher.wake,
        on_firing=metrics.set_firing,
    )
    handler = WorkerNotificationHandler(alert_engine=alert_engine, rules=rule_settings(settings))
    idle_policy = IdlePolicy(
        timeout=timedelta(seconds=settings.worker_idle_timeout),
        cpu_threshold=settings.worker_idle_cpu_threshold,
        grace=timedelta(seconds=settings.worker_auto_pause_grace),
        snooze=timedelta(seconds=settings.worker_auto_pause_snooze),
        auto_pause=settings.worker_auto_pause_enabled,
        max_gap=timedelta(seconds=2 * settings.worker_metrics_poll_interval),
    )
    action_store = ActionRepository(engine)
    replica = uuid.uuid4().hex  # this replica, as lease holder and in the collection records
    freshness = FleetFreshness(
        CollectionStatusStore(engine),
        interval_seconds=settings.worker_metrics_poll_interval,
        holder=replica,
        enabled=settings.worker_monitoring_enabled,
        clock=clock,
        on_collected=metrics.on_region_collected,
    )
    heartbeat = (
        Heartbeat(
            http,
            settings.cml_monitor_heartbeat_url,
            interval_seconds=settings.worker_metrics_poll_interval,
            clock=clock,
        )
        if settings.cml_monitor_heartbeat_url
        else None
    )

    async def notify_action(action: Action, worker: Worker) -> None:
        now = clock()
        who = {"id": worker.id, "name": worker.name, "aws_instance_id": worker.aws_instance_id}
        payload = action_payload(action.to_json(), {**who, "aws_region": worker.aws_region}, now)
        rows = notification_rows(payload, channels, alert_id=None, worker_id=worker.id, now=now)
        if rows:
            await alerts.apply([], [], [], rows)
            dispatcher.wake()

    executor = ActionExecutor(
        action_store,
        repository,
        aws,
        idle_policy=idle_policy,
        clock=clock,
        notify=notify_action,
        on_result=metrics.on_action,
    )
    automatic = AutomaticActions(
        executor,
        action_store,
        alerts,
        cml,
        ActionSettings(
            auto_pause=settings.worker_auto_pause_enabled,
            dry_run=settings.worker_auto_pause_dry_run,
            remediation=settings.worker_remediation_enabled,
            remediation_after_samples=settings.worker_remediation_after_samples,
            remediation_cooldown=timedelta(seconds=settings.worker_remediation_cooldown),
            max_per_hour=settings.worker_actions_max_per_hour,
            notice=settings.worker_auto_pause_notice,
        ),
        clock=clock,
        notices=cml if settings.worker_auto_pause_notice else None,
    )
    events = EventHub()
    leases = LeaseStore(engine)
    bus: EventBus | None = None
    if event_bus is not None:  # `serve`'s local channel
        bus = event_bus([metrics, events])
    elif settings.event_bus_url:
        bus = RedisEventBus(settings.event_bus_url, [metrics, events])
    scheduler = WorkerMonitoringScheduler(
        repository,
        aws,
        handler,
        cml_client=cml,
        job_store=build_job_store(settings.background_job_store_url, settings.database_url),
        leases=leases,
        poll_interval=settings.worker_metrics_poll_interval,
        clock=clock,
        tracer=tracer,
        cml_concurrency=settings.cml_concurrency,
        licensing_interval=settings.cml_licensing_check_interval,
        activity_interval=settings.worker_idle_check_interval,
        idle_policy=idle_policy,
        metrics_source=settings.worker_metrics_source,
        observers=[automatic, *([bus] if bus is not None else [metrics, events])],
        observer_timeout=settings.worker_observer_timeout,
        on_observer_failure=lambda name: metrics.observer_failures.labels(name).inc(),
        cycle_observer=metrics.collection_seconds.observe,
        instance_id=replica,
        outcome_listeners=[
            freshness.record,
            alert_engine.region_outcome,
            *([heartbeat.note] if heartbeat is not None else []),
        ],
    )
    events_queue = None
    if settings.events_queue_urls:
        events_queue = EventQueues.from_urls(
            settings.events_queue_urls,
            StateChangeApplier(repository, scheduler.monitor.publish, scheduler.collect_soon, clock=clock),
            region=settings.aws_region,
            endpoint_url=settings.aws_endpoint_url,
            on_result=lambda kind, result: metrics.aws_events.labels(kind, result).inc(),
        )
    workers = WorkerOperations(
        repository,
        scheduler,
        aws,
        history,
        metrics,
        clock=clock,
        monitoring=(
            "off"
            if not settings.worker_monitoring_enabled
            else "collect_once"
            if settings.cml_monitor_role == "api"
            else "schedule"
        ),
        url_guard=UrlGuard(settings.blocked_networks),
        executor=executor,
        freshness=freshness,
        controllers=cml,
    )
    return MonitorRuntime(
        discovery=build_discovery(settings, workers, repository, aws, leases, scheduler.instance_id, clock),
        settings=settings,
        clock=clock,
        engine=engine,
        repository=repository,
        history=history,
        alerts=alerts,
        aws=aws,
        cml=cml,
        http=http,
        metrics=metrics,
        events=events,
        alert_engine=alert_engine,
        dispatcher=dispatcher,
        scheduler=scheduler,
        actions=action_store,
        executor=executor,
        automatic=automatic,
        events_queue=events_queue,
        workers=workers,
        alerting=AlertOperations(alerts, workers, clock=clock),
        action_operations=ActionOperations(action_store, repository),
        freshness=freshness,
        bus=bus,
        alertmanager_refresher=refresher,
    )


def build_discovery(
    settings: Settings,
    workers: WorkerOperations,
    repository: CMLWorkerRepository,
    aws: AwsEc2Client,
    leases: LeaseStore,
    holder: str,
    clock: Clock,
) -> WorkerDiscovery | None:
    """Discovery by tags, when `WORKER_DISCOVERY_TAGS` names any."""
    if not settings.discovery_tags:
        return None
    return WorkerDiscovery(
        workers,
        repository,
        aws,
        DiscoverySettings(
            tags=settings.discovery_tags,
            regions=settings.worker_discovery_regions,
            default_region=settings.aws_region,
            cml_url_template=settings.worker_discovery_cml_url,
            interval=float(settings.worker_discovery_interval),
            forget_after=timedelta(seconds=settings.worker_discovery_forget_after),
        ),
        leases=leases,
        holder=holder,
        clock=clock,
    )


def build_channels(
    settings: Settings, http: httpx.AsyncClient, *, clock: Clock = utcnow
) -> tuple[list[Channel], dict[str, Notifier]]:
    """The receivers the settings name, and a notifier for each kind of them."""
    secret = settings.worker_notification_webhook_secret
    links = Links(settings.cml_monitor_public_url, settings.worker_runbook_base_url)
    channels = [Channel("webhook", url) for url in settings.worker_notification_webhooks]
    notifiers: dict[str, Notifier] = {
        "webhook": WebhookNotifier(http, secret.get_secret_value() if secret else None, links)
    }
    if settings.slack_webhook_url is not None:
        channels.append(
            Channel("slack", alerts_only=True, group_wait=settings.worker_notification_group_wait)
        )
        notifiers["slack"] = SlackNotifier(http, settings.slack_webhook_url.get_secret_value(), links)
    if settings.pagerduty_routing_key is not None and settings.pagerduty_routing_key.get_secret_value():
        channels.append(Channel("pagerduty", alerts_only=True))
        notifiers["pagerduty"] = PagerDutyNotifier(
            http, settings.pagerduty_routing_key.get_secret_value(), settings.pagerduty_events_url, links
        )
    if settings.opsgenie_api_key is not None and settings.opsgenie_api_key.get_secret_value():
        channels.append(Channel("opsgenie", alerts_only=True))
        notifiers["opsgenie"] = OpsgenieNotifier(
            http, settings.opsgenie_api_key.get_secret_value(), settings.opsgenie_api_url, links
        )
    if settings.worker_notification_alertmanager_urls:
        # One outbox row per Alertmanager: each member of a cluster gets every alert.
        channels += [
            Channel("alertmanager", url, alerts_only=True)
            for url in settings.worker_notification_alertmanager_urls
        ]
        notifiers["alertmanager"] = AlertmanagerNotifier(
            http, links, refresh=settings.worker_notification_alertmanager_refresh, clock=clock
        )
    return channels, notifiers
