"""Receivers behind one protocol: webhook, Slack, PagerDuty, Opsgenie, Alertmanager."""

from .alertmanager import AlertmanagerNotifier
from .base import Delivery, GroupNotifier, Notifier, OutgoingNotification
from .opsgenie import OpsgenieNotifier
from .pagerduty import PagerDutyNotifier
from .slack import SlackNotifier
from .webhook import WebhookNotifier

__all__ = [
    "AlertmanagerNotifier",
    "Delivery",
    "GroupNotifier",
    "Notifier",
    "OpsgenieNotifier",
    "OutgoingNotification",
    "PagerDutyNotifier",
    "SlackNotifier",
    "WebhookNotifier",
]
