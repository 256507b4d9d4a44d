"""Shared fixtures: a real moto server, the local Redis and PostgreSQL, loopback HTTP servers."""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import boto3
import httpx
import pytest
import redis
from moto.server import ThreadedMotoServer

from cml_fleet_sim.cml_controllers import ControllerFleet
from cml_fleet_sim.serving import ThreadedServer, free_port
from cml_fleet_sim.simulator import FleetSimulator
from cml_monitor.api.app import create_app
from cml_monitor.aws import AwsEc2Client
from cml_monitor.storage import CMLWorkerRepository, create_engine, drop_all, migrate

from .helpers import Receiver

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
for _name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "OTEL_EXPORTER_OTLP_ENDPOINT"):
    os.environ.pop(_name, None)

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
REGION = "us-east-1"
AMI = "ami-12c6146b"


def pytest_collection_finish(session: pytest.Session) -> None:
    """Garbage collection for a session that builds hundreds of apps, clients and moto backends.

    What collection imported (botocore, moto, FastAPI, SQLAlchemy, hypothesis…) lives as long
    as the session: frozen after one last collection, it is never walked again (nothing a test
    makes is frozen: it is all made later). And a full collection comes after ~1 million net
    allocations rather than ~70,000: parsing a botocore service model or resetting moto's EC2
    backend is hundreds of thousands, and the full collections they set off took a fifth of
    the suite's time (114 s of a 9-minute run).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def _fastapi_caches() -> list[Any]:
    import fastapi.dependencies.models

    return [v for v in vars(fastapi.dependencies.models).values() if hasattr(v, "cache_clear")]


@pytest.fixture(autouse=True)
def _forget_finished_apps() -> Iterator[None]:
    """Let the apps a test built go once it ends.

    FastAPI keeps what it learns about each endpoint function in module-level LRU caches (4096
    entries), and an endpoint that is a closure over its app (fastapi-offline's `/docs`) holds
    the app, its runtime and its AWS clients' service models: without this, every app of the
    session stayed alive (3–4 GB by the end of a full run, and ever longer garbage collections).
    """
    yield
    for cache in _fastapi_caches():
        cache.cache_clear()


def _forget_replaced_moto_backends() -> None:
    """Let the backends a moto reset replaced go.

    moto (5.x) caches methods with `functools` caches keyed by the object: each subnet's
    address iterator (unbounded) and each account backend's regions (128 entries). Both hold
    the old backends, with their 1,301 AMIs, volumes and snapshots each, in this process (the
    moto server is a thread of it): every reset after a `run_instances` left an EC2 backend
    behind.
    """
    from moto.core.base_backend import AccountSpecificBackend
    from moto.ec2.models.subnets import Subnet

    for method in (Subnet._base_avail_ip_iterator, AccountSpecificBackend._generate_regions):
        clear = getattr(method, "cache_clear", None)
        if clear is not None:
            clear()


@dataclass
class Moto:
    url: str
    server: ThreadedMotoServer
    port: int

    def reset(self) -> None:
        httpx.post(f"{self.url}/moto-api/reset", timeout=10).raise_for_status()
        _forget_replaced_moto_backends()

    def ec2(self, region: str = REGION):  # type: ignore[no-untyped-def]
        return boto3.client("ec2", region_name=region, endpoint_url=self.url)

    def cloudwatch(self, region: str = REGION):  # type: ignore[no-untyped-def]
        return boto3.client("cloudwatch", region_name=region, endpoint_url=self.url)

    def run_instances(self, count: int = 1, region: str = REGION) -> list[str]:
        response = self.ec2(region).run_instances(ImageId=AMI, MinCount=count, MaxCount=count)
        return [i["InstanceId"] for i in response["Instances"]]


@pytest.fixture(scope="session")
def moto_session() -> Iterator[Moto]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield Moto(f"http://127.0.0.1:{port}", server, port)
    server.stop()


@pytest.fixture
def moto(moto_session: Moto) -> Moto:
    moto_session.reset()
    return moto_session


@pytest.fixture
async def aws(moto: Moto) -> AsyncIterator[AwsEc2Client]:
    client = AwsEc2Client(endpoint_url=moto.url, max_attempts=2)
    yield client
    await client.close()


async def _reset_postgres(url: str) -> None:
    engine = create_engine(url)
    await drop_all(engine)
    await engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'monitor.db'}"
    await _reset_postgres(POSTGRES_URL)
    return POSTGRES_URL


@pytest.fixture
async def postgresql_url() -> str:
    """An empty PostgreSQL database, for what only PostgreSQL has (partitioned history)."""
    await _reset_postgres(POSTGRES_URL)
    return POSTGRES_URL


@pytest.fixture
def sqlite_url(tmp_path) -> str:  # type: ignore[no-untyped-def]
    return f"sqlite+aiosqlite:///{tmp_path / 'monitor.db'}"


async def _repository(url: str) -> CMLWorkerRepository:
    engine = create_engine(url)
    await migrate(engine)
    return CMLWorkerRepository(engine)


@pytest.fixture
async def repository(database_url: str) -> AsyncIterator[CMLWorkerRepository]:
    repo = await _repository(database_url)
    yield repo
    await repo.engine.dispose()


@pytest.fixture
async def sqlite_repository(sqlite_url: str) -> AsyncIterator[CMLWorkerRepository]:
    repo = await _repository(sqlite_url)
    yield repo
    await repo.engine.dispose()


@pytest.fixture
def redis_url() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


@pytest.fixture
def controllers() -> Iterator[tuple[ControllerFleet, str]]:
    fleet = ControllerFleet()
    server = ThreadedServer(fleet.app).start()
    yield fleet, server.url
    server.stop()


def make_settings(database_url: str, moto_url: str, **overrides: object):  # type: ignore[no-untyped-def]
    from cml_monitor.settings import load_settings

    values: dict[str, object] = {
        "_env_file": None,
        "database_url": database_url,
        "aws_endpoint_url": moto_url,
        "aws_max_attempts": 2,
        "worker_metrics_poll_interval": 300,
        "cml_password": "cml-sim",
        # The simulated controllers listen on loopback, which the default refuses.
        "cml_url_blocked_networks": "169.254.0.0/16,fd00:ec2::/32,0.0.0.0/8",
        # These tests drive CPU and memory through the simulator's CloudWatch; the default
        # (`auto`: the controller's figures first) is tested in test_metrics_source.py.
        "worker_metrics_source": "cloudwatch",
    }
    values.update(overrides)
    return load_settings(**values)


@dataclass
class Api:
    app: object
    client: httpx.AsyncClient

    @property
    def runtime(self):  # type: ignore[no-untyped-def]
        return self.app.state.runtime  # type: ignore[attr-defined]


@pytest.fixture
async def api_factory(moto: Moto, sqlite_url: str):  # type: ignore[no-untyped-def]
    """Build an app on SQLite + moto, run its lifespan, and talk to it through httpx."""
    from contextlib import AsyncExitStack

    from cml_monitor.api.app import create_app

    stacks: list[AsyncExitStack] = []

    async def factory(token: str | None = None, **overrides: object) -> Api:
        overrides.setdefault("database_url", sqlite_url)
        settings = make_settings(str(overrides.pop("database_url")), moto.url, **overrides)
        app = create_app(settings)
        stack = AsyncExitStack()
        stacks.append(stack)
        await stack.enter_async_context(app.router.lifespan_context(app))
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test", headers=headers
        )
        await stack.enter_async_context(client)
        return Api(app, client)

    yield factory
    for stack in reversed(stacks):
        await stack.aclose()


class Monitor:
    def __init__(self, app: Any, client: httpx.AsyncClient) -> None:
        self.app = app
        self.client = client
        self.runtime = app.state.runtime

    async def worker(self, worker_id: str) -> dict[str, Any]:
        return (await self.client.get(f"/api/workers/{worker_id}")).json()

    async def ready(self) -> tuple[int, dict[str, str]]:
        response = await self.client.get("/ready")
        return response.status_code, response.json()["checks"]


@pytest.fixture
async def monitor(sim: Any) -> AsyncIterator[Any]:
    """`await monitor(database_url, **settings)`: the whole app on the module's simulator."""
    stack = AsyncExitStack()

    async def start(database_url: str, **overrides: Any) -> Monitor:
        from cml_monitor.api.app import create_app

        settings = make_settings(database_url, sim.url, **overrides)
        app = create_app(settings)
        await stack.enter_async_context(app.router.lifespan_context(app))
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://monitor")
        )
        return Monitor(app, client)

    yield start
    await stack.aclose()


