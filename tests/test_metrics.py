"""The Prometheus exposition: names with units, no `_created`, counters at 0 from the start,
the info and per-alert series, and what `promtool check metrics` says of it."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime

import pytest
from prometheus_client import generate_latest

from cml_monitor.domain import WorkerMetricsCollected, WorkerStatus
from cml_monitor.domain.cml import CmlStatus
from cml_monitor.metrics import PrometheusMetrics

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _event(**changes: object) -> WorkerMetricsCollected:
    values: dict[str, object] = {
        "worker_id": "w-1",
        "worker_name": "lab-1",
        "aws_instance_id": "i-0123456789abcdef0",
        "aws_region": "eu-west-1",
        "status": WorkerStatus.RUNNING,
        "previous_status": WorkerStatus.RUNNING,
        "timestamp": NOW,
        "cpu_utilization": 42.5,
        "memory_utilization": 61.0,
        "instance_state": "running",
        "system_status": "ok",
        "instance_status": "impaired",
        "active_labs_count": 1,
        "cml": CmlStatus(reachable=True, version="2.9.0", ready=True, healthy=True, disk_used_percent=73.5),
    }
    values.update(changes)
    return WorkerMetricsCollected(**values)  # type: ignore[arg-type]


def _value(text: str, series: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line[len(series) + 1 :])
    return None


def _text(metrics: PrometheusMetrics) -> str:
    return generate_latest(metrics.registry).decode()


def test_fresh_exposition_has_counters_at_zero_and_no_created_series() -> None:
    text = _text(PrometheusMetrics())
    assert "_created" not in text
    assert 'cml_monitor_aws_requests_total{operation="DescribeInstanceStatus",service="ec2"} 0.0' in text
    assert 'cml_monitor_notifications_total{channel="alertmanager",result="failed"} 0.0' in text
    assert 'cml_monitor_actions_total{kind="stop",reason="idle",result="ok"} 0.0' in text
    assert 'cml_monitor_aws_events_total{result="applied",type="state_change"} 0.0' in text
    assert 'cml_monitor_observer_failures_total{observer="AutomaticActions"} 0.0' in text
    assert 'cml_monitor_alerts_firing{kind="cpu",severity="warning"} 0.0' in text
    assert 'cml_monitor_alerts_firing{kind="collection_failing",severity="critical"} 0.0' in text


async def test_worker_series_carry_units_info_and_status_checks() -> None:
    metrics = PrometheusMetrics()
    await metrics.observe([_event()])
    metrics.on_region_collected("eu-west-1", NOW)
    text = _text(metrics)
    who = 'worker_id="w-1",worker_name="lab-1"'
    assert f"cml_monitor_worker_cpu_utilization_percent{{{who}}} 42.5" in text
    assert f"cml_monitor_worker_memory_utilization_percent{{{who}}} 61.0" in text
    assert f"cml_monitor_worker_disk_used_percent{{{who}}} 73.5" in text
    assert f'cml_monitor_worker_status_check_ok{{check="system",{who}}} 1.0' in text
    assert f'cml_monitor_worker_status_check_ok{{check="instance",{who}}} 0.0' in text
    assert (
        'cml_monitor_worker_info{cml_version="2.9.0",instance_id="i-0123456789abcdef0",'
        'region="eu-west-1",worker_id="w-1",worker_name="lab-1"} 1.0'
    ) in text
    assert (
        _value(text, 'cml_monitor_last_collection_timestamp_seconds{region="eu-west-1"}') == NOW.timestamp()
    )
    assert "cml_monitor_worker_cpu_utilization{" not in text  # the unit-less names are gone

    await metrics.observe([_event(status=WorkerStatus.STOPPED, cml=None, system_status=None)])
    text = _text(metrics)
    assert "cml_monitor_worker_status_check_ok{" not in text  # a stopped instance has no checks
    assert "cml_monitor_worker_disk_used_percent{" not in text
    assert 'cml_version=""' in text

    metrics.forget("w-1")
    text = _text(metrics)
    assert "cml_monitor_worker_info{" not in text and "cml_monitor_worker_up{" not in text


def test_firing_alerts_are_one_series_each_and_counted_by_kind() -> None:
    metrics = PrometheusMetrics()
    metrics.set_firing([("w-1", "lab-1", "cpu"), ("w-2", "lab-2", "cpu"), (None, None, "collection_failing")])
    text = _text(metrics)
    assert (
        'cml_monitor_alert_firing{kind="cpu",severity="warning",worker_id="w-1",worker_name="lab-1"} 1.0'
        in text
    )
    assert 'cml_monitor_alerts_firing{kind="cpu",severity="warning"} 2.0' in text
    assert 'cml_monitor_alerts_firing{kind="collection_failing",severity="critical"} 1.0' in text
    metrics.set_firing([("w-2", "lab-2", "cpu")])
    text = _text(metrics)
    assert 'worker_id="w-1"' not in text
    assert 'cml_monitor_alerts_firing{kind="cpu",severity="warning"} 1.0' in text
    assert 'cml_monitor_alerts_firing{kind="collection_failing",severity="critical"} 0.0' in text


def test_promtool_check_metrics_finds_no_problem() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package `prometheus`; .ci/run installs it)")
    metrics = PrometheusMetrics()
    metrics._update(_event())
    metrics.set_firing([("w-1", "lab-1", "cpu")])
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=generate_latest(metrics.registry),
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == b"" and result.stderr.strip() == b"", result.stdout + result.stderr
