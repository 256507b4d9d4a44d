"""`WorkerNotificationHandler`: the observer that checks every metrics event.

It keeps the seed's behaviour and messages (threshold checks, status-change detection,
`_handle_threshold_violation`); alert delivery hangs off `_handle_threshold_violation` and
`_handle_status_change`, so subclasses and the alerting pipeline plug in there.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from cml_monitor.alerts.rules import RuleSettings, samples_for
from cml_monitor.alerts.state import AlertKind, Verdict
from cml_monitor.clock import Clock, isoformat, utcnow

if TYPE_CHECKING:
    from cml_monitor.alerts.engine import AlertEngine

logger = logging.getLogger(__name__)


class WorkerNotificationHandler:
    """Checks CPU and memory against thresholds, notices status changes, feeds the alerts."""

    def __init__(
        self,
        cpu_threshold: float = 90.0,
        memory_threshold: float = 90.0,
        *,
        hysteresis: float = 5.0,
        alert_engine: AlertEngine | None = None,
        clock: Clock = utcnow,
        history_size: int = 1000,
    ) -> None:
        self.cpu_threshold = cpu_threshold
        self.memory_threshold = memory_threshold
        self.rules = RuleSettings(cpu_threshold, memory_threshold, hysteresis)
        self.alert_engine = alert_engine
        self._clock = clock
        # What the handler has seen, newest last (for troubleshooting without a database).
        self.recent_violations: deque[dict[str, Any]] = deque(maxlen=history_size)
        self.recent_status_changes: deque[dict[str, Any]] = deque(maxlen=history_size)

    def __call__(self, metrics_data: dict[str, Any]) -> Awaitable[None] | None:
        worker_id = metrics_data.get("worker_id", "?")
        worker_name = metrics_data.get("worker_name") or worker_id
        metrics = metrics_data.get("metrics") or {}
        cpu = metrics.get("cpu_utilization")
        memory = metrics.get("memory_utilization")
        logger.info(
            "📊 Collected metrics for worker %s: CPU=%s%%, Memory=%s%%",
            worker_id,
            "n/a" if cpu is None else f"{cpu:.1f}",
            "n/a" if memory is None else f"{memory:.1f}",
        )
        samples = samples_for(metrics_data, self.rules)
        for sample in samples:
            if sample.kind in (AlertKind.CPU, AlertKind.MEMORY) and sample.verdict is Verdict.VIOLATING:
                assert sample.value is not None and sample.threshold is not None
                logger.warning(
                    "⚠️ HIGH %s: Worker %s - %.1f%% (threshold: %s%%)",
                    sample.kind.value.upper(),
                    worker_id,
                    sample.value,
                    sample.threshold,
                )
                self._handle_threshold_violation(
                    worker_id, worker_name, sample.kind.value, float(sample.value), sample.threshold
                )
        previous = metrics_data.get("previous_status")
        status = metrics_data.get("status")
        if previous is not None and status is not None and previous != status:
            self._handle_status_change(worker_id, worker_name, previous, status)
        if self.alert_engine is not None:
            return self.alert_engine.evaluate(metrics_data, samples)
        return None

    def _handle_threshold_violation(
        self,
        worker_id: str,
        worker_name: str,
        metric_type: str,
        value: float,
        threshold: float,
    ) -> None:
        """The seed's hook: logs the violation; the alert engine turns it into alert state."""
        logger.warning(
            "🚨 Threshold Violation: %s - %s at %.1f%% exceeds %s%%",
            worker_name,
            metric_type.upper(),
            value,
            threshold,
        )
        self.recent_violations.append(
            {
                "worker_id": worker_id,
                "worker_name": worker_name,
                "kind": metric_type,
                "value": value,
                "threshold": threshold,
                "timestamp": isoformat(self._clock()),
            }
        )

    def _handle_status_change(
        self, worker_id: str, worker_name: str, previous_status: str, status: str
    ) -> None:
        logger.info("🔄 Worker %s status changed: %s → %s", worker_name, previous_status, status)
        self.recent_status_changes.append(
            {
                "worker_id": worker_id,
                "worker_name": worker_name,
                "previous_status": previous_status,
                "status": status,
                "timestamp": isoformat(self._clock()),
            }
        )
