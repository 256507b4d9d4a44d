"""The alert state machine: pending for `for_samples`, firing, held inside the hysteresis band,
resolved; a pending alert that clears is forgotten."""

from __future__ import annotations

from datetime import UTC, datetime

from cml_monitor.alerts.state import AlertKind, AlertState, Sample, Verdict, advance, threshold_verdict


def test_state_machine_for_samples_and_hysteresis() -> None:
    now = datetime(2026, 11, 25, tzinfo=UTC)
    alert = None
    states = []
    for value in (95.0, 96.0, 97.0):
        sample = Sample(AlertKind.CPU, threshold_verdict(value, 90.0, 5.0), value, 90.0)
        alert = advance(alert, sample, "w", for_samples=3, now=now)
        states.append(alert.state)
    assert states == [AlertState.PENDING, AlertState.PENDING, AlertState.FIRING]
    assert threshold_verdict(87.0, 90.0, 5.0) is Verdict.HOLD
    assert threshold_verdict(84.0, 90.0, 10.0) is Verdict.HOLD
    assert threshold_verdict(84.0, 90.0, 5.0) is Verdict.CLEAR
    assert threshold_verdict(None, 90.0, 5.0) is Verdict.HOLD
    held = advance(alert, Sample(AlertKind.CPU, Verdict.HOLD, 87.0, 90.0), "w", for_samples=3, now=now)
    assert held.state is AlertState.FIRING
    resolved = advance(held, Sample(AlertKind.CPU, Verdict.CLEAR, 20.0, 90.0), "w", for_samples=3, now=now)
    assert resolved.state is AlertState.RESOLVED and resolved.resolved_at == now
    pending = advance(None, Sample(AlertKind.CPU, Verdict.VIOLATING, 95.0, 90.0), "w", for_samples=3, now=now)
    assert (
        advance(pending, Sample(AlertKind.CPU, Verdict.CLEAR, 10.0, 90.0), "w", for_samples=3, now=now)
        is None
    )
