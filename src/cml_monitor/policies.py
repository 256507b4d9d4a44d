"""What the settings mean to each part: the parameter objects `build_runtime` hands out.

Every duration setting is a number of seconds (or hours, or days, as its name says); it becomes
a `timedelta` here, once, so no other module converts units by hand.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from cml_monitor.actions import ActionSettings
from cml_monitor.alerts.engine import AlertSettings
from cml_monitor.alerts.rules import RuleSettings
from cml_monitor.domain.idle import IdlePolicy
from cml_monitor.settings import Settings
from cml_monitor.usecases.discovery import DiscoverySettings

MonitoringMode = Literal["schedule", "collect_once", "off"]


def seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


def rule_settings(settings: Settings) -> RuleSettings:
    return RuleSettings(
        cpu_threshold=settings.worker_cpu_threshold,
        memory_threshold=settings.worker_memory_threshold,
        hysteresis=settings.worker_alert_hysteresis,
        disk_threshold=settings.worker_disk_threshold,
        license_warning_days=settings.cml_license_expiry_warning_days,
    )


def alert_settings(settings: Settings) -> AlertSettings:
    """A worker is unreachable after three intervals without a collection."""
    return AlertSettings(
        rules=rule_settings(settings),
        for_samples=settings.worker_alert_for_samples,
        repeat_interval=seconds(settings.worker_alert_repeat_interval),
        unreachable_after=seconds(3 * settings.worker_metrics_poll_interval),
    )


def idle_policy(settings: Settings) -> IdlePolicy:
    """Idle time counts only across samples at most two intervals apart."""
    return IdlePolicy(
        timeout=seconds(settings.worker_idle_timeout),
        cpu_threshold=settings.worker_idle_cpu_threshold,
        grace=seconds(settings.worker_auto_pause_grace),
        snooze=seconds(settings.worker_auto_pause_snooze),
        auto_pause=settings.worker_auto_pause_enabled,
        max_gap=seconds(2 * settings.worker_metrics_poll_interval),
    )


def action_settings(settings: Settings) -> ActionSettings:
    return ActionSettings(
        auto_pause=settings.worker_auto_pause_enabled,
        dry_run=settings.worker_auto_pause_dry_run,
        remediation=settings.worker_remediation_enabled,
        remediation_after_samples=settings.worker_remediation_after_samples,
        remediation_cooldown=seconds(settings.worker_remediation_cooldown),
        max_per_hour=settings.worker_actions_max_per_hour,
        notice=settings.worker_auto_pause_notice,
    )


def discovery_settings(settings: Settings) -> DiscoverySettings | None:
    """Discovery by tags, when `WORKER_DISCOVERY_TAGS` names any (None: no discovery)."""
    if not settings.discovery_tags:
        return None
    return DiscoverySettings(
        tags=settings.discovery_tags,
        regions=settings.worker_discovery_regions,
        default_region=settings.aws_region,
        cml_url_template=settings.worker_discovery_cml_url,
        interval=float(settings.worker_discovery_interval),
        forget_after=seconds(settings.worker_discovery_forget_after),
    )


def history_retention(settings: Settings) -> tuple[timedelta, timedelta]:
    """How long raw samples are kept, and how long hourly ones are."""
    return (
        timedelta(hours=settings.worker_metrics_raw_retention_hours),
        timedelta(days=settings.worker_metrics_retention_days),
    )


def monitoring_mode(settings: Settings) -> MonitoringMode:
    """How a new or changed worker gets collected on this replica: its own schedule, one
    collection now (an API replica: the collectors schedule it), or not at all."""
    if not settings.worker_monitoring_enabled:
        return "off"
    return "collect_once" if settings.cml_monitor_role == "api" else "schedule"


def collects(settings: Settings) -> bool:
    """Whether this replica runs the scheduler, the dispatcher and the background checks."""
    return settings.cml_monitor_role in ("all", "collector")
