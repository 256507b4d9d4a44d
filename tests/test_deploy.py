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
from cml_monitor.aws.events_queue import EventQueueConsumer
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
    operations = set(
        re.findall(r'"((?:describe|get|list|start|stop|reboot|put|receive|delete|send)_[a-z_]+)"', source)
    )
    service = {
        "describe_instance_status": "ec2",
        "describe_instances": "ec2",
        "start_instances": "ec2",
        "stop_instances": "ec2",
        "reboot_instances": "ec2",
        "get_metric_data": "cloudwatch",
        "list_metrics": "cloudwatch",
        "receive_message": "sqs",
        "delete_message_batch": "sqs",
    }
    assert operations <= set(service), f"new AWS operations: {operations - set(service)}"
    needed = {iam_action(service[op], "".join(part.title() for part in op.split("_"))) for op in operations}
    assert needed == policy_actions()


def iam_action(service: str, operation: str) -> str:
    """The IAM action an API operation needs (a batch delete is allowed by `DeleteMessage`)."""
    return f"{service}:{'DeleteMessage' if operation == 'DeleteMessageBatch' else operation}"


def test_the_shipped_policy_is_the_one_aws_setup_prints() -> None:
    from cml_monitor.aws_setup import iam_policy

    shipped = json.loads((DEPLOY / "iam-policy.json").read_text())
    assert shipped == iam_policy("arn:aws:sqs:*:*:cml-monitor-events")


def test_only_tagged_instances_may_be_stopped_started_or_rebooted() -> None:
    """State changes carry the managed-tag condition; reads (which support none) stay on `*`."""
    from cml_monitor.aws_setup import iam_policy

    for policy, (key, value) in (
        (json.loads((DEPLOY / "iam-policy.json").read_text()), ("cml-monitor:managed", "true")),
        (iam_policy("arn:aws:sqs:eu-west-1:1:q", ("team", "cml")), ("team", "cml")),
    ):
        for statement in policy["Statement"]:
            actions = set(statement["Action"])
            changes = {a for a in actions if a.split(":")[1].startswith(("Stop", "Start", "Reboot"))}
            if changes:
                assert (
                    changes == actions == {"ec2:StopInstances", "ec2:StartInstances", "ec2:RebootInstances"}
                )
                assert statement["Resource"] == "arn:aws:ec2:*:*:instance/*"
                assert statement["Condition"] == {"StringEquals": {f"aws:ResourceTag/{key}": value}}
            else:
                assert "Condition" not in statement
        assert sum("Condition" in s for s in policy["Statement"]) == 1


def test_aws_setup_prints_the_rule_the_queue_policy_and_the_iam_policy() -> None:
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("cml-monitor")),
            "aws-setup",
            "--region",
            "eu-west-1",
            "--queue-name",
            "q1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "EC2 Instance State-change Notification" in out and '"scheduledChange"' in out
    assert "arn:aws:sqs:eu-west-1:<ACCOUNT_ID>:q1" in out and "events.amazonaws.com" in out
    assert "WORKER_EVENTS_QUEUE_URL=https://sqs.eu-west-1.amazonaws.com/<ACCOUNT_ID>/q1" in out
    bad = subprocess.run(
        [str(Path(sys.executable).with_name("cml-monitor")), "aws-setup", "--region", "mars"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "--region" in bad.stderr and bad.stdout == ""


def test_aws_setup_prints_a_rule_and_a_queue_per_region_and_the_managed_tag() -> None:
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("cml-monitor")),
            "aws-setup",
            "--region",
            "eu-west-1",
            "--region",
            "us-east-2",
            "--managed-tag",
            "team=cml-lab",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for region in ("eu-west-1", "us-east-2"):
        assert f"# ── Region {region}: rule cml-monitor-ec2-events → queue cml-monitor-events" in out
        assert f"aws events put-rule --region {region} --name cml-monitor-ec2-events" in out
        assert f"aws sqs create-queue --region {region} --queue-name cml-monitor-events" in out
        assert f"Arn=arn:aws:sqs:{region}:<ACCOUNT_ID>:cml-monitor-events" in out
    assert (
        "WORKER_EVENTS_QUEUE_URL=https://sqs.eu-west-1.amazonaws.com/<ACCOUNT_ID>/cml-monitor-events,"
        "https://sqs.us-east-2.amazonaws.com/<ACCOUNT_ID>/cml-monitor-events"
    ) in out
    assert '"aws:ResourceTag/team": "cml-lab"' in out and "CML_MONITOR_MANAGED_TAG=team=cml-lab" in out
    assert "--tags 'Key=team,Value=cml-lab'" in out
    bad = subprocess.run(
        [str(Path(sys.executable).with_name("cml-monitor")), "aws-setup", "--managed-tag", "aws:x=1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "--managed-tag" in bad.stderr and bad.stdout == ""


async def _ignore(_change: object) -> str:
    return "stale"


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
        queue = sim.enable_events()  # from here, every state change is sent to the queue
        await client.change_instance_state("us-east-1", instance.instance_id, "stop")
        await client.change_instance_state("us-east-1", instance.instance_id, "start")
        await client.change_instance_state("us-east-1", instance.instance_id, "reboot")
        consumer = EventQueueConsumer(queue.url, _ignore, region="us-east-1", endpoint_url=sim.url)
        messages = await consumer._receive()
        await consumer._process(messages)
        assert messages and queue.deleted == len(messages)
        await consumer._pool.close()
    finally:
        await client.close()
        sim.stop()
    sent = {iam_action(svc, op) for svc, op in sim.fleet.requests}
    assert sent == policy_actions()
