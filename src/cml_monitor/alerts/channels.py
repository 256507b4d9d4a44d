"""The receivers the settings name, each with the notifier that speaks its protocol."""

from __future__ import annotations

import httpx

from cml_monitor.settings import Settings

from .notifiers import Notifier, OpsgenieNotifier, PagerDutyNotifier, SlackNotifier, WebhookNotifier
from .outbox import Channel


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
