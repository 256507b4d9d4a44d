"""The alerting rules we ship pass `promtool check rules` and their own `promtool test rules`,
and every rule carries what an on-call engineer needs: severity, summary, description, runbook."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from cml_monitor.metrics import alert_severities

from .prometheus_tools import binary

RULES = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"
RUNBOOKS = Path(__file__).resolve().parents[1] / "docs" / "runbooks"


def _promtool(*args: str) -> str:
    result = subprocess.run(
        [binary("promtool"), *args], cwd=RULES, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_promtool_checks_the_rules() -> None:
    assert "SUCCESS" in _promtool("check", "rules", "cml-monitor-rules.yml")


def test_promtool_unit_tests_pass() -> None:
    assert "SUCCESS" in _promtool("test", "rules", "cml-monitor-rules-tests.yml")


def test_every_rule_is_documented_and_tested() -> None:
    groups = yaml.safe_load((RULES / "cml-monitor-rules.yml").read_text())["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) >= 10
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "error", "warning", "info"}, rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        runbook = annotations["runbook_url"]
        assert runbook.startswith("docs/runbooks/"), rule["alert"]
        assert (RUNBOOKS / runbook.removeprefix("docs/runbooks/")).is_file(), runbook
    tests = (RULES / "cml-monitor-rules-tests.yml").read_text()
    untested = [rule["alert"] for rule in rules if f"alertname: {rule['alert']}\n" not in tests]
    assert untested == []


def test_every_alert_kind_has_a_runbook() -> None:
    for kind in alert_severities():
        page = RUNBOOKS / f"{kind}.md"
        assert page.is_file(), page
        text = page.read_text()
        for heading in ("## What it means", "## How to check", "## What to do"):
            assert heading in text, (page, heading)
