"""The receivers the settings name, each with the notifier that speaks its protocol."""

from __future__ import annotations

import httpx

from cml_monitor.clock import Clock, utcnow
from cml_monitor.metrics import PrometheusMetrics
from cml_monitor.settings import Settings

from .alertmanager_refresh import AlertmanagerRefresher, FiringAlerts
from .dispatcher import NotificationDispatcher
from .links import Links
from .notifiers import (
    AlertmanagerNotifier,
    Notifier,
    OpsgenieNotifier,
    PagerDutyNotifier,
    SlackNotifier,
    WebhookNotifier,
)
from .outbox import Channel
from .store import OutboxStore


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


def alertmanager_refresher(
    settings: Settings, notifiers: dict[str, Notifier], store: FiringAlerts, *, clock: Clock = utcnow
) -> AlertmanagerRefresher | None:
    """The loop that re-posts firing alerts to Alertmanager, when any Alertmanager is named."""
    notifier = notifiers.get("alertmanager")
    if not isinstance(notifier, AlertmanagerNotifier):
        return None
    return AlertmanagerRefresher(store, notifier, settings.worker_notification_alertmanager_urls, clock=clock)


def build_dispatcher(
    settings: Settings,
    store: OutboxStore,
    notifiers: dict[str, Notifier],
    metrics: PrometheusMetrics,
    *,
    clock: Clock = utcnow,
) -> NotificationDispatcher:
    """The outbox's sender: retries with backoff, gives up after `max_age`, counts each result."""
    return NotificationDispatcher(
        store,
        notifiers,
        max_age=settings.worker_notification_max_age,
        delivery_timeout=settings.worker_notification_timeout,
        retry_base=settings.worker_notification_retry_base,
        retry_max=settings.worker_notification_retry_max,
        clock=clock,
        on_result=lambda channel, result: metrics.notifications.labels(channel, result).inc(),
    )
