"""What reads the outside world, as the settings configure it: the AWS and CML clients, the
fleet collector over them, the EC2 events queues; and the database migration at start.

Split from `runtime.py` so the composition root only wires: what a client's settings mean, and
how a failed migration is told to the operator, live here.
"""

from __future__ import annotations

from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from cml_monitor.aws import AwsEc2Client
from cml_monitor.aws.events_queue import EventQueues, Handler
from cml_monitor.clock import Clock
from cml_monitor.cml import CmlControllerClient
from cml_monitor.domain.idle import IdlePolicy
from cml_monitor.metrics import PrometheusMetrics
from cml_monitor.monitoring import FleetCollector
from cml_monitor.monitoring.ports import WorkerStore
from cml_monitor.settings import Settings
from cml_monitor.storage import migrate


class StartupError(RuntimeError):
    """The monitor cannot start (its database cannot be reached or migrated): one line says why."""


def _safe_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("://", 1)[0] + "://…"


async def migrate_or_explain(engine: AsyncEngine, database_url: str) -> None:
    """Bring the schema up to date; a failure becomes a `StartupError` naming the database
    (its password hidden) and the cause, which `serve` prints as one line."""
    try:
        await migrate(engine)
    except Exception as exc:
        cause = f"{type(exc).__name__}: {exc}"
        raise StartupError(
            f"the database {_safe_url(database_url)} cannot be reached or migrated: {cause}"
        ) from exc


def aws_client(settings: Settings, metrics: PrometheusMetrics, clock: Clock) -> AwsEc2Client:
    """EC2 and CloudWatch, each request counted in the metrics."""
    aws = AwsEc2Client(
        endpoint_url=settings.aws_endpoint_url,
        max_attempts=settings.aws_max_attempts,
        retry_mode=settings.aws_retry_mode,
        clock=clock,
        managed_tag=settings.managed_tag,
    )
    aws.requests.add_listener(metrics.on_aws_request)
    aws.requests.add_metrics_listener(metrics.cloudwatch_metrics.inc)
    return aws


def cml_client(settings: Settings, clock: Clock) -> CmlControllerClient:
    """The controllers' API, trusting the CA bundle beside the system's when one is given."""
    return CmlControllerClient(
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


def fleet_collector(
    settings: Settings,
    repository: WorkerStore,
    aws: AwsEc2Client,
    cml: CmlControllerClient,
    idle: IdlePolicy,
    metrics: PrometheusMetrics,
    clock: Clock,
) -> FleetCollector:
    """One collection pass over EC2, CloudWatch and the controllers, each cycle timed."""
    return FleetCollector(
        repository,
        aws,
        cml,
        clock=clock,
        cml_concurrency=settings.cml_concurrency,
        licensing_interval=settings.cml_licensing_check_interval,
        activity_interval=settings.worker_idle_check_interval,
        idle_policy=idle,
        cycle_observer=metrics.collection_seconds.observe,
        metrics_source=settings.worker_metrics_source,
    )


def events_queues(settings: Settings, handler: Handler, metrics: PrometheusMetrics) -> EventQueues | None:
    """A consumer per EC2 state-change queue named (one per region); None when none is."""
    if not settings.events_queue_urls:
        return None
    return EventQueues.from_urls(
        settings.events_queue_urls,
        handler,
        region=settings.aws_region,
        endpoint_url=settings.aws_endpoint_url,
        on_result=lambda kind, result: metrics.aws_events.labels(kind, result).inc(),
    )
