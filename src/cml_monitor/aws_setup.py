"""`cml-monitor aws-setup`: the AWS side the monitor needs, printed for a person to apply.

Printed, never applied: the EventBridge rule (EC2 state changes and AWS Health scheduled
changes for EC2), the SQS queue and its policy (EventBridge may send to it, nothing else), and
the least-privilege IAM policy of the monitor, with every action the code calls and no other
(`deploy/iam-policy.json` is this policy for the default queue name, checked by the tests).
"""

from __future__ import annotations

import json
from typing import Any

RULE_NAME = "cml-monitor-ec2-events"
DEFAULT_QUEUE = "cml-monitor-events"

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


def iam_policy(queue_arn: str) -> dict[str, Any]:
    """Every AWS action the monitor's code calls, and nothing more."""
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


def render(region: str, queue_name: str, account: str = "<ACCOUNT_ID>") -> str:
    queue_arn = f"arn:aws:sqs:{region}:{account}:{queue_name}"
    rule_arn = f"arn:aws:events:{region}:{account}:rule/{RULE_NAME}"
    queue_url = f"https://sqs.{region}.amazonaws.com/{account}/{queue_name}"
    pattern = json.dumps(EVENT_PATTERN, indent=2)
    policy = json.dumps({"Policy": json.dumps(queue_policy(queue_arn, rule_arn))})
    return f"""# cml-monitor aws-setup — what to create in {region} (printed only; nothing was applied)

## 1. The SQS queue the events go to
aws sqs create-queue --region {region} --queue-name {queue_name} \\
  --attributes MessageRetentionPeriod=86400,VisibilityTimeout=60

## 2. Its policy: EventBridge may send to it, for this rule only
aws sqs set-queue-attributes --region {region} --queue-url {queue_url} --attributes '{policy}'

## 3. The EventBridge rule (EC2 state changes, AWS Health scheduled changes for EC2)
aws events put-rule --region {region} --name {RULE_NAME} --event-pattern '{json.dumps(EVENT_PATTERN)}'
aws events put-targets --region {region} --rule {RULE_NAME} --targets 'Id=cml-monitor,Arn={queue_arn}'

# The event pattern, readable:
{pattern}

## 4. The monitor's IAM policy (least privilege: every action the code calls, no other)
{json.dumps(iam_policy(queue_arn), indent=2)}

## 5. The monitor's setting
WORKER_EVENTS_QUEUE_URL={queue_url}
"""
