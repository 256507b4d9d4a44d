"""The deployment kit is real: the unit verifies, the settings example loads, the IAM policy is
exactly what the code calls."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cml_fleet_sim.simulator import FleetSimulator
from cml_monitor.aws import AwsEc2Client
from cml_monitor.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


def policy_actions() -> set[str]:
    policy = json.loads((DEPLOY / "iam-policy.json").read_text())
    return {action for statement in policy["Statement"] for action in statement["Action"]}


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    unit = (DEPLOY / "cml-monitor.service").read_text()
    assert "User=cml-monitor" in unit and "NoNewPrivileges=yes" in unit and "Restart=on-failure" in unit
    executable = Path(sys.executable).with_name("cml-monitor")
    local = tmp_path / "cml-monitor.service"  # the same unit, pointing at this checkout's venv
    local.write_text(unit.replace("/opt/cml-monitor/venv/bin/cml-monitor", str(executable)))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(local)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr  # not even a warning


def test_the_production_settings_example_is_valid() -> None:
    settings = load_settings(_env_file=DEPLOY / "cml-monitor.env.example")
    assert settings.database_url.startswith("postgresql+asyncpg://")
    assert settings.oidc_roles_claim == "realm_access.roles"
    assert settings.log_format == "json" and settings.cml_monitor_role == "all"


def test_the_code_names_no_aws_operation_the_policy_lacks() -> None:
    """Every botocore operation written in `aws/` is in the policy (and nothing else is)."""
    source = "\n".join(path.read_text() for path in (ROOT / "src/cml_monitor/aws").glob("*.py"))
    operations = set(re.findall(r'"((?:describe|get|list|start|stop|reboot|put)_[a-z_]+)"', source))
    service = {
        "describe_instance_status": "ec2",
        "describe_instances": "ec2",
        "start_instances": "ec2",
        "stop_instances": "ec2",
        "reboot_instances": "ec2",
        "get_metric_data": "cloudwatch",
        "list_metrics": "cloudwatch",
    }
    assert operations <= set(service), f"new AWS operations: {operations - set(service)}"
    needed = {f"{service[op]}:{''.join(part.title() for part in op.split('_'))}" for op in operations}
    assert needed == policy_actions()


async def test_every_operation_the_client_sends_is_allowed_by_the_policy() -> None:
    """Against the simulator, which records every operation it is sent."""
    sim = FleetSimulator(instant_transitions=True, seed=3)
    sim.start()
    client = AwsEc2Client(endpoint_url=sim.url, max_attempts=2)
    try:
        (instance,) = sim.add_workers(1, with_controllers=False, tags={"Role": "cml"})
        ids = [instance.instance_id]
        await client.describe_instance_statuses("us-east-1", ids)
        await client.get_utilization("us-east-1", ids)
        await client.describe_instances_by_tags("us-east-1", {"Role": "cml"})
        await client.change_instance_state("us-east-1", instance.instance_id, "stop")
        await client.change_instance_state("us-east-1", instance.instance_id, "start")
        await client.change_instance_state("us-east-1", instance.instance_id, "reboot")
    finally:
        await client.close()
        sim.stop()
    sent = {
        f"{'cloudwatch' if svc.lower().startswith('cloudwatch') or svc == 'monitoring' else 'ec2'}:{op}"
        for svc, op in sim.fleet.requests
    }
    assert sent == policy_actions()
