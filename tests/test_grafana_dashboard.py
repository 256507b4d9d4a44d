"""The Grafana dashboard we ship, checked against real data: `cml-monitor serve` watches the
fleet simulator, Debian's Prometheus scrapes it every second, and every panel's query (with
Grafana's variables filled in as Grafana would) must return data from Prometheus's HTTP API."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import httpx

from cml_fleet_sim.serving import free_port
from cml_fleet_sim.simulator import FleetSimulator

from .processes import spawn_cli, stop, wait_until
from .prometheus_tools import binary, prometheus

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "cml-monitor.json"
VARIABLES = {  # what Grafana substitutes, for a one-minute range and every worker
    "$__rate_interval": "20s",
    "$__range_s": "60",
    "$__range": "1m",
    "$worker": ".*",
}


def _queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    found = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found.append((panel["title"], target["expr"]))
    return found


def _fill(expr: str) -> str:
    for name, value in VARIABLES.items():  # longest names first: `$__range_s` before `$__range`
        expr = expr.replace(name, value)
    assert "$" not in expr, expr
    return expr


def test_dashboard_is_valid_json_with_the_panels_the_issue_lists() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    titles = {p["title"] for p in dashboard["panels"]}
    assert {"CPU", "Memory", "Disk (controller)", "Firing alerts by kind", "Licence days left"} <= titles
    assert {"Idle hours in range", "Collection duration", "AWS calls by operation"} <= titles
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource", "worker"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]


def test_every_panel_query_returns_data(sim: FleetSimulator, tmp_path: Path) -> None:
    binary("prometheus")
    busy, quiet = sim.add_workers(2)
    sim.fleet.set_metrics(busy.instance_id, cpu=97.0, memory=40.0)
    sim.fleet.set_metrics(quiet.instance_id, cpu=3.0, memory=20.0)
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'monitor.db'}",
        "AWS_ENDPOINT_URL": sim.url,
        "WORKER_METRICS_POLL_INTERVAL": "1",
        "WORKER_METRICS_SOURCE": "cloudwatch",  # the CPU set above is CloudWatch's
        "CML_PASSWORD": "cml-sim",
        "CML_URL_BLOCKED_NETWORKS": "169.254.0.0/16",
        "CML_LICENSING_CHECK_INTERVAL": "1",
        "CML_MONITOR_PORT": str(port),
        "LOG_FILE": str(tmp_path / "monitor.log"),
    }
    process = spawn_cli(["serve"], env, tmp_path, quiet=True)
    base = f"http://127.0.0.1:{port}"
    try:
        # Prometheus first: it applies new scrape targets only every 5 s, which overlaps the
        # service's start-up this way (its scrapes fail until the port answers).
        with prometheus(tmp_path / "prometheus", [f"127.0.0.1:{port}"]) as prom:
            wait_until(lambda: httpx.get(f"{base}/health").status_code == 200)
            for name, instance in (("busy", busy), ("quiet", quiet)):
                body = {
                    "name": name,
                    "aws_region": "us-east-1",
                    "aws_instance_id": instance.instance_id,
                    "cml_url": sim.controller_url(instance.instance_id),
                }
                assert httpx.post(f"{base}/api/workers", json=body).status_code == 201
            missing = _wait_for_data(prom, _queries(json.loads(DASHBOARD.read_text())), deadline=90)
            assert missing == [], missing
            label = httpx.get(
                f"{prom}/api/v1/label/worker_name/values", params={"match[]": "cml_monitor_worker_info"}
            )
            assert sorted(label.json()["data"]) == ["busy", "quiet"]  # the `worker` variable's query
    finally:
        output = stop(process, signal.SIGTERM)
    assert process.returncode == 0, output


SUBQUERY_STEP = re.compile(r"\[[^\]:]+:(\d+)([sm])\]")


def _params(expr: str) -> dict[str, str]:
    """The instant query's parameters: now, except for a `[range:step]` subquery.

    A subquery is evaluated at whole multiples of its step only (whole minutes for `1m`), so on
    a Prometheus started seconds ago it has nothing until the clock passes the next one: it is
    asked at that coming step instead (its samples looked back to from there, as from any
    instant) rather than the test waiting up to a minute for the wall clock.
    """
    steps = [int(n) * (60 if unit == "m" else 1) for n, unit in SUBQUERY_STEP.findall(expr)]
    if not steps:
        return {"query": expr}
    step = max(steps)
    return {"query": expr, "time": str((int(time.time()) // step + 1) * step)}


def _wait_for_data(prom: str, queries: list[tuple[str, str]], deadline: float) -> list[tuple[str, str]]:
    """Poll each query until it returns a series; what never did by the deadline."""
    pending = list(queries)
    end = time.monotonic() + deadline
    with httpx.Client(timeout=10) as client:
        while pending and time.monotonic() < end:
            still = []
            for title, expr in pending:
                answer = client.get(f"{prom}/api/v1/query", params=_params(_fill(expr))).json()
                assert answer["status"] == "success", (title, expr, answer)
                if not answer["data"]["result"]:
                    still.append((title, expr))
            pending = still
            if pending:
                time.sleep(0.5)  # between polls of an external process's scrapes; the deadline bounds it
    return pending


def test_variables_cover_every_placeholder() -> None:
    text = DASHBOARD.read_text()
    used = set(re.findall(r"\$[_a-z]+", text)) - {"$__all"}
    assert used <= set(VARIABLES), used
