"""Simulated EC2 and CloudWatch on one HTTP endpoint, answering the installed AWS SDK.

Limits and errors follow AWS: 100 instance ids per `DescribeInstanceStatus`, `MaxResults`
5–1000 (not together with ids), 500 queries per `GetMetricData`, unknown ids
`InvalidInstanceID.NotFound`, throttling as `RequestLimitExceeded` (EC2, HTTP 503) or
`Throttling` (CloudWatch, HTTP 400) from per-region token buckets when switched on.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .fleet import STATE_CODES, SimulatedFleet, SimulatedInstance
from .protocols import (
    AwsApiError,
    AwsRequest,
    cloudwatch_error,
    cloudwatch_response,
    decode,
    ec2_error,
    ec2_response,
    to_epoch,
)
from .sqs import SimulatedQueue, sqs_response

logger = logging.getLogger(__name__)

MAX_DESCRIBE_IDS = 100
MAX_METRIC_QUERIES = 500
LIST_METRICS_PAGE = 500
EC2_DESCRIBE = {"DescribeInstanceStatus", "DescribeInstances"}


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def _encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _decode_token(token: Any) -> int:
    if not token:
        return 0
    try:
        return int(base64.urlsafe_b64decode(str(token).encode()).decode().split(":", 1)[1])
    except (ValueError, IndexError):
        raise AwsApiError("InvalidParameterValue", "The token is not valid.") from None


def _state(instance: SimulatedInstance) -> dict[str, Any]:
    return {"code": STATE_CODES[instance.state], "name": instance.state}


class SimulatedAws:
    """The request handler; `handle` is mounted as the catch-all route of the simulator."""

    def __init__(self, fleet: SimulatedFleet) -> None:
        self.fleet = fleet
        self.queue: SimulatedQueue | None = None  # EventBridge → SQS, when events are on
        self._listings: dict[tuple[Any, ...], tuple[float, list[dict[str, Any]]]] = {}
        self._ec2: dict[str, Callable[[AwsRequest], dict[str, Any]]] = {
            "DescribeInstanceStatus": self.describe_instance_status,
            "DescribeInstances": self.describe_instances,
            "StartInstances": self.start_instances,
            "StopInstances": self.stop_instances,
            "TerminateInstances": self.terminate_instances,
            "RebootInstances": self.reboot_instances,
        }
        self._cloudwatch: dict[str, Callable[[AwsRequest], dict[str, Any]]] = {
            "GetMetricData": self.get_metric_data,
            "GetMetricStatistics": self.get_metric_statistics,
            "ListMetrics": self.list_metrics,
            "PutMetricData": self.put_metric_data,
        }

    async def handle(self, request: Request) -> Response:
        target = request.headers.get("x-amz-target", "")
        if target.startswith("AmazonSQS."):
            operation = target.split(".", 1)[1]
            self.fleet.requests[("sqs", operation)] += 1
            if self.queue is None:
                return Response('{"__type":"com.amazonaws.sqs#QueueDoesNotExist"}', status_code=400)
            return await sqs_response(self.queue, request, operation)
        try:
            call = await decode(request)
        except AwsApiError as error:
            return ec2_error(error)
        except Exception:
            return ec2_error(AwsApiError("MalformedQueryString", "The request could not be decoded."))
        fleet = self.fleet
        fleet.requests[(call.service, call.operation)] += 1
        if fleet.faults.latency:
            await asyncio.sleep(fleet.faults.latency)
        try:
            if fleet.should_fail():
                raise AwsApiError("InternalError", "An internal error has occurred.", 500, "Receiver")
            if call.service == "ec2":
                handler = self._ec2.get(call.operation)
                bucket = "ec2-describe" if call.operation in EC2_DESCRIBE else "ec2-mutate"
                if handler is None:
                    raise AwsApiError(
                        "InvalidAction", f"The action {call.operation} is not valid for this web service."
                    )
                if not fleet.admit(call.region, bucket):
                    raise AwsApiError("RequestLimitExceeded", "Request limit exceeded.", 503)
                return ec2_response(call.operation, handler(call))
            handler = self._cloudwatch.get(call.operation)
            if handler is None:
                raise AwsApiError("InvalidAction", f"Could not find operation {call.operation}.")
            bucket = "cloudwatch-getmetricdata" if call.operation == "GetMetricData" else "cloudwatch-other"
            if not fleet.admit(call.region, bucket):
                raise AwsApiError("Throttling", "Rate exceeded", 400)
            return cloudwatch_response(call.protocol, call.operation, handler(call))
        except AwsApiError as error:
            return ec2_error(error) if call.service == "ec2" else cloudwatch_error(call.protocol, error)
        except (KeyError, TypeError, ValueError) as exc:
            error = AwsApiError("InvalidParameterValue", f"Invalid request: {exc}")
            return ec2_error(error) if call.service == "ec2" else cloudwatch_error(call.protocol, error)

    # -- EC2 -------------------------------------------------------------------------------

    def _instances_by_id(self, region: str, ids: list[str]) -> list[SimulatedInstance]:
        found, missing = [], []
        for instance_id in ids:
            instance = self.fleet.get(instance_id)
            if instance is None or instance.region != region:
                missing.append(instance_id)
            else:
                found.append(instance)
        if len(missing) == 1:
            raise AwsApiError("InvalidInstanceID.NotFound", f"The instance ID '{missing[0]}' does not exist")
        if missing:
            raise AwsApiError(
                "InvalidInstanceID.NotFound", f"The instance IDs '{', '.join(missing)}' do not exist"
            )
        return found

    @staticmethod
    def _page_size(params: dict[str, Any], ids: list[str]) -> int | None:
        if "MaxResults" not in params:
            return None
        size = int(params["MaxResults"])
        if ids:
            raise AwsApiError(
                "InvalidParameterCombination",
                "The parameter instancesSet cannot be used with the parameter maxResults",
            )
        if not 5 <= size <= 1000:
            raise AwsApiError(
                "InvalidParameterValue",
                f"Value ( {size} ) for parameter maxResults is invalid. Expecting a value "
                "greater than 5 and less than 1000.",
            )
        return size

    @staticmethod
    def _filters(params: dict[str, Any]) -> list[tuple[str, list[str]]]:
        return [
            (f["Name"], [str(v) for v in _as_list(f.get("Value"))]) for f in _as_list(params.get("Filter"))
        ]

    def _paginate(
        self, items: list[Any], params: dict[str, Any], size: int | None
    ) -> tuple[list[Any], str | None]:
        if size is None:
            return items, None
        offset = _decode_token(params.get("NextToken"))
        page = items[offset : offset + size]
        return page, (_encode_token(offset + size) if offset + size < len(items) else None)

    def describe_instance_status(self, call: AwsRequest) -> dict[str, Any]:
        ids = [str(i) for i in _as_list(call.params.get("InstanceId"))]
        if len(ids) > MAX_DESCRIBE_IDS:
            raise AwsApiError(
                "InvalidRequest",
                f"{len(ids)} exceeds the maximum number of instance IDs that can be specificied (100). "
                "Please specify fewer than 100 instance IDs.",
            )
        size = self._page_size(call.params, ids)
        include_all = _truthy(call.params.get("IncludeAllInstances", False))
        candidates = (
            self._instances_by_id(call.region, ids)
            if ids
            else sorted(self.fleet.all(call.region), key=lambda i: i.instance_id)
        )
        if not include_all:
            candidates = [i for i in candidates if i.state == "running"]
        for name, values in self._filters(call.params):
            candidates = [i for i in candidates if self._status_filter(i, name) in values]
        page, token = self._paginate(candidates, call.params, size)
        items = []
        for instance in page:
            system, own = self.fleet.status_checks(instance)
            items.append(
                {
                    "instanceId": instance.instance_id,
                    "availabilityZone": instance.availability_zone,
                    "instanceState": _state(instance),
                    "systemStatus": {"status": system, "details": [self._detail(system)]},
                    "instanceStatus": {"status": own, "details": [self._detail(own)]},
                    "eventsSet": [_scheduled_event(e) for e in instance.scheduled_events],
                }
            )
        return {"instanceStatusSet": items, "nextToken": token}

    @staticmethod
    def _detail(status: str) -> dict[str, str]:
        verdict = {"ok": "passed", "impaired": "failed", "initializing": "initializing"}.get(
            status, "insufficient-data"
        )
        return {"name": "reachability", "status": verdict}

    def _status_filter(self, instance: SimulatedInstance, name: str) -> str | None:
        system, own = self.fleet.status_checks(instance)
        return {
            "instance-state-name": instance.state,
            "instance-status.status": own,
            "system-status.status": system,
            "availability-zone": instance.availability_zone,
            "instance-id": instance.instance_id,
        }.get(name)

    @staticmethod
    def _instance_matches(instance: SimulatedInstance, name: str, values: list[str]) -> bool:
        if name.startswith("tag:"):
            return instance.tags.get(name[4:]) in values
        if name == "tag-key":
            return any(key in values for key in instance.tags)
        field = {
            "instance-id": instance.instance_id,
            "instance-state-name": instance.state,
            "instance-type": instance.instance_type,
            "availability-zone": instance.availability_zone,
        }.get(name)
        return field in values

    def describe_instances(self, call: AwsRequest) -> dict[str, Any]:
        ids = [str(i) for i in _as_list(call.params.get("InstanceId"))]
        size = self._page_size(call.params, ids)
        candidates = (
            self._instances_by_id(call.region, ids)
            if ids
            else sorted(self.fleet.all(call.region), key=lambda i: i.instance_id)
        )
        for name, values in self._filters(call.params):
            candidates = [i for i in candidates if self._instance_matches(i, name, values)]
        page, token = self._paginate(candidates, call.params, size)
        reservations = []
        for instance in page:
            reservations.append(
                {
                    "reservationId": "r-" + instance.instance_id[2:],
                    "ownerId": "123456789012",
                    "instancesSet": [
                        {
                            "instanceId": instance.instance_id,
                            "imageId": instance.image_id,
                            "instanceState": _state(instance),
                            "instanceType": instance.instance_type,
                            "launchTime": datetime.fromtimestamp(instance.launch_time, UTC),
                            "placement": {"availabilityZone": instance.availability_zone},
                            "tagSet": [{"key": k, "value": v} for k, v in instance.tags.items()],
                        }
                    ],
                }
            )
        return {"reservationSet": reservations, "nextToken": token}

    def _authorized(self, call: AwsRequest, instances: list[SimulatedInstance]) -> None:
        """What IAM answers when the policy's `aws:ResourceTag` condition does not match."""
        required = self.fleet.faults.action_tag
        if required is None:
            return
        key, value = required
        for instance in instances:
            if instance.tags.get(key) != value:
                raise AwsApiError(
                    "UnauthorizedOperation",
                    "You are not authorized to perform this operation. User: "
                    "arn:aws:sts::123456789012:assumed-role/cml-monitor/i-0monitor is not authorized "
                    f"to perform: ec2:{call.operation} on resource: arn:aws:ec2:{call.region}:"
                    f"123456789012:instance/{instance.instance_id} because no identity-based policy "
                    f"allows the ec2:{call.operation} action.",
                    403,
                )

    def _change_state(self, call: AwsRequest, change: Callable[[str], tuple[str, str]]) -> dict[str, Any]:
        instances = self._instances_by_id(
            call.region, [str(i) for i in _as_list(call.params.get("InstanceId"))]
        )
        self._authorized(call, instances)
        items = []
        for instance in instances:
            previous, current = change(instance.instance_id)
            items.append(
                {
                    "instanceId": instance.instance_id,
                    "currentState": {"code": STATE_CODES[current], "name": current},
                    "previousState": {"code": STATE_CODES[previous], "name": previous},
                }
            )
        return {"instancesSet": items}

    def start_instances(self, call: AwsRequest) -> dict[str, Any]:
        return self._change_state(call, self.fleet.start)

    def stop_instances(self, call: AwsRequest) -> dict[str, Any]:
        return self._change_state(call, self.fleet.stop)

    def terminate_instances(self, call: AwsRequest) -> dict[str, Any]:
        return self._change_state(call, self.fleet.terminate)

    def reboot_instances(self, call: AwsRequest) -> dict[str, Any]:
        instances = self._instances_by_id(
            call.region, [str(i) for i in _as_list(call.params.get("InstanceId"))]
        )
        self._authorized(call, instances)
        for instance in instances:
            self.fleet.reboot(instance.instance_id)
        return {"return": True}

    # -- CloudWatch ------------------------------------------------------------------------

    @staticmethod
    def _dims(raw: Any) -> list[tuple[str, str]]:
        return [(str(d["Name"]), str(d["Value"])) for d in _as_list(raw)]

    def _instance_for(
        self, region: str, namespace: str, name: str, dims: list[tuple[str, str]]
    ) -> tuple[SimulatedInstance, str] | None:
        instance_id = dict(dims).get("InstanceId")
        if instance_id is None:
            return None
        instance = self.fleet.get(instance_id)
        if instance is None or instance.region != region:
            return None
        if namespace == "AWS/EC2" and name == "CPUUtilization" and len(dims) == 1:
            return instance, "cpu"
        if namespace == "CWAgent" and name == "mem_used_percent":
            published = instance.memory_dimensions()
            if published is not None and {(d["Name"], d["Value"]) for d in published} == set(dims):
                return instance, "memory"
        return None

    def _series(
        self,
        region: str,
        namespace: str,
        name: str,
        dims: list[tuple[str, str]],
        start: float,
        end: float,
        period: int,
        stat: str,
    ) -> list[tuple[float, float]]:
        """Datapoints (bucket start, value), oldest first, buckets aligned to `start`."""
        if period <= 0 or end <= start:
            raise AwsApiError(
                "InvalidParameterValue", "The parameter Period must be positive and StartTime < EndTime."
            )
        stored = self.fleet.stored_points(namespace, name, dims)
        if stored is not None:
            buckets: dict[int, list[float]] = {}
            for at, value in stored:
                if start <= at < end:
                    buckets.setdefault(int((at - start) // period), []).append(value)
            return [(start + b * period, _aggregate(values, stat)) for b, values in sorted(buckets.items())]
        owner = self._instance_for(region, namespace, name, dims)
        if owner is None:
            return []
        instance, metric = owner
        now = time.time()
        points = []
        bucket = start
        while bucket < end and bucket < now:
            if self.fleet.running_between(instance, bucket, bucket + period):
                value = self.fleet.computed_value(instance, metric, min(bucket + period / 2, now))
                if value is not None:
                    points.append((bucket, _aggregate([value], stat)))
            bucket += period
        return points

    def get_metric_data(self, call: AwsRequest) -> dict[str, Any]:
        queries = _as_list(call.params.get("MetricDataQueries"))
        if len(queries) > MAX_METRIC_QUERIES:
            raise AwsApiError(
                "InvalidParameterValue",
                f"The collection MetricDataQueries must not have a size greater than {MAX_METRIC_QUERIES}.",
            )
        start = to_epoch(call.params["StartTime"])
        end = to_epoch(call.params["EndTime"])
        descending = str(call.params.get("ScanBy", "TimestampDescending")) != "TimestampAscending"
        ids = [str(q.get("Id")) for q in queries]
        if len(set(ids)) != len(ids):
            raise AwsApiError(
                "ValidationError", "The values for parameter id in MetricDataQueries are not unique."
            )
        results = []
        for query in queries:
            stat_spec = query.get("MetricStat")
            if stat_spec is None:
                raise AwsApiError("InvalidParameterValue", "The simulator supports MetricStat queries only.")
            metric = stat_spec["Metric"]
            points = self._series(
                call.region,
                str(metric["Namespace"]),
                str(metric["MetricName"]),
                self._dims(metric.get("Dimensions")),
                start,
                end,
                int(stat_spec["Period"]),
                str(stat_spec["Stat"]),
            )
            if descending:
                points.reverse()
            if not _truthy(query.get("ReturnData", True)):
                continue
            results.append(
                {
                    "Id": str(query["Id"]),
                    "Label": query.get("Label") or str(metric["MetricName"]),
                    "Timestamps": [datetime.fromtimestamp(at, UTC) for at, _ in points],
                    "Values": [value for _, value in points],
                    "StatusCode": "Complete",
                }
            )
        return {"MetricDataResults": results, "Messages": []}

    def get_metric_statistics(self, call: AwsRequest) -> dict[str, Any]:
        statistics = [str(s) for s in _as_list(call.params.get("Statistics"))] or ["Average"]
        dims = self._dims(call.params.get("Dimensions"))
        start = to_epoch(call.params["StartTime"])
        end = to_epoch(call.params["EndTime"])
        period = int(call.params["Period"])
        namespace, name = str(call.params["Namespace"]), str(call.params["MetricName"])
        by_time: dict[float, dict[str, Any]] = {}
        for stat in statistics:
            for at, value in self._series(call.region, namespace, name, dims, start, end, period, stat):
                point = by_time.setdefault(
                    at, {"Timestamp": datetime.fromtimestamp(at, UTC), "Unit": "Percent"}
                )
                point[stat] = value
        return {"Label": name, "Datapoints": [by_time[at] for at in sorted(by_time)]}

    def list_metrics(self, call: AwsRequest) -> dict[str, Any]:
        namespace = call.params.get("Namespace")
        name = call.params.get("MetricName")
        wanted = [(str(d["Name"]), d.get("Value")) for d in _as_list(call.params.get("Dimensions"))]
        key = (call.region, namespace, name, tuple(wanted))
        cached = self._listings.get(key)
        if cached is not None and time.monotonic() - cached[0] < 10 and call.params.get("NextToken"):
            metrics = cached[1]  # later pages of the same listing: no rebuild (a rebuild is O(fleet))
        else:
            metrics = self._build_listing(call.region, namespace, name, wanted)
            self._listings[key] = (time.monotonic(), metrics)
        offset = _decode_token(call.params.get("NextToken"))
        page = metrics[offset : offset + LIST_METRICS_PAGE]
        token = (
            _encode_token(offset + LIST_METRICS_PAGE) if offset + LIST_METRICS_PAGE < len(metrics) else None
        )
        return {"Metrics": page, "NextToken": token}

    def _build_listing(
        self, region: str, namespace: Any, name: Any, wanted: list[tuple[str, Any]]
    ) -> list[dict[str, Any]]:
        metrics: list[dict[str, Any]] = []
        seen: set[tuple[str, str, frozenset[tuple[str, str]]]] = set()

        def add(ns: str, metric: str, dims: list[tuple[str, str]]) -> None:
            key = (ns, metric, frozenset(dims))
            if key in seen or (namespace and ns != namespace) or (name and metric != name):
                return
            present = dict(dims)
            if any(k not in present or (v is not None and present[k] != str(v)) for k, v in wanted):
                return
            seen.add(key)
            metrics.append(
                {
                    "Namespace": ns,
                    "MetricName": metric,
                    "Dimensions": [{"Name": k, "Value": v} for k, v in dims],
                }
            )

        for instance in sorted(self.fleet.all(region), key=lambda i: i.instance_id):
            if instance.state == "terminated":
                continue
            add("AWS/EC2", "CPUUtilization", [("InstanceId", instance.instance_id)])
            memory = instance.memory_dimensions()
            if memory is not None:
                add("CWAgent", "mem_used_percent", [(d["Name"], d["Value"]) for d in memory])
        for ns, metric, dims in self.fleet.stored_metrics():
            add(ns, metric, sorted(dims))
        return metrics

    def put_metric_data(self, call: AwsRequest) -> dict[str, Any]:
        namespace = str(call.params["Namespace"])
        for datum in _as_list(call.params.get("MetricData")):
            at = to_epoch(datum["Timestamp"]) if datum.get("Timestamp") is not None else time.time()
            values = _as_list(datum.get("Values")) or [datum.get("Value")]
            for value in values:
                self.fleet.put_metric(
                    namespace, str(datum["MetricName"]), self._dims(datum.get("Dimensions")), at, float(value)
                )
        return {}


def _aggregate(values: list[float], stat: str) -> float:
    if stat == "Maximum":
        return max(values)
    if stat == "Minimum":
        return min(values)
    if stat == "Sum":
        return float(sum(values))
    if stat == "SampleCount":
        return float(len(values))
    if stat in ("Average", "p50", "p90", "p99"):
        return sum(values) / len(values)
    raise AwsApiError("InvalidParameterValue", f"The statistic {stat} is not supported.")


def _scheduled_event(event: dict[str, Any]) -> dict[str, Any]:
    """An `InstanceStatusEvent` as EC2's query protocol writes it."""
    return {
        "instanceEventId": event["id"],
        "code": event["code"],
        "description": event["description"],
        "notBefore": datetime.fromtimestamp(event["not_before"], UTC),
        "notAfter": datetime.fromtimestamp(event["not_after"], UTC),
    }
