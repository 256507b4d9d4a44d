"""From a metrics event to one sample per alert kind: what each rule says about this collection."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .inhibit import usage_alerts_inhibited
from .state import AlertKind, Sample, Verdict, threshold_verdict

STOPPED_STATES = frozenset({"stopping", "stopped", "shutting-down", "terminated"})


@dataclass(frozen=True, slots=True)
class RuleSettings:
    cpu_threshold: float = 90.0
    memory_threshold: float = 90.0
    hysteresis: float = 5.0


def samples_for(event: dict[str, Any], rules: RuleSettings, *, unreachable: bool = False) -> list[Sample]:
    status = event.get("status")
    previous = event.get("previous_status")
    running = status == "running"
    thresholds = event.get("thresholds") or {}
    metrics = event.get("metrics") or {}
    ec2 = event.get("ec2") or {}
    samples: list[Sample] = []

    inhibited = usage_alerts_inhibited(status, unreachable=unreachable)
    for kind, key, default in (
        (AlertKind.CPU, "cpu_utilization", rules.cpu_threshold),
        (AlertKind.MEMORY, "memory_utilization", rules.memory_threshold),
    ):
        threshold = thresholds.get(kind.value)
        threshold = default if threshold is None else float(threshold)
        value = metrics.get(key)
        if inhibited:
            # A stopped worker has no load to alert on: close what was open, open nothing.
            verdict = Verdict.CLEAR if not running else Verdict.HOLD
        else:
            verdict = threshold_verdict(value, threshold, rules.hysteresis)
        samples.append(Sample(kind, verdict, value, threshold))

    impaired = "impaired" in (ec2.get("system_status"), ec2.get("instance_status"))
    samples.append(Sample(AlertKind.STATUS_CHECK, Verdict.VIOLATING if impaired else Verdict.CLEAR))

    if running:
        stop_verdict = Verdict.CLEAR
    elif previous == "running" and status in STOPPED_STATES and not event.get("stop_requested"):
        stop_verdict = Verdict.VIOLATING
    else:
        stop_verdict = Verdict.HOLD
    samples.append(Sample(AlertKind.UNEXPECTED_STOP, stop_verdict))

    reachable = (event.get("cml") or {}).get("reachable")
    if not running or reachable is None:
        cml_verdict = Verdict.CLEAR
    else:
        cml_verdict = Verdict.CLEAR if reachable else Verdict.VIOLATING
    samples.append(Sample(AlertKind.CML_UNREACHABLE, cml_verdict))

    # A metrics event is a successful collection: the worker is reachable again.
    samples.append(Sample(AlertKind.UNREACHABLE, Verdict.CLEAR))
    return samples
