"""Spans leave over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; logs reach LOG_FILE."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cml_fleet_sim.serving import ThreadedServer
from cml_monitor.telemetry import build_tracer_provider, configure_logging


def test_no_endpoint_no_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert build_tracer_provider() is None


def test_spans_are_exported_over_otlp(monkeypatch: pytest.MonkeyPatch) -> None:
    received: list[tuple[str, str, bytes]] = []

    async def collect(request: Request) -> Response:
        received.append((request.url.path, request.headers.get("content-type", ""), await request.body()))
        return Response(status_code=200)

    server = ThreadedServer(Starlette(routes=[Route("/v1/traces", collect, methods=["POST"])])).start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", server.url)
    try:
        provider = build_tracer_provider("cml-monitor-test")
        assert provider is not None
        with provider.get_tracer("test").start_as_current_span("collect_worker_metrics") as span:
            span.set_attribute("worker_id", "w-1")
        assert provider.force_flush(10_000)
        provider.shutdown()
    finally:
        server.stop()
    assert received and received[0][0] == "/v1/traces"
    assert received[0][1] == "application/x-protobuf"
    assert b"collect_worker_metrics" in received[0][2] and b"cml-monitor-test" in received[0][2]


def test_logs_go_to_the_log_file(tmp_path: Path) -> None:
    target = tmp_path / "logs" / "monitor.log"
    configure_logging("INFO", target)
    logging.getLogger("cml_monitor.test").info("📊 Collected metrics for worker w-1")
    for handler in logging.getLogger().handlers:
        handler.flush()
    assert "📊 Collected metrics for worker w-1" in target.read_text(encoding="utf-8")
    configure_logging("INFO")  # back to stdout only for the other tests


def test_log_format_json_writes_one_object_per_line(tmp_path: Path) -> None:
    import json

    target = tmp_path / "monitor.jsonl"
    configure_logging("INFO", target, "json")
    try:
        logging.getLogger("cml_monitor.test").warning("Collected %s: %d workers", "us-east-1", 3)
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logging.getLogger("cml_monitor.test").exception("it failed")
        for handler in logging.getLogger().handlers:
            handler.flush()
    finally:
        configure_logging("INFO")
    first, second = (json.loads(line) for line in target.read_text(encoding="utf-8").splitlines())
    assert (first["level"], first["logger"], first["message"]) == (
        "WARNING",
        "cml_monitor.test",
        "Collected us-east-1: 3 workers",
    )
    assert first["time"].endswith("Z")
    assert "RuntimeError: boom" in second["exception"]
