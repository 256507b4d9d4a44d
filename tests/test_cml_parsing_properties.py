"""Whatever a CML 2.9 controller may answer per its OpenAPI document, the parsers read it.

Documents are generated from the spec's response schemas (hypothesis-jsonschema: realistic
keys, UUID compute ids, nulls where the spec allows them, dates in every RFC 3339 spelling) for
every endpoint the monitor reads, and fed to the parser of that endpoint: it never crashes and
never calls a valid document "not CML's shape".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from cml_monitor.cml import shapes
from cml_monitor.cml.client import _Read

from .cml_spec import problems, response_schema

AUTOMATION = [re.compile(r"^00000000-0000-")]
LAB_ID = "90f84e38-a71c-4d57-8d90-00fa8a197385"

ENDPOINTS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "system_information": ("/system_information", shapes.system_information),
    "system_health": ("/system_health", shapes.system_health),
    "system_stats": ("/system_stats", shapes.system_stats),
    "licensing": ("/licensing", shapes.licensing),
    "labs": ("/labs", shapes.lab_ids),
    "lab_state": ("/labs/{lab_id}/state", lambda body: shapes.lab_state(body, LAB_ID)),
    "telemetry": ("/telemetry/events", lambda body: shapes.user_activity(body, AUTOMATION)),
}
PROPERTY = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)


def _realistic(schema: Any) -> Any:
    """The schema with keys as a controller writes them: where the spec names keys by a pattern
    (compute ids are UUID4s) and says nothing of other keys, no other keys."""
    if isinstance(schema, list):
        return [_realistic(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _realistic(value) for key, value in schema.items()}
    if "patternProperties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def _documents(path: str) -> st.SearchStrategy[Any]:
    return from_schema(_realistic(response_schema("get", path, 200)))


@pytest.mark.parametrize("name", sorted(ENDPOINTS))
def test_every_document_the_spec_allows_is_read(name: str) -> None:
    path, parse = ENDPOINTS[name]

    @PROPERTY
    @given(_documents(path))
    def read(body: Any) -> None:
        assert problems(response_schema("get", path, 200), body) == []  # the generator's own check
        result = parse(body)  # a ShapeError or any other exception fails the test
        if name == "system_stats":
            for key in ("running_nodes", "total_nodes"):
                assert result[key] is None or isinstance(result[key], int)
        if name == "licensing" and result["license_expires_at"] is not None:
            assert result["license_expires_at"].tzinfo is not None

    read()


@settings(PROPERTY, max_examples=20)
@given(_documents("/system_stats"), st.lists(st.uuids(version=4).map(str), max_size=5))
def test_lab_states_are_cached_only_on_known_node_counts(body: Any, lab_ids: list[str]) -> None:
    read = _Read("https://cml.example")
    read.parse("system_stats", shapes.system_stats, body, 200)
    read.lab_ids = lab_ids
    signature = read.lab_signature()
    if read.values["running_nodes"] is None or read.values["total_nodes"] is None:
        assert signature is None  # unknown counts: the states are read again every cycle


def test_null_node_counts_make_the_lab_states_be_read_again() -> None:
    compute = {
        "hostname": "cml-controller",
        "is_controller": True,
        "stats": {
            "cpu": {"count": 4, "percent": 5.0, "model": "x", "predicted": 4, "load": [0.1]},
            "memory": {"used": 1, "free": 1, "total": 2},
            "disk": {"used": 1, "free": 1, "total": 2},
            "dominfo": {
                "total_nodes": None,
                "running_nodes": None,
                "total_orphans": None,
                "running_orphans": None,
                "allocated_cpus": 0,
                "allocated_memory": 0,
            },
        },
    }
    body = {"computes": {LAB_ID: compute}}
    assert problems(response_schema("get", "/system_stats", 200), body) == []
    read = _Read("https://cml.example")
    read.parse("system_stats", shapes.system_stats, body, 200)
    read.lab_ids = [LAB_ID]
    assert read.values["running_nodes"] is None and read.lab_signature() is None
    # One compute with counts and one without: the sum is unknown, not the partial sum.
    other = {**compute, "stats": {**compute["stats"], "dominfo": {**compute["stats"]["dominfo"]}}}
    other["stats"]["dominfo"].update(running_nodes=3, total_nodes=4)
    two = {"computes": {LAB_ID: compute, "0b1e4c7a-1d2b-4c3d-8e4f-5a6b7c8d9e0f": other}}
    assert shapes.system_stats(two)["running_nodes"] is None


@pytest.mark.parametrize(
    "stamp",
    ["2027-03-01T12:00:00", "2027-03-01T12:00:00Z", "2027-03-01t12:00:00z", "2027-03-01T12:00:00+00:00"],
)
def test_a_licensing_date_without_a_zone_is_utc_and_keeps_the_statuses(stamp: str) -> None:
    body = {
        "registration": {"status": "COMPLETED", "expires": stamp},
        "authorization": {"status": "IN_COMPLIANCE", "expires": None},
    }
    values = shapes.licensing(body)
    assert values["license_expires_at"] == datetime(2027, 3, 1, 12, tzinfo=UTC)
    assert (values["license_registration"], values["license_authorization"]) == ("COMPLETED", "IN_COMPLIANCE")


def test_a_leap_second_is_a_date() -> None:
    assert shapes.cml_datetime("2016-12-31T23:59:60Z") == datetime(2016, 12, 31, 23, 59, 59, tzinfo=UTC)
    with pytest.raises(ValueError):
        shapes.cml_datetime("yesterday")
