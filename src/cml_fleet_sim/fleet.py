"""The simulated fleet: EC2 instances with a lifecycle, load profiles and scenario overrides.

Metrics are computed on demand from each instance's load profile (a daily curve, noise and
spikes, all derived from a hash of the instance and the time bucket, so they are reproducible
and nothing is stored point by point): answering costs the same after a minute or a month.
Only what a client sends with `PutMetricData` is stored, and it takes precedence.
"""

from __future__ import annotations

import hashlib
import math
import random
import secrets
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

STATE_CODES = {
    "pending": 0,
    "running": 16,
    "shutting-down": 32,
    "terminated": 48,
    "stopping": 64,
    "stopped": 80,
}
# How long each transition takes at speed 1 (roughly what EC2 takes).
TRANSITION_SECONDS = {"pending": 30.0, "stopping": 45.0, "shutting-down": 30.0}
TRANSITION_TARGET = {"pending": "running", "stopping": "stopped", "shutting-down": "terminated"}
AVAILABILITY_ZONES = ("a", "b", "c")


def _unit(*parts: object) -> float:
    """A reproducible pseudo-random number in [0, 1) for the given parts."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass
class LoadProfile:
    """How busy an instance is over time; the demo's and the benchmark's source of realism."""

    cpu_base: float
    cpu_daily_amplitude: float
    memory_base: float
    phase: float
    spike_chance: float = 0.03

    @classmethod
    def for_instance(cls, instance_id: str) -> LoadProfile:
        return cls(
            cpu_base=10 + 30 * _unit(instance_id, "cpu"),
            cpu_daily_amplitude=5 + 15 * _unit(instance_id, "amp"),
            memory_base=35 + 35 * _unit(instance_id, "mem"),
            phase=2 * math.pi * _unit(instance_id, "phase"),
        )

    def cpu(self, instance_id: str, at: float, running_labs: int) -> float:
        day = math.sin(2 * math.pi * (at % 86_400) / 86_400 + self.phase)
        bucket = int(at // 60)
        noise = (_unit(instance_id, "n", bucket) - 0.5) * 6
        spike = (
            35 * _unit(instance_id, "s2", bucket // 5)
            if _unit(instance_id, "s", bucket // 5) < self.spike_chance
            else 0
        )
        value = self.cpu_base + self.cpu_daily_amplitude * day + noise + spike + 6 * running_labs
        return round(min(100.0, max(0.0, value)), 2)

    def memory(self, instance_id: str, at: float, running_labs: int) -> float:
        drift = 5 * math.sin(2 * math.pi * (at % 21_600) / 21_600 + self.phase)
        noise = (_unit(instance_id, "mn", int(at // 60)) - 0.5) * 2
        value = self.memory_base + drift + noise + 4 * running_labs
        return round(min(100.0, max(0.0, value)), 2)


@dataclass
class SimulatedInstance:
    instance_id: str
    region: str
    availability_zone: str
    image_id: str
    instance_type: str
    launch_time: float
    state: str = "running"
    state_since: float = 0.0
    tags: dict[str, str] = field(default_factory=dict)
    profile: LoadProfile | None = None
    cpu_override: float | None = None
    memory_override: float | None = None
    system_check: str = "ok"
    instance_check: str = "ok"
    agent_dimensions: str = "InstanceId"  # "InstanceId", "extended" (ImageId, InstanceType) or "none"
    running_labs: int = 0
    stopped_by_request: bool = False
    reboots: int = 0
    reboot_heals: bool = True  # a reboot clears an impaired instance status check
    # EC2 scheduled events, as `DescribeInstanceStatus` lists them (times are Unix seconds).
    scheduled_events: list[dict[str, Any]] = field(default_factory=list)

    def memory_dimensions(self) -> list[dict[str, str]] | None:
        if self.agent_dimensions == "none":
            return None
        dims = [{"Name": "InstanceId", "Value": self.instance_id}]
        if self.agent_dimensions == "extended":
            dims += [
                {"Name": "ImageId", "Value": self.image_id},
                {"Name": "InstanceType", "Value": self.instance_type},
            ]
        return dims


@dataclass
class Faults:
    """What the scenario makes AWS do wrong on purpose."""

    throttling: bool = False
    latency: float = 0.0
    error_rate: float = 0.0
    # An IAM policy with an `aws:ResourceTag` condition on Start/Stop/Reboot: (key, value), or
    # None for no condition. Instances without the tag answer `UnauthorizedOperation`.
    action_tag: tuple[str, str] | None = None


class TokenBucket:
    """AWS-style request token bucket: `capacity` burst, refilled at `rate` per second."""

    def __init__(self, capacity: float, rate: float) -> None:
        self.capacity = capacity
        self.rate = rate
        self._tokens = capacity
        self._at = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False


# AWS's documented defaults: EC2 describe actions burst 100 and refill 20/s; EC2 mutating
# actions burst 50, refill 5/s; CloudWatch GetMetricData 50 transactions per second.
BUCKET_SIZES = {
    "ec2-describe": (100, 20),
    "ec2-mutate": (50, 5),
    "cloudwatch-getmetricdata": (50, 50),
    "cloudwatch-other": (100, 25),
}


class SimulatedFleet:
    """Every simulated instance, its lifecycle, stored metrics and injected faults."""

    def __init__(
        self, *, speed: float = 1.0, instant_transitions: bool = False, seed: int | None = None
    ) -> None:
        self.speed = speed
        self.instant_transitions = instant_transitions
        self.faults = Faults()
        self._random = random.Random(seed)
        self._instances: dict[str, SimulatedInstance] = {}
        self._lock = threading.RLock()
        self._stored: dict[tuple[str, str, frozenset[tuple[str, str]]], list[tuple[float, float]]] = (
            defaultdict(list)
        )
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self.requests: dict[tuple[str, str], int] = defaultdict(int)
        self.throttled = 0
        self.on_transition: Callable[[str, str, str, float], None] | None = None

    # -- instances -------------------------------------------------------------------------

    def create(
        self,
        count: int = 1,
        *,
        region: str = "us-east-1",
        tags: dict[str, str] | None = None,
        state: str = "running",
        instance_type: str = "c5.2xlarge",
        agent_dimensions: str = "InstanceId",
        running_labs: int = 0,
    ) -> list[SimulatedInstance]:
        now = time.time()
        created = []
        with self._lock:
            for _ in range(count):
                instance_id = "i-" + secrets.token_hex(9)[:17]
                instance = SimulatedInstance(
                    instance_id=instance_id,
                    region=region,
                    availability_zone=region + self._random.choice(AVAILABILITY_ZONES),
                    image_id="ami-" + secrets.token_hex(9)[:17],
                    instance_type=instance_type,
                    launch_time=now,
                    state=state,
                    state_since=now - 3600,
                    tags=dict(tags or {}),
                    profile=LoadProfile.for_instance(instance_id),
                    agent_dimensions=agent_dimensions,
                    running_labs=running_labs,
                )
                self._instances[instance_id] = instance
                created.append(instance)
        return created

    def get(self, instance_id: str) -> SimulatedInstance | None:
        instance = self._instances.get(instance_id)
        if instance is not None:
            self._advance(instance)
        return instance

    def all(self, region: str | None = None) -> list[SimulatedInstance]:
        with self._lock:
            instances = [i for i in self._instances.values() if region is None or i.region == region]
        for instance in instances:
            self._advance(instance)
        return instances

    def _advance(self, instance: SimulatedInstance) -> None:
        """Finish a transition whose time has come (computed lazily, nothing ticks)."""
        target = TRANSITION_TARGET.get(instance.state)
        if target is None:
            return
        duration = 0.0 if self.instant_transitions else TRANSITION_SECONDS[instance.state] / self.speed
        if time.time() - instance.state_since >= duration:
            instance.state = target
            instance.state_since = instance.state_since + duration
            self._emit(instance)

    def _transition(self, instance: SimulatedInstance, state: str) -> tuple[str, str]:
        previous = instance.state
        instance.state = state
        instance.state_since = time.time()
        self._emit(instance)
        self._advance(instance)
        return previous, instance.state

    def _emit(self, instance: SimulatedInstance) -> None:
        """Tell whoever listens (the simulated EventBridge → SQS) about a state change."""
        if self.on_transition is not None:
            self.on_transition(instance.instance_id, instance.region, instance.state, instance.state_since)

    def start(self, instance_id: str) -> tuple[str, str]:
        instance = self._require(instance_id)
        if instance.state in ("stopped",):
            instance.stopped_by_request = False
            return self._transition(instance, "pending")
        return instance.state, instance.state

    def stop(self, instance_id: str, *, requested: bool = True, instant: bool = False) -> tuple[str, str]:
        """Stop a running or pending instance; `instant` skips the stopping transition (an
        instance that was already stopped when the story begins)."""
        instance = self._require(instance_id)
        if instance.state in ("running", "pending"):
            instance.stopped_by_request = requested
            previous, state = self._transition(instance, "stopping")
            if instant and state == "stopping":
                instance.state = "stopped"
                self._emit(instance)
            return previous, instance.state
        return instance.state, instance.state

    def terminate(self, instance_id: str) -> tuple[str, str]:
        instance = self._require(instance_id)
        if instance.state not in ("shutting-down", "terminated"):
            return self._transition(instance, "shutting-down")
        return instance.state, instance.state

    def reboot(self, instance_id: str) -> None:
        instance = self._require(instance_id)
        instance.reboots += 1
        if instance.reboot_heals and instance.instance_check == "impaired":
            instance.instance_check = "ok"

    def _require(self, instance_id: str) -> SimulatedInstance:
        instance = self.get(instance_id)
        if instance is None:
            raise KeyError(instance_id)
        return instance

    def set_metrics(self, instance_id: str, *, cpu: float | None = None, memory: float | None = None) -> None:
        instance = self._require(instance_id)
        instance.cpu_override = cpu
        instance.memory_override = memory

    def set_status_checks(
        self, instance_id: str, *, system: str | None = None, instance: str | None = None
    ) -> None:
        target = self._require(instance_id)
        if system is not None:
            target.system_check = system
        if instance is not None:
            target.instance_check = instance

    # -- status checks ---------------------------------------------------------------------

    @staticmethod
    def status_checks(instance: SimulatedInstance) -> tuple[str, str]:
        if instance.state == "running":
            return instance.system_check, instance.instance_check
        if instance.state == "pending":
            return "initializing", "initializing"
        return "not-applicable", "not-applicable"

    # -- metrics ---------------------------------------------------------------------------

    def put_metric(
        self, namespace: str, name: str, dimensions: Iterable[tuple[str, str]], at: float, value: float
    ) -> None:
        with self._lock:
            self._stored[(namespace, name, frozenset(dimensions))].append((at, value))

    def stored_points(
        self, namespace: str, name: str, dimensions: Iterable[tuple[str, str]]
    ) -> list[tuple[float, float]] | None:
        return self._stored.get((namespace, name, frozenset(dimensions)))

    def stored_metrics(self) -> list[tuple[str, str, frozenset[tuple[str, str]]]]:
        with self._lock:
            return list(self._stored)

    def computed_value(self, instance: SimulatedInstance, metric: str, at: float) -> float | None:
        """The instance's CPU or memory at `at`, from its profile or a scenario override."""
        assert instance.profile is not None
        if metric == "cpu":
            if instance.cpu_override is not None:
                return instance.cpu_override
            return instance.profile.cpu(instance.instance_id, at, instance.running_labs)
        if instance.memory_override is not None:
            return instance.memory_override
        return instance.profile.memory(instance.instance_id, at, instance.running_labs)

    def running_between(self, instance: SimulatedInstance, start: float, end: float) -> bool:
        """Whether the instance ran (and so published metrics) in [start, end)."""
        return instance.state == "running" and instance.state_since < end

    # -- faults ----------------------------------------------------------------------------

    def admit(self, region: str, bucket: str) -> bool:
        """Take a token from the bucket when throttling is on; False means "throttle"."""
        if not self.faults.throttling:
            return True
        key = (region, bucket)
        token_bucket = self._buckets.get(key)
        if token_bucket is None:
            capacity, rate = BUCKET_SIZES[bucket]
            token_bucket = self._buckets.setdefault(key, TokenBucket(capacity, rate))
        admitted = token_bucket.take()
        if not admitted:
            self.throttled += 1
        return admitted

    def reset_buckets(self) -> None:
        self._buckets.clear()

    def should_fail(self) -> bool:
        return self.faults.error_rate > 0 and self._random.random() < self.faults.error_rate
