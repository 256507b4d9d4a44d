"""`WorkerNotificationHandler`: the observer that checks every metrics event.

It keeps the seed's behaviour and messages (threshold checks, status-change detection,
`_handle_threshold_violation`); alert delivery hangs off `_handle_threshold_violation` and
`_handle_status_change`, so subclasses and the alerting pipeline plug in there.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from cml_monitor.clock import Clock, isoformat, utcnow

logger = logging.getLogger(__name__)

ViolationSink = Callable[[dict[str, Any]], None]


class WorkerNotificationHandler:
    """Checks CPU and memory against thresholds and notices status changes."""

    def __init__(
        self,
        cpu_threshold: float = 90.0,
        memory_threshold: float = 90.0,
        *,
        clock: Clock = utcnow,
        history_size: int = 1000,
    ) -> None:
        self.cpu_threshold = cpu_threshold
        self.memory_threshold = memory_threshold
        self._clock = clock
        # What the handler has seen, newest last: the API shows it until alerting persists it.
        self.recent_violations: deque[dict[str, Any]] = deque(maxlen=history_size)
        self.recent_status_changes: deque[dict[str, Any]] = deque(maxlen=history_size)

    def __call__(self, metrics_data: dict[str, Any]) -> None:
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
        thresholds = metrics_data.get("thresholds") or {}
        cpu_threshold = thresholds.get("cpu") or self.cpu_threshold
        memory_threshold = thresholds.get("memory") or self.memory_threshold
        if cpu is not None and cpu > cpu_threshold:
            logger.warning("⚠️ HIGH CPU: Worker %s - %.1f%% (threshold: %s%%)", worker_id, cpu, cpu_threshold)
            self._handle_threshold_violation(worker_id, worker_name, "cpu", float(cpu), cpu_threshold)
        if memory is not None and memory > memory_threshold:
            logger.warning(
                "⚠️ HIGH MEMORY: Worker %s - %.1f%% (threshold: %s%%)",
                worker_id,
                memory,
                memory_threshold,
            )
            self._handle_threshold_violation(
                worker_id, worker_name, "memory", float(memory), memory_threshold
            )
        previous = metrics_data.get("previous_status")
        status = metrics_data.get("status")
        if previous is not None and status is not None and previous != status:
            self._handle_status_change(worker_id, worker_name, previous, status)

    def _handle_threshold_violation(
        self,
        worker_id: str,
        worker_name: str,
        metric_type: str,
        value: float,
        threshold: float,
    ) -> None:
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
