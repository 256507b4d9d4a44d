"""AWS access: batched EC2 and CloudWatch calls behind `AwsEc2Client`."""

from .client import AwsEc2Client
from .cloudwatch import Utilization
from .ec2 import ActionNotPermitted, InstanceStatus
from .pool import AwsError
from .requests import RequestCounter

__all__ = [
    "ActionNotPermitted",
    "AwsEc2Client",
    "AwsError",
    "InstanceStatus",
    "RequestCounter",
    "Utilization",
]
