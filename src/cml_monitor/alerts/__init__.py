"""Alerting: rules turn each metrics event into samples, the engine keeps alert state and queues
notifications in the outbox, the dispatcher delivers them through the notifiers."""

from .engine import AlertEngine, AlertSettings, WorkerNotificationHandler
from .outbox import Channel

__all__ = ["AlertEngine", "AlertSettings", "Channel", "WorkerNotificationHandler"]
