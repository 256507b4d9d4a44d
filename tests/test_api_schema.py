"""Schemathesis over the app's own OpenAPI, against the app served on loopback:
no 500, and every documented response matches its schema."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from cml_fleet_sim.serving import ThreadedServer
from cml_monitor.api.app import create_app

from .conftest import Moto, make_settings


@pytest.fixture(scope="module")
def served_app(moto_session: Moto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    database = tmp_path_factory.mktemp("schema") / "monitor.db"
    app = create_app(
        make_settings(f"sqlite+aiosqlite:///{database}", moto_session.url, worker_monitoring_enabled=False)
    )
    server = ThreadedServer(app, lifespan="on").start()
    yield server.url
    server.stop()


def test_no_server_error_and_responses_match_the_schema(served_app: str) -> None:
    schema = schemathesis.openapi.from_url(f"{served_app}/openapi.json")
    checked = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path == "/api/events":  # an endless stream: covered by the end-to-end test
            continue

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case) -> None:  # type: ignore[no-untyped-def]
            case.call_and_validate(checks=[not_a_server_error, response_schema_conformance])

        check()
        checked.append(f"{operation.method.upper()} {operation.path}")
    assert len(checked) >= 12, checked
