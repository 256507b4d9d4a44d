"""`WorkerNotificationHandler`: the observer that checks every metrics event.

It keeps the seed's behaviour and messages (threshold checks, status-change detection,
`_handle_threshold_violation`) and hands the region's events, with the samples it computed, to
the alert engine in one batch, so a region's cycle is one alert evaluation and one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from cml_monitor.alerts.engine import AlertEngine
from cml_monitor.alerts.rules import RuleSettings, samples_for
from cml_monitor.alerts.state import AlertKind, Sample, Verdict
from cml_monitor.domain import WorkerMetricsCollected

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
        rules: RuleSettings | None = None,
    ) -> None:
        """The seed's thresholds, or every rule's settings at once (`rules` wins)."""
        self.rules = rules or RuleSettings(cpu_threshold, memory_threshold, hysteresis)
        self.cpu_threshold = self.rules.cpu_threshold
        self.memory_threshold = self.rules.memory_threshold
        self.alert_engine = alert_engine

    async def observe(self, events: Sequence[WorkerMetricsCollected]) -> None:
        batch = [self._check(event) for event in events]
        if self.alert_engine is not None and batch:
            await self.alert_engine.evaluate(batch)

    def _check(self, event: WorkerMetricsCollected) -> tuple[dict[str, Any], list[Sample]]:
        """The seed's per-worker checks; returns the event's JSON and its alert samples."""
        metrics_data = event.to_json()
        logger.debug(
            "Collected metrics for worker %s (%s): CPU=%s%%, Memory=%s%%",
            event.worker_name,
            event.aws_instance_id,
            "n/a" if event.cpu_utilization is None else f"{event.cpu_utilization:.1f}",
            "n/a" if event.memory_utilization is None else f"{event.memory_utilization:.1f}",
            extra={
                "worker_id": event.worker_id,
                "worker_name": event.worker_name,
                "instance_id": event.aws_instance_id,
                "region": event.aws_region,
            },
        )
        samples = samples_for(metrics_data, self.rules)
        for sample in samples:
            if sample.kind in (AlertKind.CPU, AlertKind.MEMORY) and sample.verdict is Verdict.VIOLATING:
                assert sample.value is not None and sample.threshold is not None
                self._handle_threshold_violation(
                    event.worker_id,
                    event.worker_name,
                    sample.kind.value,
                    float(sample.value),
                    sample.threshold,
                )
        if event.status_changed:
            self._handle_status_change(
                event.worker_id, event.worker_name, event.previous_status.value, event.status.value
            )
        return metrics_data, samples

    def _handle_threshold_violation(
        self, worker_id: str, worker_name: str, metric_type: str, value: float, threshold: float
    ) -> None:
        """The seed's hook: logs the violation; the alert engine turns it into alert state."""
        logger.debug(
            "🚨 Threshold Violation: %s (%s) - %s at %.1f%% exceeds %s%%",
            worker_name,
            worker_id,
            metric_type.upper(),
            value,
            threshold,
        )

    def _handle_status_change(
        self, worker_id: str, worker_name: str, previous_status: str, status: str
    ) -> None:
        logger.info(
            "🔄 Worker %s (%s) status changed: %s → %s", worker_name, worker_id, previous_status, status
        )
