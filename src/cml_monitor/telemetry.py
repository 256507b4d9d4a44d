"""Logging and tracing set-up: stdout (and `LOG_FILE`), and OpenTelemetry with OTLP export.

OTLP export is switched on by the standard `OTEL_EXPORTER_OTLP_ENDPOINT` variable, which the
exporter reads itself; without it spans are created (cheaply) and dropped.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from cml_monitor import __version__

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers: time (UTC, ISO 8601), level, logger, message."""

    def __init__(self, process: str | None = None) -> None:
        super().__init__()
        self.process = process  # `collector` in serve's child process, so one stream tells them apart

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.process:
            entry["process"] = self.process
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(
    level: str = "INFO", log_file: Path | None = None, log_format: str = "text", *, process: str | None = None
) -> None:
    """Log to stdout (and the file); `process` tags every line of a child of `serve`."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    text_format = f"[{process}] {LOG_FORMAT}" if process else LOG_FORMAT
    formatter = JsonFormatter(process) if log_format == "json" else logging.Formatter(text_format)
    for handler in handlers:
        handler.setFormatter(formatter)
    logging.basicConfig(level=level, handlers=handlers, force=True)
    # Third-party chatter that drowns our own lines at INFO.
    for noisy in ("apscheduler.executors", "apscheduler.scheduler", "botocore", "aiobotocore", "httpx"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def build_tracer_provider(service_name: str = "cml-monitor") -> TracerProvider | None:
    """A provider exporting over OTLP/HTTP when an endpoint is configured, else None."""
    if not (
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    ):
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name, "service.version": __version__})
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def configure_tracing(service_name: str = "cml-monitor") -> TracerProvider | None:
    """Install the OTLP provider globally (once, at start-up of `serve`)."""
    provider = build_tracer_provider(service_name)
    if provider is not None:
        trace.set_tracer_provider(provider)
    return provider
