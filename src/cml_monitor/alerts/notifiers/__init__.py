"""Receivers behind one protocol: webhook, Slack, PagerDuty, Opsgenie."""

from .base import Delivery, Notifier, OutgoingNotification
from .opsgenie import OpsgenieNotifier
from .pagerduty import PagerDutyNotifier
from .slack import SlackNotifier
from .webhook import WebhookNotifier

__all__ = [
    "Delivery",
    "Notifier",
    "OpsgenieNotifier",
    "OutgoingNotification",
    "PagerDutyNotifier",
    "SlackNotifier",
    "WebhookNotifier",
]
