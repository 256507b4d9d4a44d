"""`cml-monitor aws-setup`: the AWS side the monitor needs, printed for a person to apply.

Printed, never applied: the EventBridge rule (EC2 state changes and AWS Health scheduled
changes for EC2), the SQS queue and its policy (EventBridge may send to it, nothing else), and
the least-privilege IAM policy of the monitor, with every action the code calls and no other
(`deploy/iam-policy.json` is this policy for the default queue name, checked by the tests).

Stop, start and reboot are allowed only on instances that carry the managed tag
(`CML_MONITOR_MANAGED_TAG`, an `aws:ResourceTag/<key>` condition): the monitor's credentials
cannot touch the rest of the account. Describe and Get calls keep `"Resource": "*"`: EC2's
Describe* and CloudWatch's reads support no resource-level condition.

Several regions get one queue and one rule each: an EventBridge rule can only target an SQS
queue in its own region (reaching another region takes an extra event bus and rule there), so a
queue per region is the simplest wiring, and a region's outage leaves the others' events flowing.
"""

from __future__ import annotations

import json
from typing import Any

RULE_NAME = "cml-monitor-ec2-events"
DEFAULT_QUEUE = "cml-monitor-events"
DEFAULT_MANAGED_TAG = ("cml-monitor:managed", "true")

EVENT_PATTERN: dict[str, Any] = {
    "$or": [
        {"source": ["aws.ec2"], "detail-type": ["EC2 Instance State-change Notification"]},
        {
            "source": ["aws.health"],
            "detail-type": ["AWS Health Event"],
            "detail": {"service": ["EC2"], "eventTypeCategory": ["scheduledChange"]},
        },
    ]
}


def iam_policy(
    queue_arn: str | list[str], managed_tag: tuple[str, str] = DEFAULT_MANAGED_TAG
) -> dict[str, Any]:
    """Every AWS action the monitor's code calls, and nothing more; state changes only on
    instances tagged `managed_tag` (key, value)."""
    key, value = managed_tag
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ReadWorkerState",
                "Effect": "Allow",
                "Action": ["ec2:DescribeInstanceStatus", "ec2:DescribeInstances"],
                "Resource": "*",
            },
            {
                "Sid": "ReadWorkerMetrics",
                "Effect": "Allow",
                "Action": ["cloudwatch:GetMetricData", "cloudwatch:ListMetrics"],
                "Resource": "*",
            },
            {
                "Sid": "StartStopAndRebootWorkers",
                "Effect": "Allow",
                "Action": ["ec2:RebootInstances", "ec2:StartInstances", "ec2:StopInstances"],
                "Resource": "arn:aws:ec2:*:*:instance/*",
                "Condition": {"StringEquals": {f"aws:ResourceTag/{key}": value}},
            },
            {
                "Sid": "ReadStateChangeEvents",
                "Effect": "Allow",
                "Action": ["sqs:DeleteMessage", "sqs:ReceiveMessage"],
                "Resource": queue_arn,
            },
        ],
    }


def queue_policy(queue_arn: str, rule_arn: str) -> dict[str, Any]:
    """EventBridge, for this rule only, may send to the queue."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "EventBridgeSendsStateChanges",
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
            }
        ],
    }


def _region_section(region: str, queue_name: str, account: str) -> tuple[str, str, str]:
    """The commands that create one region's queue, its policy and its rule; and the queue's ARN
    and URL."""
    queue_arn = f"arn:aws:sqs:{region}:{account}:{queue_name}"
    rule_arn = f"arn:aws:events:{region}:{account}:rule/{RULE_NAME}"
    queue_url = f"https://sqs.{region}.amazonaws.com/{account}/{queue_name}"
    policy = json.dumps({"Policy": json.dumps(queue_policy(queue_arn, rule_arn))})
    text = f"""# ── Region {region}: rule {RULE_NAME} → queue {queue_name}

## The SQS queue the events go to
aws sqs create-queue --region {region} --queue-name {queue_name} \\
  --attributes MessageRetentionPeriod=86400,VisibilityTimeout=60

## Its policy: EventBridge may send to it, for this rule only
aws sqs set-queue-attributes --region {region} --queue-url {queue_url} --attributes '{policy}'

## The EventBridge rule (EC2 state changes, AWS Health scheduled changes for EC2)
aws events put-rule --region {region} --name {RULE_NAME} --event-pattern '{json.dumps(EVENT_PATTERN)}'
aws events put-targets --region {region} --rule {RULE_NAME} --targets 'Id=cml-monitor,Arn={queue_arn}'
"""
    return text, queue_arn, queue_url


def render(
    regions: str | list[str],
    queue_name: str,
    account: str = "<ACCOUNT_ID>",
    managed_tag: tuple[str, str] = DEFAULT_MANAGED_TAG,
) -> str:
    regions = [regions] if isinstance(regions, str) else list(dict.fromkeys(regions))
    sections, arns, urls = zip(
        *(_region_section(region, queue_name, account) for region in regions), strict=True
    )
    key, value = managed_tag
    pattern = json.dumps(EVENT_PATTERN, indent=2)
    policy_arns: str | list[str] = arns[0] if len(arns) == 1 else list(arns)
    per_region = "\n".join(sections)
    where = ", ".join(regions)
    return f"""# cml-monitor aws-setup — what to create in {where} (printed only; nothing was applied)
# One rule and one queue per region: an EventBridge rule can only target a queue in its region.

{per_region}
# The event pattern, readable:
{pattern}

## The monitor's IAM policy (least privilege: every action the code calls, no other;
## stop, start and reboot only on instances tagged {key}={value})
{json.dumps(iam_policy(policy_arns, managed_tag), indent=2)}

## Tag each worker the monitor may stop, start or reboot (any other is refused by IAM)
aws ec2 create-tags --region <REGION> --resources <INSTANCE_ID> --tags 'Key={key},Value={value}'

## The monitor's settings
WORKER_EVENTS_QUEUE_URL={",".join(urls)}
CML_MONITOR_MANAGED_TAG={key}={value}
"""