# -- the alerting app: the simulator as AWS, real receivers on loopback, an SQLite outbox.
# `sim` here is the alerting tests' simulator; a module that needs another defines its own.


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    recording = Receiver()
    server = ThreadedServer(recording.app).start()
    yield recording, server.url
    server.stop()


@pytest.fixture
def sim() -> Iterator[FleetSimulator]:
    simulator = FleetSimulator(instant_transitions=True, seed=5)
    simulator.start()
    yield simulator
    simulator.stop()


class AlertingApp:
    def __init__(self, app: Any, client: httpx.AsyncClient) -> None:
        self.app = app
        self.client = client
        self.runtime = app.state.runtime

    async def register(self, instance_id: str, **extra: Any) -> dict[str, Any]:
        body = {
            "name": f"w-{instance_id[-4:]}",
            "aws_region": "us-east-1",
            "aws_instance_id": instance_id,
            **extra,
        }
        response = await self.client.post("/api/workers", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    async def poll(self, worker_id: str) -> None:
        """One collection of the worker, alert evaluation included.

        Collections already in flight (the refresh a start/stop triggers) finish first: two
        collections of one worker at once would leave only the newer one written and told.
        """
        await self.runtime.monitor.drain()
        report = await self.runtime.monitor.collect_soon(worker_id)
        assert [e.worker_id for e in report.events] == [worker_id], report.failed

    async def alerts(self, **params: str) -> list[dict[str, Any]]:
        return (await self.client.get("/api/alerts", params=params)).json()["items"]

    async def notifications(self, state: str | None = None) -> list[dict[str, Any]]:
        params = {"state": state} if state else {}
        return (await self.client.get("/api/notifications", params=params)).json()["items"]


@pytest.fixture
async def make_app(sim: FleetSimulator, sqlite_url: str) -> AsyncIterator[Callable[..., Any]]:
    stack = AsyncExitStack()

    async def factory(**overrides: Any) -> AlertingApp:
        overrides.setdefault("worker_monitoring_enabled", False)
        overrides.setdefault("worker_notification_retry_base", 0.05)
        overrides.setdefault("worker_notification_group_wait", 0)  # Slack's grouping has its own test
        overrides.setdefault("cml_username", "admin")
        settings = make_settings(sqlite_url, sim.url, **overrides)
        app = create_app(settings)
        await stack.enter_async_context(app.router.lifespan_context(app))
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
        await stack.enter_async_context(client)
        return AlertingApp(app, client)

    yield factory
    await stack.aclose()
