"""The alert state machine per (worker, kind): pending → firing → resolved. Pure, no I/O.

A sample either violates the rule, clears it (for thresholds: below threshold minus the
hysteresis), or does neither (inside the hysteresis band, or no data): then nothing changes.
`for_samples` consecutive violations turn pending into firing. What to *send* is decided
separately (`needs_firing_notification`), so state keeps moving while silenced or acked.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from cml_monitor.domain import Alert, AlertKind, AlertState


class Verdict(StrEnum):
    VIOLATING = "violating"
    CLEAR = "clear"
    HOLD = "hold"  # inside the hysteresis band, or no data: keep the state as it is


@dataclass(frozen=True, slots=True)
class Sample:
    """What one collection says about one rule of one worker."""

    kind: AlertKind
    verdict: Verdict
    value: float | None = None
    threshold: float | None = None
    detail: str | None = None


def threshold_verdict(value: float | None, threshold: float, hysteresis: float) -> Verdict:
    if value is None:
        return Verdict.HOLD
    if value > threshold:
        return Verdict.VIOLATING
    if value < threshold - hysteresis:
        return Verdict.CLEAR
    return Verdict.HOLD


def advance(
    current: Alert | None, sample: Sample, worker_id: str | None, *, for_samples: int, now: datetime
) -> Alert | None:
    """The alert after this sample (`None`: no alert exists or it was a pending one dropped)."""
    if sample.verdict is Verdict.VIOLATING:
        if current is None:
            current = Alert(
                id=str(uuid.uuid4()),
                worker_id=worker_id,
                kind=sample.kind,
                state=AlertState.PENDING,
                value=sample.value,
                threshold=sample.threshold,
                detail=sample.detail,
                violations=0,
                started_at=now,
                updated_at=now,
            )
        violations = current.violations + 1
        state = current.state
        fired_at = current.fired_at
        if state is AlertState.PENDING and violations >= for_samples:
            state, fired_at = AlertState.FIRING, now
        return replace(
            current,
            state=state,
            fired_at=fired_at,
            violations=violations,
            value=sample.value,
            threshold=sample.threshold,
            detail=sample.detail,
            updated_at=now,
        )
    if current is None:
        return None
    if sample.verdict is Verdict.CLEAR:
        if current.state is AlertState.PENDING:
            return None  # it never fired: forget it
        return replace(
            current, state=AlertState.RESOLVED, resolved_at=now, value=sample.value, updated_at=now
        )
    return replace(current, value=sample.value if sample.value is not None else current.value, updated_at=now)


def needs_firing_notification(alert: Alert, *, repeat_interval: timedelta, now: datetime) -> bool:
    """Firing, not acknowledged, and never told or told longer ago than the repeat interval."""
    if alert.state is not AlertState.FIRING or alert.acknowledged_at is not None:
        return False
    return alert.last_notified_at is None or now - alert.last_notified_at >= repeat_interval


def needs_resolved_notification(alert: Alert) -> bool:
    """Resolved, and somebody was told it fired."""
    return alert.state is AlertState.RESOLVED and alert.last_notified_at is not None


__all__ = [
    "Alert",
    "AlertKind",
    "AlertState",
    "Sample",
    "Verdict",
    "advance",
    "needs_firing_notification",
    "needs_resolved_notification",
    "threshold_verdict",
]
